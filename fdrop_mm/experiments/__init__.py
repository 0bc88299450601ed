"""The paper's experiments as a library, driven by tools/run_pipeline.py, tools/run_sweep.py and
tools/analysis_tools/aggregate_results.py.

- ``launcher``: training and testing commands through tools/train.py, tools/test.py,
  tools/dist_train.sh, tools/dist_test.sh and tools/slurm_train.sh, and running them.
- ``stages``: an experiment as a graph of stages; a finished stage's ``done.json`` and what it
  was made from, so reruns skip it.
- ``records``: ``done.json`` / ``submitted.json`` written atomically, a corrupt one reported.
- ``slurm``: a stage graph submitted as sbatch jobs, each after the stages it needs.
- ``command_line``: the tools' launch options and what a run does with them (``drive``: submit
  to Slurm, run one stage, or every stage here).
- ``disk``: the disk a full-scale stage's checkpoints take (docs/checkpoints.md).
- ``progress``: a running stage graph's live progress, read from the stages' mmengine logs,
  and the table of their wall times.
- ``pipeline``: §5.3, ImageNet pretraining -> backbone transfer -> RetinaNet on VOC 07+12.
- ``published``: a published ImageNet checkpoint in place of an arm's pretraining.
- ``tables``: §5.1-5.2, the cells of Tables 1-4 and Fig. 6 and their committed configs.
- ``sweep``: a table's cells x seeds; ``aggregate``: the tables from the runs' logs.
- ``results``: the results writer both share (mean ± std, markdown, the files beside it).

Nothing here is imported by ``import fdrop_mm``.
"""
