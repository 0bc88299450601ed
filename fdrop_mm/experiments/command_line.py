"""What tools/run_pipeline.py and tools/run_sweep.py share: their launch options
(:func:`add_launch_arguments`, read by :func:`launch_settings`) and what a run of a stage graph
does with them (:func:`drive`): submit it to Slurm, run one stage, or run it all here."""
import argparse
import os
import shlex
from typing import Optional, Tuple

from .launcher import DRIVER_LAUNCHERS, Launcher
from .slurm import DEFAULT_STOP_BEFORE_S, SlurmOptions, submit
from .stages import DONE, StageGraph


def drive(graph: StageGraph, stage: Optional[str] = None, slurm: Optional[SlurmOptions] = None,
          dry_run: bool = False) -> Optional[str]:
    """What the tools do: with ``slurm`` (and no ``stage``) submit the graph (:func:`submit`);
    with ``stage`` run that stage; else ``graph.run()``. The table, if this wrote it, else None."""
    if slurm is not None and stage is None:
        submit(graph, slurm, dry_run=dry_run)
        return None
    if stage is not None and not graph.stage(stage).final:
        graph.run_stage(stage)
        print(f'[{graph.tag}] stage {stage} complete: {graph.stage(stage).work_dir / DONE}', flush=True)
        return None
    return graph.run_stage(stage)['table'] if stage else graph.run()


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The tools' --launcher options; the Slurm ones default to OpenMMLab's variables (GPUS_PER_NODE,
    CPUS_PER_TASK, SRUN_ARGS)."""
    parser.add_argument('--launcher', choices=DRIVER_LAUNCHERS, default='none',
                        help='none: here, one process; pytorch: here, --gpus processes; slurm: submit '
                             'every stage as an sbatch job (the driver exits)')
    parser.add_argument('--gpus', type=int, default=1, help='processes (GPUs) per training run')
    parser.add_argument('--dry-run', action='store_true',
                        help='print what would run (with --launcher slurm: the sbatch scripts), run nothing')
    slurm = parser.add_argument_group('slurm (with --launcher slurm)')
    slurm.add_argument('--partition', help='the partition every job runs in')
    slurm.add_argument('--gpus-per-node', type=int, default=int(os.environ.get('GPUS_PER_NODE', 8)),
                       help='default $GPUS_PER_NODE or 8')
    slurm.add_argument('--cpus-per-task', type=int, default=int(os.environ.get('CPUS_PER_TASK', 5)),
                       help='default $CPUS_PER_TASK or 5')
    slurm.add_argument('--gres', default=None,
                       help='generic resources per node (default gpu:<GPUs per node>; none: no --gres)')
    slurm.add_argument('--time', help='time limit of each job, as sbatch --time (default: the partition\'s)')
    slurm.add_argument('--stop-before', type=int, default=DEFAULT_STOP_BEFORE_S, metavar='SECONDS',
                       help='ask a training to stop this long before its job\'s time limit (sbatch '
                            '--signal=B:USR1@SECONDS): it stops at an iteration and the job requeues '
                            f'itself to resume (default {DEFAULT_STOP_BEFORE_S})')
    slurm.add_argument('--srun-args', default=os.environ.get('SRUN_ARGS', ''),
                       help='more srun options for training, one string: --srun-args="--qos=x" '
                            '(default $SRUN_ARGS)')
    slurm.add_argument('--sbatch-args', default='',
                       help='more sbatch options for every job, one string: '
                            '--sbatch-args="--account=a --qos=x"')


def launch_settings(args: argparse.Namespace) -> Tuple[Launcher, Optional[SlurmOptions]]:
    """The launcher and, with --launcher slurm, the jobs' settings from the tools' options;
    ValueError naming a bad option."""
    if args.launcher != 'slurm':
        return Launcher(args.launcher, args.gpus, args.partition), None
    options = SlurmOptions(args.partition, args.gpus, args.gpus_per_node, args.cpus_per_task,
                           '' if args.gres == 'none' else args.gres, args.time, args.srun_args,
                           tuple(shlex.split(args.sbatch_args)), args.stop_before)
    return Launcher('slurm', args.gpus, args.partition, env=options.environment()), options
