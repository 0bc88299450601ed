"""Run fdrop_mm's benchmarks into bench/results.md (provenance, tables, targets met/missed).

    .venv/bin/python bench/run_benchmarks.py --run 1               # operator, fused, training step
    .venv/bin/python bench/run_benchmarks.py --run 2               # the second run, to compare
    .venv/bin/python bench/run_benchmarks.py --pipeline --no-operator --no-step   # the README main job only
    .venv/bin/python bench/run_benchmarks.py --setup --no-operator --no-step      # setup times only

Each part writes (or replaces) its own section of bench/results.md, the benchmark sections
labelled with ``--run``; the other sections stay, so two runs stand side by side. Every section
starts with its provenance (results_md.Provenance): this command, the commit, the machine, the
date and the load it saw.

- operator: FocusedDropout forward + backward against the memory floor, nn.Dropout2d/3d and
  DropBlock, 4 shapes (3 ResNet-50 maps, an I3D clip) × float32/bfloat16 × contiguous/
  channels_last(_3d), and the torch.compile producer-fusion rows (bench/bench_operator.py); on CUDA also the CUDA rows.
- training step: ResNet-50 classifier step in a real Runner, FocusedDropoutHook at
  participation 1.0 and 0.1 against no hook (bench/bench_train_step.py); on CUDA also
  images/s at batch 64, 224×224, float32 and bfloat16 AMP.
- ``--pipeline``: wall time and peak memory of ``bash tools/run_demo.sh`` (the README's main
  job) with fresh --work-dir and --data-root, so no stage is skipped. Peak memory is the
  largest resident set of any single process of the job (``getrusage(RUSAGE_CHILDREN)``).
- ``--setup``: ``bash tools/setup_env.sh`` in a fresh ``git clone`` of this repository (the
  committed HEAD) with empty FDROP_CACHE and pip cache, then in a second fresh clone with
  those caches filled. Needs network access and ~15 GB of free disk under the temp dir.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import bench_operator  # bench/ is on sys.path: it is this script's folder
import bench_train_step
from results_md import Provenance, machine, pin_malloc, write_section

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# run a command, then report its wall time and the peak RSS of its largest process
_MEASURE_CHILD = '''
import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[2], "w") as log:
    code = subprocess.call(sys.argv[3:], stdout=log, stderr=subprocess.STDOUT)
with open(sys.argv[1], "w") as f:
    json.dump(dict(returncode=code, seconds=time.perf_counter() - start,
                   peak_rss_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), f)
'''


def measure_command(cmd, log: Path, cwd=REPO, env=None) -> dict:
    """Wall seconds and peak RSS (MiB) of ``cmd`` and its descendants; raises naming the log on failure."""
    report = log.with_suffix('.json')
    subprocess.run([sys.executable, '-c', _MEASURE_CHILD, str(report), str(log), *map(str, cmd)],
                   cwd=cwd, env=env, check=True)
    result = json.loads(report.read_text())
    if result['returncode'] != 0:
        raise RuntimeError(f'{" ".join(map(str, cmd))} failed with exit code {result["returncode"]}; see {log}')
    return result


def operator_sections(rounds, fused_rounds, run, allocator) -> None:
    lines = bench_operator.operator_section('cpu', rounds, bench_operator.SHAPES, ['float32', 'bfloat16'],
                                            list(bench_operator.LAYOUTS), allocator=allocator)
    lines.append('mmdet\'s DropBlock (timed on float32 contiguous only) is an order of magnitude slower than '
                 'the others: every call draws a full-size (N, C, H, W) Bernoulli map, pads it and max-pools '
                 'it 7×7, with several full-size temporaries. The comparison configs use timm\'s DropBlock2d '
                 '(fdrop_mm/models/regularizers.py), which runs near the floor.')
    write_section(f'Operator, CPU: run {run}', lines)
    write_section(f'Operator fused with its producer (torch.compile), CPU: run {run}',
                  bench_operator.fused_section(fused_rounds) + [allocator + '.'])
    write_section(f'Operator fused with its producer (torch.compile, BN eval), CPU: run {run}',
                  bench_operator.fused_section(fused_rounds, bn='eval') + [allocator + '.'])
    if torch.cuda.is_available():
        lines = bench_operator.operator_section('cuda', rounds, bench_operator.SHAPES,
                                                ['float32', 'bfloat16', 'float16'], list(bench_operator.LAYOUTS),
                                                calls=20)
        write_section(f'Operator, CUDA: run {run}', lines)


def step_sections(rounds, warmup, threads, run) -> None:
    batch, size = (64, 224) if torch.cuda.is_available() else (8, 128)
    for amp in ((False, True) if torch.cuda.is_available() else (False,)):
        heading, lines = bench_train_step.step_section(rounds, warmup, batch, size, threads, amp)
        write_section(f'{heading}: run {run}', lines)


def pipeline_section(tmp: Path) -> list:
    """The README main job's section: its provenance, wall time and peak memory."""
    record = Provenance()
    result = measure_command(['bash', 'tools/run_demo.sh', '--work-dir', tmp / 'pipeline_work',
                              '--data-root', tmp / 'pipeline_data'], tmp / 'run_demo.log')
    return record.lines() + ['Fresh --work-dir and --data-root (every stage runs, the tiny data is generated), '
            'the environment already set up.', '',
            '| wall time | peak memory (largest process) |', '|---|---|',
            f'| {result["seconds"] / 60:.1f} min | {result["peak_rss_mib"]:.0f} MiB |', '']


def setup_section(tmp: Path) -> list:
    """tools/setup_env.sh in a fresh clone, with empty and then filled caches: provenance, wall times."""
    record = Provenance()
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'FDROP_VENV', 'PYTHONPATH')}
    env.update(FDROP_CACHE=str(tmp / 'fdrop_cache'), PIP_CACHE_DIR=str(tmp / 'pip_cache'))
    rows = []
    for label in ('fresh: empty FDROP_CACHE and pip cache', 'cached: both caches from the fresh run'):
        clone = tmp / 'clone'
        subprocess.run(['git', 'clone', '-q', str(REPO), str(clone)], check=True)
        result = measure_command(['bash', 'tools/setup_env.sh'], tmp / f'setup_{len(rows)}.log', cwd=clone, env=env)
        subprocess.run(['rm', '-rf', str(clone)], check=True)  # keep the caches, drop the venv
        rows.append(f'| {label} | {result["seconds"] / 60:.1f} min |')
    return record.lines() + ['| caches | wall time |', '|---|---|', *rows, '']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--run', default='1', help='label of this run in the section headings')
    parser.add_argument('--rounds', type=int, default=41, help='operator: interleaved rounds per configuration')
    parser.add_argument('--fused-rounds', type=int, default=21,
                        help='operator fused with its producer (torch.compile): interleaved rounds')
    parser.add_argument('--step-rounds', type=int, default=300,
                        help='training step: timed rounds (one iteration of every arm each)')
    parser.add_argument('--step-warmup', type=int, default=3, help='training step: untimed rounds first')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--no-operator', action='store_true', help='skip the operator benchmark')
    parser.add_argument('--no-step', action='store_true', help='skip the training-step benchmark')
    parser.add_argument('--pipeline', action='store_true', help="time the README's main job")
    parser.add_argument('--setup', action='store_true', help='time tools/setup_env.sh, fresh and cached')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = pin_malloc()
    started = time.perf_counter()
    if not args.no_operator:
        operator_sections(args.rounds, args.fused_rounds, args.run, allocator)
    if not args.no_step:
        step_sections(args.step_rounds, args.step_warmup, args.threads, args.run)
    with tempfile.TemporaryDirectory(prefix='fd_bench_') as tmp:
        if args.pipeline:
            write_section('README main job: `bash tools/run_demo.sh`', pipeline_section(Path(tmp)))
        if args.setup:
            write_section('Setup: `bash tools/setup_env.sh` in a fresh clone', setup_section(Path(tmp)))
    print(f'{machine()}: `{" ".join([Path(sys.executable).name, *sys.argv])}` took '
          f'{(time.perf_counter() - started) / 60:.1f} min; wrote bench/results.md')


if __name__ == '__main__':
    main()
