"""FocusedDropout for the OpenMMLab stack.

- ``fdrop_mm.focused_dropout``: the operator (pure torch): ``focused_mask``, ``FocusedDropout``.
- ``fdrop_mm.hooks``: ``FocusedDropoutHook``, participation rate and magnified weight decay.
- ``fdrop_mm.distributed``: DDP on CPU (gloo) for mmengine Runners.
- ``fdrop_mm.cifar_models``: the paper's CIFAR backbones (registered in mmpretrain's MODELS) and
  the compared regularisers SpatialDropout and DropBlock2d (root MODELS).

Importing the package (``custom_imports = dict(imports=['fdrop_mm'])``) registers
FocusedDropout in mmengine's root MODELS (visible from the mmdet and mmpretrain
scopes and to mmcv's ``build_plugin_layer``), the hook in the root HOOKS, the CPU
DDP wrapper in MODEL_WRAPPERS, and makes mmengine checkpoints loadable under
torch's weights-only ``torch.load``.
"""
from mmengine.registry import MODELS

from .checkpoint_safety import allow_mmengine_checkpoints, name_unreadable_checkpoints
from .cifar_models import CifarDenseNet, CifarResNet, CifarVGG, CifarWideResNet
from .distributed import CPUAwareDistributedDataParallel
from .focused_dropout import FocusedDropout, focused_mask
from .hooks import FocusedDropoutHook
from .transfer import StrictPretrainedInit, extract_backbone

MODELS.register_module(module=FocusedDropout)
allow_mmengine_checkpoints()
name_unreadable_checkpoints()

__all__ = ['focused_mask', 'FocusedDropout', 'FocusedDropoutHook', 'CPUAwareDistributedDataParallel',
           'extract_backbone', 'StrictPretrainedInit', 'CifarResNet', 'CifarVGG', 'CifarDenseNet',
           'CifarWideResNet']
