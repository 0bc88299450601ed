"""Evaluate a checkpoint with an mmpretrain, mmdet, mmseg or mmaction2 config, as their tools/test.py.

``--metrics-out FILE`` additionally writes the metrics as JSON (used by the pipeline driver).
``--launcher pytorch`` works without GPUs, as in tools/train.py. The checkpoint must fit the
model exactly, unless ``--allow-partial-load``: see fdrop_mm.apis.
"""
import argparse

from fdrop_mm.apis import add_launch_args, parse_launch_args, test
from fdrop_mm.cli import quiet_known_warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint with an mmpretrain, mmdet, mmseg or mmaction2 config')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--metrics-out', help='write the metrics to this JSON file')
    add_launch_args(parser)
    return parse_launch_args(parser, argv)


def main(argv=None):
    quiet_known_warnings()
    args = parse_args(argv)
    test(args.config, args.checkpoint, work_dir=args.work_dir, cfg_options=args.cfg_options,
         launcher=args.launcher, metrics_out=args.metrics_out,
         allow_partial_load=args.allow_partial_load)


if __name__ == '__main__':
    main()
