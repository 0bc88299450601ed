"""Training and validation curves of several runs on one plot (paper Fig. 5, Fig. 6b), read from
mmengine's scalar logs (``<work_dir>/<timestamp>/vis_data/scalars.json``)::

    python tools/analysis_tools/plot_curves.py RUN [RUN ...] --keys loss accuracy/top1 fd/keep_ratio \\
        [--labels baseline fd] [--out work_dirs/curves/curves.png]

RUN is a work dir or one scalars.json (the details: fdrop_mm.visualization.curves, below).
"""
import argparse
from pathlib import Path

from fdrop_mm.cli import exit_on_bad_input, quiet_known_warnings
from fdrop_mm.visualization import curves


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1] + '\n\n'
                                     + curves.__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', type=Path, help='work dirs or scalars.json files')
    parser.add_argument('--keys', nargs='+', required=True,
                        help='scalars to plot, e.g. loss accuracy/top1 fd/keep_ratio pascal_voc/mAP')
    parser.add_argument('--labels', nargs='+', help='legend labels (default: the run paths)')
    parser.add_argument('--out', type=Path, default=Path('work_dirs/curves/curves.png'),
                        help='output PNG (default work_dirs/curves/curves.png)')
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.runs):
        parser.error(f'--labels: {len(args.labels)} labels for {len(args.runs)} runs')
    args.labels = args.labels or [str(run) for run in args.runs]
    return args


def main(argv=None):
    quiet_known_warnings()
    args = parse_args(argv)
    exit_on_bad_input(curves.plot_curves, args.runs, args.keys, args.labels, args.out)


if __name__ == '__main__':
    main()
