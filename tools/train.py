"""Train with an mmdet or mmpretrain config: tools/train.py as in mmdet 3.3 / mmpretrain 1.2.

Same arguments as theirs. Additionally, with ``--launcher pytorch`` on a machine
without GPUs, it starts a gloo process group and wraps the model with
``CPUAwareDistributedDataParallel`` (see fdrop_mm.compat.cpu_ddp), so
``tools/dist_train.sh CONFIG 2`` runs on CPUs too. A ``load_from`` checkpoint (not a
resume) must fit the model exactly, unless ``--allow-partial-load``
(see fdrop_mm.transfer.check_checkpoint_fits).
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import fdrop_mm  # noqa: F401  registrations and safe checkpoint loading
from fdrop_mm.compat.cpu_ddp import init_cpu_process_group
from fdrop_mm.transfer import check_checkpoint_fits


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """Arguments train.py and test.py share: mmdet's and mmpretrain's, and --allow-partial-load."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. train_cfg.max_iters=100)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='load a checkpoint that does not fit the model (missing, unexpected or '
                        'mis-shaped keys): only its matching keys, the others listed as a warning; '
                        'without this flag such a checkpoint is an error')


def parse_launch_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a classifier or detector (mmpretrain / mmdet config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest '
                        'checkpoint in the work directory')
    add_launch_args(parser)
    return parse_launch_args(parser, argv)


def load_config(args) -> Config:
    """The config with --launcher, --cfg-options and --work-dir applied (shared with test.py)."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Without GPUs, ``--launcher pytorch`` trains with gloo and a CPU-capable DDP wrapper."""
    if launcher != 'pytorch' or torch.cuda.is_available():
        return
    init_cpu_process_group()
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='CPUAwareDistributedDataParallel')


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: no checkpoint file {args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume

    setup_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if cfg.get('load_from') and not cfg.get('resume'):
        check_checkpoint_fits(runner.model, cfg.load_from, allow_partial=args.allow_partial_load)
    runner.train()


if __name__ == '__main__':
    main()
