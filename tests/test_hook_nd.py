"""FocusedDropoutHook beyond images, in real mmengine Runners: mmaction2's stock TSN (frames as
the batch: one mask per frame) and I3D (ResNet3d, (N, C, T, H, W): one mask per clip) with the
default target, a 1-D convolutional stage, and transformer tokens refused."""
import math
import re
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.hub import get_config
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import DataLoader

import fdrop_mm  # noqa: F401  registers the hook, makes mmaction.models importable
from fdrop_mm import FocusedDropoutHook
from tests.conftest import classifier_cfg

GAMMA_RANGE = (0.3, 0.6)


class RecordTarget(Hook):
    """A target's output before and after FocusedDropoutHook's forward hook, per training iteration."""
    priority = 'LOW'  # before_train after FocusedDropoutHook's, so 'after' sees its output

    def __init__(self, target: str):
        self.target, self.records = target, []

    def before_train(self, runner):
        module = runner.model.get_submodule(self.target)
        module.register_forward_hook(lambda m, a, out: self.records.append([out.detach()]), prepend=True)
        module.register_forward_hook(lambda m, a, out: self.records[-1].append(out.detach()))


def the_hook(runner) -> FocusedDropoutHook:
    return next(h for h in runner.hooks if isinstance(h, FocusedDropoutHook))


def scalar_history(runner, key):
    return [float(v) for v in runner.message_hub.get_scalar(key).data[0]]


def gamma_interval(sample: torch.Tensor, kept: torch.Tensor):
    """The γ for which §4's rule keeps exactly ``kept`` (positions) of ``sample`` (C, *S):
    reference channel = highest mean over all positions, kept = reference > γ · its maximum.
    Returns (lowest, highest) γ, empty when low > high."""
    sample = sample.double()
    reference = sample[sample.flatten(1).mean(1).argmax()]
    peak = reference.max()
    low = (reference[~kept].max() / peak).item() if (~kept).any() else 0.0
    high = (reference[kept].min() / peak).item()
    return low, high


def assert_masks_follow_the_rule(before: torch.Tensor, after: torch.Tensor):
    """``after`` is ``before`` times one mask per sample over all its positions, shared by the
    channels, and each mask is what §4 keeps for a γ in GAMMA_RANGE; returns the kept fraction."""
    kept = after.ne(0).any(dim=1)  # (N, *S)
    assert torch.equal(after, before * kept.unsqueeze(1))
    for sample, sample_kept in zip(before, kept):
        low, high = gamma_interval(sample, sample_kept)
        assert max(low, GAMMA_RANGE[0]) <= min(high, GAMMA_RANGE[1]), (low, high)
    return kept.double().mean().item()


# ------------------------------------------------------------------ mmaction2 recognizers
RECOGNIZERS = {
    # 2 videos of 3 segments of one 64x64 frame: layer3 sees (6, 1024, 4, 4), one sample per frame
    'tsn': ('mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py',
            (3, 3, 64, 64), (6, 1024, 4, 4)),
    # 2 clips of 16 frames of 64x64: layer3 sees (2, 1024, 2, 4, 4) (time strided by conv1, pool1, pool2)
    'i3d': ('mmaction::recognition/i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py',
            (1, 3, 16, 64, 64), (2, 1024, 2, 4, 4)),
}


def video_loader(sample_shape, num_samples: int = 4) -> DataLoader:
    """Packed mmaction2 samples (inputs as FormatShape leaves them, an ActionDataSample)."""
    from mmaction.structures import ActionDataSample
    generator = torch.Generator().manual_seed(0)
    samples = [dict(inputs=torch.randint(0, 256, sample_shape, dtype=torch.uint8, generator=generator),
                    data_samples=ActionDataSample().set_gt_label(i % 2)) for i in range(num_samples)]
    return DataLoader(samples, batch_size=2, collate_fn=pseudo_collate)


def video_runner(name: str, work_dir, max_iters: int, hook: dict) -> Runner:
    config, sample_shape, _ = RECOGNIZERS[name]
    model = get_config(config).model
    model.backbone.pretrained = None  # no download
    if name == 'i3d':
        model.backbone.pretrained2d = False
    model.cls_head.num_classes = 2
    return Runner(model=model, work_dir=str(work_dir), experiment_name=f'{name}_{uuid.uuid4().hex[:8]}',
                  train_dataloader=video_loader(sample_shape),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-4)),
                  default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                                     checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False)),
                  custom_hooks=[hook], default_scope='mmaction', randomness=dict(seed=0))


@pytest.mark.parametrize('name', list(RECOGNIZERS))
def test_stock_recognizer_masks_its_penultimate_stage(name, tmp_path):
    """No targets: the default finds backbone.layer3 of mmaction2's ResNet / ResNet3d; focused
    iterations mask it with one mask per sample of that map (TSN: per frame, I3D: per clip over
    T×H×W), each following §4's rule; fd/keep_ratio is the kept fraction."""
    runner = video_runner(name, tmp_path, max_iters=4,
                          hook=dict(type='FocusedDropoutHook', participation=0.5, gamma_range=GAMMA_RANGE, seed=1))
    recorder = RecordTarget('backbone.layer3')
    runner.register_hook(recorder)
    runner.train()
    assert the_hook(runner).settings()['modules'] == ['backbone.layer3']
    active = scalar_history(runner, 'train/fd/active')
    assert len(recorder.records) == 4 and 0 < sum(active) < 4
    kept_fractions = []
    for focused, (before, after) in zip(active, recorder.records):
        assert tuple(before.shape) == RECOGNIZERS[name][2]
        if focused:
            kept_fractions.append(assert_masks_follow_the_rule(before, after))
        else:
            assert torch.equal(after, before)
    assert scalar_history(runner, 'train/fd/keep_ratio') == pytest.approx(kept_fractions, abs=1e-6)
    assert all(0 < f < 1 for f in kept_fractions)
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'FD goes on the output of the penultimate stage, backbone.layer3' in log
    assert 'fd/keep_ratio' in log


# ------------------------------------------------------------------ a 1-D signal network
class SignalNet(BaseModel):
    """A 1-D CNN on (N, 2, 64) signals: a convolutional stage (N, 16, 32), pooling, a classifier."""

    def __init__(self):
        super().__init__()
        self.stage = nn.Sequential(nn.Conv1d(2, 16, 5, stride=2, padding=2), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Linear(16, 2)

    def forward(self, inputs, labels, mode='tensor'):
        scores = self.head(self.stage(torch.stack(inputs)).mean(-1))
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(scores, torch.stack(labels)))
        return scores


def signal_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    samples = [dict(inputs=torch.randn(2, 64, generator=generator), labels=torch.tensor(i % 2)) for i in range(8)]
    return DataLoader(samples, batch_size=4, collate_fn=pseudo_collate)


def test_one_dimensional_convolutional_stage_is_masked_over_its_length(tmp_path):
    runner = Runner(model=SignalNet(), work_dir=str(tmp_path), experiment_name=f'signal_{uuid.uuid4().hex[:8]}',
                    train_dataloader=signal_loader(), train_cfg=dict(by_epoch=False, max_iters=4),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, weight_decay=1e-4)),
                    custom_hooks=[dict(type='FocusedDropoutHook', participation=1.0, targets=['stage'],
                                       gamma_range=GAMMA_RANGE)])
    recorder = RecordTarget('stage')
    runner.register_hook(recorder)
    runner.train()
    kept = [assert_masks_follow_the_rule(before, after) for before, after in recorder.records]
    assert scalar_history(runner, 'train/fd/keep_ratio') == pytest.approx(kept, abs=1e-6)
    assert tuple(recorder.records[0][0].shape) == (4, 16, 32) and all(0 < k < 1 for k in kept)


# ------------------------------------------------------------------ transformer tokens
VIT = dict(type='VisionTransformer', arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
           img_size=32, patch_size=8)
SWIN = dict(type='SwinTransformer', arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2]), img_size=32,
            window_size=4, out_indices=(1, ))


@pytest.mark.parametrize('backbone, neck, channels, target, shape', [
    (VIT, None, 32, 'backbone.layers.1', r'\(4, 17, 32\)'),
    (SWIN, dict(type='GlobalAveragePooling'), 32, 'backbone.stages.1.blocks.1', r'\(4, 16, 32\)'),
], ids=['vit layer', 'swin block'])
def test_transformer_tokens_are_refused_naming_the_target(image_folder, tmp_path, backbone, neck, channels,
                                                          target, shape):
    """(N, L, C) tokens are 3-D like a 1-D feature map, but the target holds no Conv1d: an error
    at the first training forward (participation 0: not even a focused one)."""
    cfg = classifier_cfg(image_folder, tmp_path, max_iters=2,
                         custom_hooks=[dict(type='FocusedDropoutHook', participation=0.0, targets=[target])])
    cfg['model'].update(backbone=backbone, neck=neck)
    cfg['model']['head']['in_channels'] = channels
    runner = Runner.from_cfg(Config(cfg))
    with pytest.raises(TypeError, match=rf"targets entry '{re.escape(target)}' returned a 3-D torch.float32 tensor "
                                        rf"of shape {shape} but contains no Conv1d.*tokens \(N, L, C\).*"
                                        rf"target a convolutional stage"):
        runner.train()
    assert runner.iter == 0


def test_gamma_interval_oracle_on_a_hand_example():
    """The oracle itself: reference channel 1 (mean 2 > 1), peak 4; γ in [0.25, 0.75) keeps the positions of 3 and 4."""
    sample = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 3.0, 4.0]])
    kept = torch.tensor([False, False, True, True])
    assert gamma_interval(sample, kept) == (0.25, 0.75)
    assert math.isclose(gamma_interval(sample, torch.tensor([False, False, False, True]))[0], 0.75)
