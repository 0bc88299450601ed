"""Test and demo helpers: deterministic tiny datasets in their real on-disk formats."""
from .tiny_data import (DATASET_FOLDERS, DATASETS, DEFAULT_SIZES, TinyDataError, generate,
                        imagenet_class_names, imagenet_wnids, make_cifar, make_imagenet,
                        make_tinyimagenet, make_voc)

__all__ = ['generate', 'make_imagenet', 'make_voc', 'make_cifar', 'make_tinyimagenet',
           'imagenet_class_names', 'imagenet_wnids', 'TinyDataError', 'DATASETS',
           'DATASET_FOLDERS', 'DEFAULT_SIZES']
