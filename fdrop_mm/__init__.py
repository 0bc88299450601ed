"""FocusedDropout for the OpenMMLab stack.

The operator is pure torch and needs no other package::

    from fdrop_mm import FocusedDropout, focused_dropout, focused_mask

Layers, each importing only those above it:

- ``fdrop_mm.focused_dropout``: the operator (torch only).
- ``fdrop_mm.compat``: torch >= 2.6 weights-only loading of mmengine checkpoints; DDP on CPU;
  ``import mmaction.models`` with the registry's mmaction2 1.2.0, which lacks DRN's files.
- ``fdrop_mm.models``: the regularisers in root MODELS (FocusedDropout, SpatialDropout,
  DropBlock2d) and the paper's CIFAR backbones (mmpretrain's MODELS).
- ``fdrop_mm.visualization``: the paper's pictures (CAM grids, reference channels, curves, live
  masks) and mmengine's scalar logs.
- ``fdrop_mm.engine.hooks``: ``FocusedDropoutHook``, ``FocusedDropoutVisualizationHook``.
- ``fdrop_mm.datasets``, ``fdrop_mm.evaluation``: checked CIFAR / Tiny ImageNet / ImageNet
  (mmpretrain) and VOC datasets, VOC mAP with per-class AP (mmdet).
- ``fdrop_mm.config_text``: the literals of a config text, read without executing it.
- ``fdrop_mm.checkpoint_files``: checkpoint files read and checked against a model.
- ``fdrop_mm.strict_pretrained``: ``init_cfg=dict(type='StrictPretrained')``, strict loading.
- ``fdrop_mm.transfer``: classifier checkpoint -> detector backbone.
- ``fdrop_mm.apis``: training and testing as tools/train.py and tools/test.py run them.
- ``fdrop_mm.experiments``, ``fdrop_mm.tiny_data``: the pipeline, sweeps, tables, tiny data.
- ``fdrop_mm.cli``: what the tools share: a quiet terminal, exit status 2 on bad input.

With mmengine installed, importing the package (``custom_imports = dict(imports=['fdrop_mm'])``,
the only import any config needs) registers all of it: the mmpretrain adapters when mmpretrain
is installed, the mmdet adapters when mmdet is. An adapter whose package is installed but fails
to import raises that ImportError.
"""
from importlib.util import find_spec

from .focused_dropout import FocusedDropout, focused_dropout, focused_mask, reference_channel

__all__ = ['focused_mask', 'focused_dropout', 'reference_channel', 'FocusedDropout']

if find_spec('mmengine') is not None:
    from . import compat, models  # noqa: F401  (compat: mmengine checkpoints load under torch >= 2.6)
    from .compat import CPUAwareDistributedDataParallel
    from .engine import FocusedDropoutHook, FocusedDropoutVisualizationHook
    from .strict_pretrained import StrictPretrainedInit
    from .transfer import extract_backbone
    __all__ += ['FocusedDropoutHook', 'FocusedDropoutVisualizationHook', 'CPUAwareDistributedDataParallel',
                'extract_backbone', 'StrictPretrainedInit']
    if find_spec('mmpretrain') is not None:
        from .datasets import classification  # noqa: F401  registers the classification datasets
        from .models import CifarDenseNet, CifarResNet, CifarVGG, CifarWideResNet
        __all__ += ['CifarResNet', 'CifarVGG', 'CifarDenseNet', 'CifarWideResNet']
    if find_spec('mmdet') is not None:
        from . import evaluation  # noqa: F401  registers VOCMetricPerClass
        from .datasets import voc  # noqa: F401  registers CheckedVOCDataset
