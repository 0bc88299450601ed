"""Evaluate a checkpoint with an mmdet or mmpretrain config, as their tools/test.py.

``--metrics-out FILE`` additionally writes the metrics as JSON (used by the
pipeline driver). ``--launcher pytorch`` works without GPUs, as in tools/train.py.
"""
import argparse
import json
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

# tools/ is on sys.path when run as a script
from train import add_launch_args, load_config, parse_launch_args, setup_cpu_distributed


def parse_args():
    parser = argparse.ArgumentParser(description='Test a classifier or detector checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--metrics-out', help='write the metrics to this JSON file')
    add_launch_args(parser)
    return parse_launch_args(parser)


def main():
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint: no file {args.checkpoint}')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    setup_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    metrics = runner.test()
    if args.metrics_out and is_main_process():
        with open(args.metrics_out, 'w') as f:
            json.dump({k: float(v) if isinstance(v, (int, float)) else v for k, v in metrics.items()},
                      f, indent=2)
        print(f'metrics written to {args.metrics_out}')


if __name__ == '__main__':
    main()
