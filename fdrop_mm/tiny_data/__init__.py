"""Deterministic tiny ImageNet, VOCdevkit, CIFAR-10/100 and Tiny ImageNet datasets in their
real on-disk formats.

Usage::

    python tools/misc/make_tiny_data.py --out data/tiny [--seed 0] [--only DATASET ...] [--force]

or ``generate('data/tiny', only=('imagenet', 'voc'), seed=0, force=False, **sizes)``, writes
``<out>/imagenet`` and ``<out>/VOCdevkit`` (the default ``--only imagenet voc``), and
with ``--only cifar10 cifar100 tinyimagenet`` ``<out>/cifar10``, ``<out>/cifar100`` and
``<out>/tiny-imagenet-200``. Every image holds synthetic objects
whose class is learnable: class ``k`` is drawn as its own shape, fill texture and hue
(see :func:`.drawing.glyph`) on a noisy, randomly tinted background, at varied positions and sizes.
The same parameters and seed give byte-identical files. Each dataset root gets a
``tiny_data.json`` manifest, written last; a rerun with the same parameters skips a
complete dataset, a rerun with other parameters is refused unless ``--force``.

One module per format: ``imagenet``, ``voc``, ``cifar``, ``tinyimagenet`` (made by
:func:`generate`), and ``ade20k``, ``rawframes``, ``videos``, ``coco_keypoints`` (the ecosystem
configs' data, docs/ecosystem.md); ``drawing`` and ``manifest`` are what they share.
"""
import functools
from pathlib import Path

from .cifar import CIFAR_FORMATS, make_cifar
from .imagenet import imagenet_class_names, imagenet_wnids, make_imagenet
from .manifest import MANIFEST, TinyDataError
from .tinyimagenet import make_tinyimagenet
from .voc import make_voc

DATASETS = ('imagenet', 'voc', 'cifar10', 'cifar100', 'tinyimagenet')
DATASET_FOLDERS = dict(imagenet='imagenet', voc='VOCdevkit', cifar10='cifar10', cifar100='cifar100',
                       tinyimagenet='tiny-imagenet-200')  # each dataset's root under ``out``
DEFAULT_SIZES = dict(  # generate()'s **sizes, the flags of tools/misc/make_tiny_data.py
    num_classes=20, imagenet_train_per_class=30, imagenet_val_per_class=10, imagenet_size=64,
    voc07_trainval=60, voc07_test=100, voc12_trainval=40, voc_size=(192, 160),
    cifar10_train_per_class=20, cifar10_test_per_class=10,
    cifar100_train_per_class=5, cifar100_test_per_class=2,
    tinyimagenet_classes=10, tinyimagenet_train_per_class=10, tinyimagenet_val_per_class=4,
    tinyimagenet_size=64)

__all__ = ['generate', 'make_imagenet', 'make_voc', 'make_cifar', 'make_tinyimagenet',
           'imagenet_class_names', 'imagenet_wnids', 'TinyDataError', 'MANIFEST', 'DATASETS',
           'DATASET_FOLDERS', 'DEFAULT_SIZES']


def generate(out, only=('imagenet', 'voc'), seed=0, force=False, **sizes):
    """Make the datasets ``only`` (of :data:`DATASETS`) under ``out``, in their folders
    :data:`DATASET_FOLDERS`; ``sizes`` override :data:`DEFAULT_SIZES`.

    Prints and returns ``[(root, written), ...]`` in :data:`DATASETS` order; ``written`` is
    False for a dataset that was already complete for these parameters, and skipped. Raises
    :class:`TinyDataError` on bad input or an output it must not overwrite.
    """
    unknown = sorted(set(only) - set(DATASETS))
    if unknown:
        raise TinyDataError(f'only: unknown datasets {unknown}, expected some of {list(DATASETS)}')
    unknown = sorted(sizes.keys() - DEFAULT_SIZES.keys())
    if unknown:
        raise TinyDataError(f'unknown sizes {unknown}, expected some of {sorted(DEFAULT_SIZES)}')
    size = dict(DEFAULT_SIZES, **sizes)
    out = Path(out)
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            raise TinyDataError(f'--out {out}: {path} exists and is not a directory')
    makers = {
        'imagenet': lambda root: make_imagenet(
            root, seed=seed, num_classes=size['num_classes'],
            train_per_class=size['imagenet_train_per_class'],
            val_per_class=size['imagenet_val_per_class'], image_size=size['imagenet_size'],
            force=force),
        'voc': lambda root: make_voc(
            root, seed=seed, voc07_trainval=size['voc07_trainval'], voc07_test=size['voc07_test'],
            voc12_trainval=size['voc12_trainval'], image_size=tuple(size['voc_size']),
            force=force),
        'tinyimagenet': lambda root: make_tinyimagenet(
            root, seed=seed, num_classes=size['tinyimagenet_classes'],
            train_per_class=size['tinyimagenet_train_per_class'],
            val_per_class=size['tinyimagenet_val_per_class'],
            image_size=size['tinyimagenet_size'], force=force),
        **{dataset: functools.partial(
            make_cifar, dataset=dataset, seed=seed, force=force,
            train_per_class=size[f'{dataset}_train_per_class'],
            test_per_class=size[f'{dataset}_test_per_class']) for dataset in CIFAR_FORMATS},
    }
    results = []
    for dataset in DATASETS:
        if dataset in only:
            root = out / DATASET_FOLDERS[dataset]
            written = makers[dataset](root)
            print(f'wrote {root}' if written else
                  f'{root} is already complete for these parameters, skipped')
            results.append((root, written))
    return results
