"""Training and testing with an mmdet or mmpretrain config, as their tools/train.py and
tools/test.py do, for this project's tools/train.py and tools/test.py.

Additionally, with ``launcher='pytorch'`` or ``'slurm'`` on a machine without GPUs, a gloo
process group is started and the model wrapped with ``CPUAwareDistributedDataParallel`` (see
fdrop_mm.compat.cpu_ddp), so ``tools/dist_train.sh CONFIG 2`` and ``tools/slurm_train.sh`` run on
CPUs too. A checkpoint
loaded as weights (test's checkpoint, train's ``load_from``, not a resume) must fit the model
exactly, unless ``allow_partial_load`` (see fdrop_mm.checkpoint_files.check_checkpoint_fits): mmengine
would load it non-strictly and train or evaluate whatever stayed random. A training stops
cleanly when ``<work_dir>/stop_requested`` appears (StopOnRequestHook: what a Slurm job near its
time limit asks for) and the process exits with ``STOPPED_EXIT_CODE`` (75).
"""
import argparse
import json
import numbers
import os
import os.path as osp
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .compat.cpu_ddp import init_cpu_process_group, set_rendezvous_from_slurm
from .engine.hooks.focused_dropout_hook import FocusedDropoutHook, FocusedDropoutRecord
from .engine.hooks.stop_on_request_hook import STOPPED_EXIT_CODE, StopOnRequestHook, TrainingStopped
from .checkpoint_files import check_checkpoint_fits

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """The arguments train.py and test.py share: mmdet's and mmpretrain's, and --allow-partial-load."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. train_cfg.max_iters=100)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='load a checkpoint that does not fit the model (missing, unexpected or '
                        'mis-shaped keys): only its matching keys, the others listed as a warning; '
                        'without this flag such a checkpoint is an error')


def parse_launch_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; sets ``LOCAL_RANK`` from --local-rank unless the launcher did."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(config: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
                launcher: str = 'none') -> Config:
    """``config`` with ``launcher``, ``cfg_options`` and ``work_dir`` applied; the work dir
    defaults to the config's, else ``./work_dirs/<config name>``."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got {launcher!r}')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Without GPUs, ``launcher='pytorch'`` or ``'slurm'`` runs with gloo and a CPU-capable DDP
    wrapper (mmengine's launchers would call ``torch.cuda.set_device``)."""
    if launcher not in ('pytorch', 'slurm') or torch.cuda.is_available():
        return
    if launcher == 'slurm':
        set_rendezvous_from_slurm()
    init_cpu_process_group()
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='CPUAwareDistributedDataParallel')


def build_runner(cfg: Config) -> Runner:
    """The config's runner (``runner_type`` if it names one), after :func:`setup_cpu_distributed`."""
    setup_cpu_distributed(cfg, cfg.launcher)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def end_distributed() -> None:
    """After a run that succeeded on every rank: wait for the others, then destroy the process
    group. Left to interpreter exit, gloo's threads can abort the process (SIGABRT, "terminate
    called without an active exception"; pytorch#190489), which failed a two-node CI run after
    training had finished. Not called after an error: a rank still inside a collective would
    block the others (torchtitan#1342)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def train(config: str, *, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
          launcher: str = 'none', amp: bool = False, auto_scale_lr: bool = False,
          resume: Optional[str] = None, allow_partial_load: bool = False) -> None:
    """Train as mmdet's / mmpretrain's tools/train.py. ``resume``: a checkpoint file, or
    ``'auto'`` for the latest checkpoint in the work dir. A ``load_from`` checkpoint must fit
    the model, checked before training starts. Stopped on request (StopOnRequestHook, added
    unless the config has one), it exits with ``STOPPED_EXIT_CODE``."""
    cfg = load_config(config, work_dir, cfg_options, launcher)
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(f'--auto-scale-lr: {config} has no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume: no checkpoint file {resume}')
        cfg.resume = True
        cfg.load_from = resume
    runner = build_runner(cfg)
    if cfg.get('load_from') and not cfg.get('resume'):
        check_checkpoint_fits(runner.model, cfg.load_from, allow_partial=allow_partial_load)
    if not any(isinstance(hook, FocusedDropoutHook) for hook in runner.hooks):
        runner.register_hook(FocusedDropoutRecord())  # resuming an FD run without the hook warns
    if not any(isinstance(hook, StopOnRequestHook) for hook in runner.hooks):
        runner.register_hook(StopOnRequestHook())
    try:
        runner.train()
    except TrainingStopped:
        end_distributed()  # every rank stopped after the same iteration: none is inside a collective
        raise SystemExit(STOPPED_EXIT_CODE) from None
    end_distributed()


def test(config: str, checkpoint: str, *, work_dir: Optional[str] = None,
         cfg_options: Optional[dict] = None, launcher: str = 'none',
         metrics_out: Optional[str] = None, allow_partial_load: bool = False) -> dict:
    """Evaluate ``checkpoint`` (which must fit the model) as mmdet's / mmpretrain's tools/test.py;
    return the metrics, and write them as JSON to ``metrics_out`` (on the main process)."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint: no file {checkpoint}')
    cfg = load_config(config, work_dir, cfg_options, launcher)
    cfg.load_from = checkpoint
    runner = build_runner(cfg)
    check_checkpoint_fits(runner.model, checkpoint, allow_partial=allow_partial_load)
    metrics = runner.test()
    if metrics_out and is_main_process():
        with open(metrics_out, 'w') as f:
            json.dump({k: float(v) if isinstance(v, numbers.Real) else v for k, v in metrics.items()},
                      f, indent=2)
        print(f'metrics written to {metrics_out}')
    end_distributed()
    return metrics
