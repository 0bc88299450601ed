"""Shared fixtures and helpers: a small real mmpretrain classifier trained from real image files,
a tiny VOCdevkit, a RetinaNet checkpoint written by a real Runner, and running a tool."""
import copy
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import List

import numpy as np
import pytest
from PIL import Image

from fdrop_mm.tiny_data import make_voc

REPO = Path(__file__).resolve().parents[1]
TINY_DETECTION = REPO / 'configs/tiny/retinanet_r50_fpn_voc0712_tiny.py'


# A hook for the multi-process tests: each rank saves its parameters and focused steps.
DUMP_HOOK = '''
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpPerRank(Hook):
    priority = 'LOWEST'

    def after_train(self, runner):
        # parameters only: BN running statistics are per rank (mmengine: broadcast_buffers=False)
        torch.save({'params': {k: v.detach().clone() for k, v in runner.model.module.named_parameters()},
                    'active': list(runner.message_hub.get_scalar('train/fd/active').data[0])},
                   f'{runner.work_dir}/rank{get_rank()}.pt')
'''


def free_ports(count: int) -> List[int]:
    """``count`` distinct free TCP ports on the loopback interface (all bound at once)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(('127.0.0.1', 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    return free_ports(1)[0]


def run_tool(tool: str, *args, cwd=None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``tools/<tool>`` (e.g. ``misc/make_tiny_data.py``) run as a user runs it, with this Python,
    in ``cwd``; its stdout and stderr as text."""
    return subprocess.run([sys.executable, str(REPO / 'tools' / tool), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def build_test_split(root: Path, **kwargs):
    """The tiny detection config's VOC2007 test dataset, rooted at ``root``."""
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(TINY_DETECTION))
    dataset = dict(cfg.test_dataloader.dataset, data_root=str(root) + '/', **kwargs)
    return DATASETS.build(dataset)


def write_image_folder(root: Path, num_classes: int = 2, per_class: int = 8, size: int = 32) -> Path:
    """Class-per-folder PNGs (mmpretrain CustomDataset layout); class c is bright in quadrant c."""
    rng = np.random.default_rng(0)
    for c in range(num_classes):
        (root / f'class{c}').mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            half = size // 2
            y, x = divmod(c % 4, 2)
            img[y * half:(y + 1) * half, x * half:(x + 1) * half] += 150
            Image.fromarray(img).save(root / f'class{c}' / f'{i}.png')
    return root


def classifier_cfg(data_root: Path, work_dir: Path, max_iters: int = 20, **overrides) -> dict:
    """An mmpretrain ImageClassifier (narrow CIFAR ResNet-18) config, iteration-based, no validation."""
    cfg = dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['fdrop_mm'], allow_failed_imports=False),
        work_dir=str(work_dir),
        experiment_name=f'{work_dir.name}_{uuid.uuid4().hex[:8]}',  # runners in one second must not share a logger
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
                      loss=dict(type='CrossEntropyLoss'), topk=(1, )),
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=2,
                                   mean=[127.5] * 3, std=[64.0] * 3)),
        train_dataloader=dict(
            batch_size=4, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(type='CustomDataset', data_root=str(data_root),
                         pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4)),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=5),
                           checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False)),
        randomness=dict(seed=0, deterministic=True),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
    )
    cfg.update(copy.deepcopy(overrides))
    return cfg


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp('images'))


@pytest.fixture(scope='session')
def tiny_voc(tmp_path_factory) -> Path:
    """A tiny VOCdevkit (VOC2007 trainval 6 / test 4, VOC2012 trainval 4 images of 192x160)."""
    root = tmp_path_factory.mktemp('voc') / 'VOCdevkit'
    make_voc(root, seed=0, voc07_trainval=6, voc07_test=4, voc12_trainval=4)
    return root


@pytest.fixture(scope='session')
def detector_checkpoint(tiny_voc, tmp_path_factory) -> Path:
    """The tiny RetinaNet-R50 config's model (random init), saved by its Runner: state_dict and
    meta (the config text in meta.cfg) as any mmdet training writes them."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    work_dir = tmp_path_factory.mktemp('detector')
    with pytest.MonkeyPatch.context() as env:
        env.setenv('VOC_ROOT', f'{tiny_voc}/')
        cfg = Config.fromfile(str(TINY_DETECTION))
    cfg.model.backbone.init_cfg = None
    cfg.work_dir, cfg.experiment_name = str(work_dir), f'detector_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    runner.save_checkpoint(str(work_dir), 'retinanet.pth', save_optimizer=False, save_param_scheduler=False)
    return work_dir / 'retinanet.pth'


@pytest.fixture
def mmpretrain_scope():
    """Registry builds resolve in mmpretrain, whatever default scope an earlier test left current."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
