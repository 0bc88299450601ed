"""FocusedDropout for the OpenMMLab stack.

- ``fdrop_mm.focused_dropout``: the operator (pure torch): ``focused_mask``, ``FocusedDropout``.
- ``fdrop_mm.hooks``: ``FocusedDropoutHook``, participation rate and magnified weight decay.
- ``fdrop_mm.distributed``: DDP on CPU (gloo) for mmengine Runners.
- ``fdrop_mm.cifar_models``: the paper's CIFAR backbones (registered in mmpretrain's MODELS) and
  the compared regularisers SpatialDropout and DropBlock2d (root MODELS).
- ``fdrop_mm.classification_data``: CheckedCIFAR10/100, TinyImageNet, CheckedImageNet
  (mmpretrain's DATASETS).
- ``fdrop_mm.detection``: CheckedVOCDataset, VOCMetricPerClass (mmdet's DATASETS, METRICS).

Importing the package (``custom_imports = dict(imports=['fdrop_mm'])``, the only import any
config needs) registers FocusedDropout in mmengine's root MODELS (visible from the mmdet and
mmpretrain scopes and to mmcv's ``build_plugin_layer``), the hook in the root HOOKS, the CPU
DDP wrapper in MODEL_WRAPPERS, the mmpretrain adapters (CIFAR networks, datasets) when
mmpretrain is installed and the mmdet adapters when mmdet is, and makes mmengine checkpoints
loadable under torch's weights-only ``torch.load``. An adapter whose package is installed but
fails to import raises that ImportError.
"""
from importlib.util import find_spec

from mmengine.registry import MODELS

from .checkpoint_safety import allow_mmengine_checkpoints, name_unreadable_checkpoints
from .distributed import CPUAwareDistributedDataParallel
from .focused_dropout import FocusedDropout, focused_mask
from .hooks import FocusedDropoutHook
from .transfer import StrictPretrainedInit, extract_backbone

MODELS.register_module(module=FocusedDropout)
allow_mmengine_checkpoints()
name_unreadable_checkpoints()

__all__ = ['focused_mask', 'FocusedDropout', 'FocusedDropoutHook', 'CPUAwareDistributedDataParallel',
           'extract_backbone', 'StrictPretrainedInit']

if find_spec('mmpretrain') is not None:
    from . import classification_data  # noqa: F401  registers the datasets
    from .cifar_models import CifarDenseNet, CifarResNet, CifarVGG, CifarWideResNet
    __all__ += ['CifarResNet', 'CifarVGG', 'CifarDenseNet', 'CifarWideResNet']
if find_spec('mmdet') is not None:
    from . import detection  # noqa: F401  registers CheckedVOCDataset, VOCMetricPerClass
