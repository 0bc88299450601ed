"""Model adapters: the regularisers in mmengine's root MODELS, and the paper's CIFAR backbones
in mmpretrain's MODELS (when mmpretrain is installed)."""
from importlib.util import find_spec

from .regularizers import DropBlock2d

__all__ = ['DropBlock2d']

if find_spec('mmpretrain') is not None:
    from .backbones import PENULTIMATE_STAGE, CifarDenseNet, CifarResNet, CifarVGG, CifarWideResNet
    __all__ += ['CifarResNet', 'CifarVGG', 'CifarDenseNet', 'CifarWideResNet', 'PENULTIMATE_STAGE']
