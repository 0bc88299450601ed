"""Shared fixtures: a small real mmpretrain classifier trained from real image files."""
import copy
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


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
