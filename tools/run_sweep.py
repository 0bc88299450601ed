"""Run the paper's classification experiments (Tables 1-4, Fig. 6): a table's committed cell
configs x seeds, locally, through tools/dist_train.sh, or as Slurm jobs (one per run, then one
that writes the tables), skipping finished runs, then write the tables; see
fdrop_mm.experiments.sweep and fdrop_mm.experiments.slurm.

    python tools/run_sweep.py --table 2 --cells resnet110/fd --seeds 0 1 2     # one cell
    python tools/run_sweep.py --table 1 2 3 4 --seeds 0 1 2 --launcher slurm --partition p --gpus 1
    python tools/run_sweep.py --table 4 --dry-run                              # list commands
    python tools/run_sweep.py --tiny --table 1 --cells resnet20/baseline       # CPU smoke run

A run is ``<work-dir>/<run>/seed<k>``, ``<run>`` its config's name; its ``done.json`` marks it
finished, so a rerun skips it and resumes an interrupted one from its last checkpoint. Run locally,
each run's progress read from its mmengine log and the sweep's ETA are shown, then a table of the
runs' wall times (fdrop_mm.experiments.progress). Cells shared by several tables (e.g. ResNet-56
+ FD on CIFAR-100 in Table 2, Table 4 and Fig. 6) are one run.
"""
import argparse
from pathlib import Path

from fdrop_mm.cli import quiet_known_warnings
from fdrop_mm.experiments.command_line import add_launch_arguments, launch_settings
from fdrop_mm.experiments.sweep import run_sweep
from fdrop_mm.experiments.tables import TABLES, select_cells


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--table', nargs='+', required=True, choices=list(TABLES),
                        help='1-4: the paper\'s tables; 6a, 6b, 6c: Fig. 6\'s ablations')
    parser.add_argument('--cells', nargs='+', metavar='NETWORK/METHOD',
                        help='only these cells, e.g. resnet56/fd (default: all of the tables)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='default 0 1 2 (the paper averages 3 runs)')
    parser.add_argument('--work-dir', type=Path, default=None,
                        help='default work_dirs/classification (with --tiny: _tiny appended)')
    parser.add_argument('--tiny', action='store_true',
                        help='CPU smoke runs: generated data in --data-root, a few iterations')
    parser.add_argument('--data-root', type=Path, default=Path('data/tiny'),
                        help='where --tiny generates its data (default data/tiny)')
    parser.add_argument('--stage', help='only this run, <run>/seed<k>, or tables (what a slurm job runs)')
    add_launch_arguments(parser)
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to every run (not part of the run name: use another '
                             '--work-dir for other settings)')
    args = parser.parse_args(argv)
    try:
        args.launcher, args.slurm = launch_settings(args)
        select_cells(args.table, args.cells)  # an unknown cell fails before anything runs
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    quiet_known_warnings()
    args = parse_args(argv)
    run_sweep(args.table, tiny=args.tiny, work_dir=args.work_dir, data_root=args.data_root,
              cells=args.cells, seeds=args.seeds, dry_run=args.dry_run, launcher=args.launcher,
              cfg_options=args.cfg_options, stage=args.stage, slurm=args.slurm)


if __name__ == '__main__':
    main()
