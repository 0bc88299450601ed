"""ImageNet (``<out>/imagenet``, for mmpretrain 1.2.0 ``ImageNet``)::

    train/<wnid>/<wnid>_<n>.JPEG          meta/train.txt  "<wnid>/<wnid>_<n>.JPEG <label>"
    val/ILSVRC2012_val_<nnnnnnnn>.JPEG    meta/val.txt    "ILSVRC2012_val_<nnnnnnnn>.JPEG <label>"
    meta/classes.txt                      one class name per line, in label order

Labels are the indices of the wnids in sorted order, as ImageNet's. A config sets
``type='ImageNet', data_root='<out>/imagenet', split='train'`` (or ``'val'``), which
finds ``meta/<split>.txt`` and the ``<split>/`` image folder by itself; plus
``classes='<out>/imagenet/meta/classes.txt'`` (a path used as given, not joined to
``data_root``) or ``metainfo=dict(classes=imagenet_class_names(n))``; and a head with
``num_classes=<--num-classes>`` (top-5 accuracy needs at least 5). Without ``classes``
the dataset keeps the 1000 real ImageNet names and loads without complaint (labels are
not checked against classes when an annotation file is used), but label 0 is then
'tench, Tinca tinca' and ``len(dataset.CLASSES)`` is 1000. Images are
``--imagenet-size`` pixels square (default 64); the stock 224-pixel pipelines upscale them.
"""
import colorsys
from pathlib import Path

import numpy as np

from .drawing import glyph, object_image, save_jpeg, split_rng, write_lines
from .manifest import TinyDataError, _materialize, _require_at_least

MAX_IMAGENET_CLASSES = 1000


def imagenet_wnids(num_classes):
    """Real-looking, sorted WordNet ids, fixed for a given class count (not seeded)."""
    return [f'n{1440764 + 9973 * k:08d}' for k in range(num_classes)]


def imagenet_class_names(num_classes):
    """Class names in label order, as written to ``meta/classes.txt``."""
    names = []
    for k in range(num_classes):
        shape, texture, colour = glyph(k)
        hue = round(360 * colorsys.rgb_to_hsv(*(c / 255 for c in colour))[0]) % 360
        names.append(f'{shape}_{texture}_hue{hue:03d}')
    return names


def write_imagenet(root, seed, num_classes, train_per_class, val_per_class, image_size):
    """Write the ImageNet layout under the (new, empty) directory ``root``."""
    wnids = imagenet_wnids(num_classes)
    rng = split_rng(seed, 'imagenet/train')
    train_lines = []
    for label, wnid in enumerate(wnids):
        for n in range(1, train_per_class + 1):
            relpath = f'{wnid}/{wnid}_{n}.JPEG'
            save_jpeg(object_image(rng, label, image_size)[0], rng, root / 'train' / relpath)
            train_lines.append(f'{relpath} {label}')
    rng = split_rng(seed, 'imagenet/val')
    val_labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))
    val_lines = []
    for n, label in enumerate(val_labels.tolist(), start=1):
        filename = f'ILSVRC2012_val_{n:08d}.JPEG'
        save_jpeg(object_image(rng, label, image_size)[0], rng, root / 'val' / filename)
        val_lines.append(f'{filename} {label}')
    write_lines(root / 'meta' / 'train.txt', train_lines)
    write_lines(root / 'meta' / 'val.txt', val_lines)
    write_lines(root / 'meta' / 'classes.txt', imagenet_class_names(num_classes))


def _make_labelled_images(root, dataset, label, writer, seed, num_classes, train_per_class,
                          val_per_class, image_size, force):
    """Validate the parameters of an ImageNet-like set and materialise it with ``writer``."""
    if not 2 <= num_classes <= MAX_IMAGENET_CLASSES:
        raise TinyDataError(f'num_classes must be in [2, {MAX_IMAGENET_CLASSES}], '
                            f'got {num_classes}')
    _require_at_least(0, seed=seed)
    _require_at_least(1, train_per_class=train_per_class, val_per_class=val_per_class)
    if image_size < 16:
        raise TinyDataError(f'{label} image_size must be at least 16, got {image_size}')
    params = dict(dataset=dataset, seed=seed, num_classes=num_classes,
                  train_per_class=train_per_class, val_per_class=val_per_class,
                  image_size=image_size)
    return _materialize(Path(root), params, force, lambda tmp: writer(
        tmp, seed, num_classes, train_per_class, val_per_class, image_size))


def make_imagenet(root, *, seed=0, num_classes=20, train_per_class=30, val_per_class=10,
                  image_size=64, force=False):
    """Make the tiny ImageNet at ``root``; return False if it was already complete."""
    return _make_labelled_images(root, 'imagenet', 'ImageNet', write_imagenet, seed, num_classes,
                                 train_per_class, val_per_class, image_size, force)
