"""Evaluate a checkpoint with an mmdet or mmpretrain config, as their tools/test.py.

``--metrics-out FILE`` additionally writes the metrics as JSON (used by the
pipeline driver). ``--launcher pytorch`` works without GPUs, as in tools/train.py.
The checkpoint must fit the model exactly (mmengine would load it non-strictly and
evaluate whatever stayed random), unless ``--allow-partial-load``
(see fdrop_mm.transfer.check_checkpoint_fits).
"""
import argparse
import json
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

# tools/ is on sys.path when run as a script
from train import add_launch_args, load_config, parse_launch_args, setup_cpu_distributed

from fdrop_mm.transfer import check_checkpoint_fits


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a classifier or detector checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--metrics-out', help='write the metrics to this JSON file')
    add_launch_args(parser)
    return parse_launch_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint: no file {args.checkpoint}')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    setup_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_checkpoint_fits(runner.model, args.checkpoint, allow_partial=args.allow_partial_load)
    metrics = runner.test()
    if args.metrics_out and is_main_process():
        with open(args.metrics_out, 'w') as f:
            json.dump({k: float(v) if isinstance(v, (int, float)) else v for k, v in metrics.items()},
                      f, indent=2)
        print(f'metrics written to {args.metrics_out}')


if __name__ == '__main__':
    main()
