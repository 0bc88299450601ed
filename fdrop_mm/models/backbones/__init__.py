"""The paper's CIFAR networks as mmpretrain backbones."""
from .cifar import PENULTIMATE_STAGE, CifarDenseNet, CifarResNet, CifarVGG, CifarWideResNet

__all__ = ['CifarResNet', 'CifarVGG', 'CifarDenseNet', 'CifarWideResNet', 'PENULTIMATE_STAGE']
