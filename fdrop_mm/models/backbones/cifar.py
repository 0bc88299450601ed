"""The CIFAR networks of the paper's classification experiments (§5, Tables 1-3) and the
regularisers it compares, as mmpretrain backbones and registered modules.

Backbones (mmpretrain's MODELS), used in an ``ImageClassifier`` with
``neck=dict(type='GlobalAveragePooling')`` and a ``LinearClsHead`` of ``in_channels =
backbone.out_channels``: ``CifarResNet`` (ResNet-20/56/110), ``CifarVGG`` (VGG-19 with BN),
``CifarDenseNet`` (DenseNet-BC-100, k=12), ``CifarWideResNet`` (WRN-28-10).

Each backbone is a stem followed by its groups, ``backbone.stages.0``, ``.1``, ...; every group
starts with its downsampling (strided block, transition or max-pool) and ends at its full
resolution, so a group's output is the feature map the paper's regulariser sees.
``stage_regularizer=dict(cfg=..., after_stages=(...))`` puts one module built from ``cfg`` on the
output of each listed group, as ``backbone.stage_regularizers.<index>``. §5: "Dropblock is applied
to the output of first two groups" (``after_stages=(0, 1)``), "Dropout, SpatialDropout and
FocusedDropout are applied to the output of penultimate group" (``PENULTIMATE_STAGE``).

Regulariser types for ``cfg`` (root MODELS, so they resolve from every scope):
``dict(type='Dropout', drop_prob=p)`` (mmcv's registration of ``nn.Dropout``: element-wise),
``dict(type='SpatialDropout', p=p)`` (``nn.Dropout2d``: whole channels, Tompson et al.),
``dict(type='DropBlock2d', drop_prob=p, block_size=b)`` (timm's implementation, see
``DropBlock2d``) and ``dict(type='FocusedDropout')``, driven by ``FocusedDropoutHook`` with
``targets=None`` (alone it drops on every batch). The paper states no rate or block size for the
compared regularisers.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from ..regularizers import check_positive_int

__all__ = ['CifarResNet', 'CifarVGG', 'CifarDenseNet', 'CifarWideResNet', 'PENULTIMATE_STAGE']

# Index of "the penultimate group" (§5) in each backbone's ``stages``.
PENULTIMATE_STAGE = {'CifarResNet': 1, 'CifarVGG': 3, 'CifarDenseNet': 1, 'CifarWideResNet': 1}

KAIMING_CONV_INIT = dict(type='Kaiming', layer='Conv2d')  # He et al. 2015 (fan_out, normal)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _blocks_per_group(owner: str, depth, other_layers: int, examples: str) -> int:
    """n of a network of depth 6n + other_layers (3 groups of n two-conv units)."""
    if not isinstance(depth, int) or depth < 6 + other_layers or (depth - other_layers) % 6:
        raise ValueError(f'{owner}: depth must be 6n + {other_layers} with n >= 1 ({examples}), '
                         f'got {depth!r}')
    return (depth - other_layers) // 6




def _build_stage_regularizers(stage_regularizer: Optional[dict], num_stages: int,
                              owner: str) -> nn.ModuleDict:
    """One module per listed stage, built from ``cfg`` (separate instances, keyed by index)."""
    if stage_regularizer is None:
        return nn.ModuleDict()
    if not isinstance(stage_regularizer, dict) or set(stage_regularizer) != {'cfg', 'after_stages'}:
        raise ValueError(f"{owner}: stage_regularizer must be None or a dict with exactly the keys "
                         f"'cfg' and 'after_stages', got {stage_regularizer!r}")
    cfg, after_stages = stage_regularizer['cfg'], stage_regularizer['after_stages']
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f"{owner}: stage_regularizer.cfg must be a module config with a 'type', "
                         f'got {cfg!r}')
    if (not isinstance(after_stages, (list, tuple)) or not after_stages
            or not all(isinstance(i, int) and 0 <= i < num_stages for i in after_stages)
            or len(set(after_stages)) != len(after_stages)):
        raise ValueError(f'{owner}: stage_regularizer.after_stages must be a non-empty sequence of '
                         f'distinct stage indices in 0..{num_stages - 1}, got {after_stages!r}')
    return nn.ModuleDict({str(i): MODELS.build(cfg) for i in sorted(after_stages)})


class _CifarBackbone(BaseModule):
    """A stem, ``stages`` run in order, and the stage regularisers on the listed stage outputs."""

    def __init__(self, stem: nn.Module, stages: List[nn.Module], out_channels: int,
                 stage_regularizer: Optional[dict], init_cfg) -> None:
        super().__init__(init_cfg=init_cfg)
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.out_channels = out_channels
        self.stage_regularizers = _build_stage_regularizers(stage_regularizer, len(stages),
                                                            type(self).__name__)

    def forward(self, x: Tensor) -> tuple:
        x = self.stem(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if str(index) in self.stage_regularizers:
                x = self.stage_regularizers[str(index)](x)
        return (x, )


class _BasicBlock(nn.Module):
    """He et al. 2016's basic block; the shortcut is option A (subsample, zero-pad channels),
    parameter-free, as in their CIFAR experiments (§4.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, ::self.stride, ::self.stride]
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return F.relu(out + shortcut, inplace=True)


@MODELS.register_module()
class CifarResNet(_CifarBackbone):
    """ResNet for CIFAR (He et al. 2016, §4.2): 3x3 conv to 16 channels, then 3 groups of n basic
    blocks with 16/32/64 channels at 32/16/8 pixels, depth = 6n + 2 (20, 56, 110 in the paper).

    Stages 0, 1, 2 are the three groups; the penultimate group is stage 1.
    ``init_cfg`` defaults to He (Kaiming) initialisation of the convolutions.
    """

    def __init__(self, depth: int, stage_regularizer: Optional[dict] = None,
                 init_cfg=KAIMING_CONV_INIT) -> None:
        blocks = _blocks_per_group('CifarResNet', depth, 2, '20, 56, 110, ...')
        stages, in_channels = [], 16
        for index, channels in enumerate((16, 32, 64)):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(*[
                _BasicBlock(in_channels if b == 0 else channels, channels, stride if b == 0 else 1)
                for b in range(blocks)]))
            in_channels = channels
        stem = nn.Sequential(_conv3x3(3, 16), _bn_relu(16))
        super().__init__(stem, stages, 64, stage_regularizer, init_cfg)


VGG_LAYERS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


@MODELS.register_module()
class CifarVGG(_CifarBackbone):
    """VGG with batch normalisation for 32x32 input (Simonyan & Zisserman 2015, as commonly
    adapted to CIFAR): 5 groups of 3x3 conv-BN-ReLU with 64/128/256/512/512 channels, max-pools
    between them and after the last, so the feature map is 512 x 1 x 1 (VGG-19: 2/2/4/4/4 convs,
    ≈20.0 M parameters with a 10-class linear head instead of VGG's 3 FC layers).

    Stage i is the conv block at 32 / 2**i pixels (stage i > 0 opens with the max-pool);
    the penultimate group is stage 3 (4x4 pixels).
    """

    def __init__(self, depth: int = 19, stage_regularizer: Optional[dict] = None,
                 init_cfg=KAIMING_CONV_INIT) -> None:
        if depth not in VGG_LAYERS:
            raise ValueError(f'CifarVGG: depth must be one of {sorted(VGG_LAYERS)}, got {depth!r}')
        stages, in_channels = [], 3
        for index, (convs, channels) in enumerate(zip(VGG_LAYERS[depth], (64, 128, 256, 512, 512))):
            layers = [nn.MaxPool2d(2)] if index else []
            for _ in range(convs):
                layers += [_conv3x3(in_channels, channels), *_bn_relu(channels)]
                in_channels = channels
            stages.append(nn.Sequential(*layers))
        super().__init__(nn.Identity(), stages, 512, stage_regularizer, init_cfg)
        self.final_pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> tuple:
        return (self.final_pool(super().forward(x)[0]), )


class _DenseLayer(nn.Module):
    """DenseNet-BC's bottleneck layer: BN-ReLU-1x1 conv (4k) - BN-ReLU-3x3 conv (k), concatenated."""

    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _bn_relu(in_channels), nn.Conv2d(in_channels, 4 * growth_rate, 1, bias=False),
            _bn_relu(4 * growth_rate), _conv3x3(4 * growth_rate, growth_rate))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((x, self.layers(x)), dim=1)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """DenseNet's transition: BN-ReLU-1x1 conv (compression) - 2x2 average pool."""
    return nn.Sequential(_bn_relu(in_channels), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.AvgPool2d(2))


@MODELS.register_module()
class CifarDenseNet(_CifarBackbone):
    """DenseNet-BC for CIFAR (Huang et al. 2017): a 3x3 conv to 2k channels, 3 dense blocks of
    (depth - 4) / 6 bottleneck layers each, transitions halving the channels (compression 0.5),
    and a final BN-ReLU. DenseNet-BC-100 with k = 12: 16 layers per block, 342 output channels,
    ≈0.8 M parameters.

    Stage i is dense block i at 32 / 2**i pixels (stage i > 0 opens with the transition, the last
    ends with the final BN-ReLU); the penultimate group is stage 1.
    """

    def __init__(self, depth: int = 100, growth_rate: int = 12,
                 stage_regularizer: Optional[dict] = None, init_cfg=KAIMING_CONV_INIT) -> None:
        layers = _blocks_per_group('CifarDenseNet', depth, 4, 'DenseNet-BC: 100, 190, ...')
        check_positive_int('CifarDenseNet', 'growth_rate', growth_rate)
        channels = 2 * growth_rate
        stem = _conv3x3(3, channels)
        stages = []
        for index in range(3):
            modules = []
            if index:
                modules.append(_transition(channels, channels // 2))
                channels //= 2
            for _ in range(layers):
                modules.append(_DenseLayer(channels, growth_rate))
                channels += growth_rate
            if index == 2:
                modules.append(_bn_relu(channels))
            stages.append(nn.Sequential(*modules))
        super().__init__(stem, stages, channels, stage_regularizer, init_cfg)


class _PreActBlock(nn.Module):
    """Wide ResNet's pre-activation basic block (BN-ReLU-conv twice), with a 1x1 conv shortcut
    from the activated input when the shape changes (Zagoruyko & Komodakis 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.pre_act = _bn_relu(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.mid_act = _bn_relu(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.projection = (nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                           if stride != 1 or in_channels != out_channels else None)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.pre_act(x)
        shortcut = x if self.projection is None else self.projection(activated)
        return self.conv2(self.mid_act(self.conv1(activated))) + shortcut


@MODELS.register_module()
class CifarWideResNet(_CifarBackbone):
    """Wide ResNet for CIFAR (Zagoruyko & Komodakis 2016): a 3x3 conv to 16 channels, 3 groups of
    (depth - 4) / 6 pre-activation blocks with 16k/32k/64k channels at 32/16/8 pixels, and a final
    BN-ReLU. WRN-28-10: 4 blocks per group, 160/320/640 channels, ≈36.5 M parameters. No dropout
    inside the blocks (the paper's comparisons add their regulariser at the group outputs).

    Stages 0, 1, 2 are the three groups (the last ends with the final BN-ReLU); the penultimate
    group is stage 1.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10,
                 stage_regularizer: Optional[dict] = None, init_cfg=KAIMING_CONV_INIT) -> None:
        blocks = _blocks_per_group('CifarWideResNet', depth, 4, '16, 22, 28, 40, ...')
        check_positive_int('CifarWideResNet', 'widen_factor', widen_factor)
        stages, in_channels = [], 16
        for index, base in enumerate((16, 32, 64)):
            channels, stride = base * widen_factor, 1 if index == 0 else 2
            modules = [_PreActBlock(in_channels if b == 0 else channels, channels, stride if b == 0 else 1)
                       for b in range(blocks)]
            if index == 2:
                modules.append(_bn_relu(channels))
            stages.append(nn.Sequential(*modules))
            in_channels = channels
        super().__init__(_conv3x3(3, 16), stages, in_channels, stage_regularizer, init_cfg)
