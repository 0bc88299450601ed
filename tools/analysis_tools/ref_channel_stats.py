"""Reference-channel statistics of a trained classifier (paper §2, Fig. 2).

Usage (the details: fdrop_mm.visualization.ref_channels, below)::

    python tools/analysis_tools/ref_channel_stats.py CONFIG CHECKPOINT [--split val|test] \\
        [--data-root DIR] [--layer backbone] [--classes 0 3 7] [--max-classes 16] [--out-dir DIR]

writes ``ref_channels.csv`` and ``ref_channels.png`` into ``--out-dir`` (default
``work_dirs/ref_channel_stats/<checkpoint folder>``).
"""
import argparse
from pathlib import Path

from fdrop_mm.cli import exit_on_bad_input, quiet_known_warnings
from fdrop_mm.visualization import ref_channels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1] + '\n\n'
                                     + ref_channels.__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='classifier config (mmpretrain)')
    parser.add_argument('checkpoint', help='its trained checkpoint')
    parser.add_argument('--split', choices=ref_channels.SPLITS, default='val',
                        help="which of the config's dataloaders to use (default val)")
    parser.add_argument('--data-root', help="replace the dataset's data_root")
    parser.add_argument('--layer', default='backbone',
                        help='module whose output (last element of a tuple) is the last stage (default backbone)')
    parser.add_argument('--classes', type=int, nargs='+',
                        help='class indices to plot (default the first --max-classes)')
    parser.add_argument('--max-classes', type=int, default=16, help='classes to plot without --classes (default 16)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out-dir', type=Path, help='default work_dirs/ref_channel_stats/<checkpoint folder>')
    args = parser.parse_args(argv)
    if args.max_classes < 1:
        parser.error('--max-classes must be >= 1')
    args.out_dir = args.out_dir or Path('work_dirs/ref_channel_stats') / Path(args.checkpoint).resolve().parent.name
    return args


def main(argv=None):
    quiet_known_warnings()
    args = parse_args(argv)
    exit_on_bad_input(ref_channels.reference_channel_stats, args.config, args.checkpoint, args.out_dir,
                      split=args.split, data_root=args.data_root, layer=args.layer, classes=args.classes,
                      max_classes=args.max_classes, device=args.device)


if __name__ == '__main__':
    main()
