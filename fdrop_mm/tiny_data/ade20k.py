"""A deterministic tiny ADE20K (``ADEChallengeData2016``) in its real on-disk format, for
mmsegmentation 1.2.2's ``ADE20KDataset``.

Usage::

    make_ade20k('data/tiny/ADEChallengeData2016', seed=0, train_images=8, val_images=4)

Layout, as the published ``ADEChallengeData2016.zip`` unpacks::

    images/training/ADE_train_<nnnnnnnn>.jpg     annotations/training/ADE_train_<nnnnnnnn>.png
    images/validation/ADE_val_<nnnnnnnn>.jpg     annotations/validation/ADE_val_<nnnnnnnn>.png

Annotations are single-channel 8-bit PNGs of ADE20K's label values: 0 is "no annotated class"
and 1..150 are the 150 classes in ``ADE20KDataset.METAINFO`` order. The dataset reads them with
``reduce_zero_label=True``: 0 becomes the ignore index 255 and label k the class index k - 1.

Every image is a noisy, randomly tinted background of class 1 (``wall``) with up to
``objects_per_image`` objects, drawn as fdrop_mm.tiny_data draws its classes (object
class c: the shape, texture and hue of ``drawing.glyph(c)``) and annotated with label c + 2
(``building``, ``sky``, ...), so the class of a pixel is learnable from what is drawn there.
A band of unlabelled pixels (0) borders each object, so the ignore index occurs as in ADE20K.
The same parameters and seed give byte-identical files; a ``tiny_data.json`` manifest is
written last, and a rerun with the same parameters skips a complete dataset (see
:func:`fdrop_mm.tiny_data.generate` for the rules).
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .drawing import JPEG_QUALITY, glyph, noisy_background, noisy_pixels, paint, shape_mask, split_rng
from .manifest import TinyDataError, _materialize, _require_at_least, _require_image_size

ADE20K_CLASSES = 150
BACKGROUND_LABEL = 1  # 'wall'
UNLABELLED = 0  # reduce_zero_label=True maps it to the ignore index 255
FIRST_OBJECT_LABEL = 2  # object class c is annotated c + 2
MAX_OBJECT_CLASSES = ADE20K_CLASSES - FIRST_OBJECT_LABEL + 1
MIN_IMAGE_SIDE = 32
BORDER_PIXELS = 1  # width of the unlabelled band around an object
SPLITS = (('training', 'ADE_train'), ('validation', 'ADE_val'))  # folder, file name prefix


def object_label(object_class: int) -> int:
    """The ADE20K label value (as written to the PNGs) of object class ``object_class``."""
    return object_class + FIRST_OBJECT_LABEL


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by ``pixels`` in every direction (a square structuring element)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.filter(ImageFilter.MaxFilter(2 * pixels + 1))) > 0


def scene(rng: np.random.Generator, num_classes: int, objects_per_image: int, width: int, height: int):
    """One (float RGB canvas, uint8 label map) pair: background, then 1..``objects_per_image``
    objects painted in turn (a later object covers an earlier one, in the labels too)."""
    canvas = noisy_background(rng, width, height)
    labels = np.full((height, width), BACKGROUND_LABEL, np.uint8)
    side = min(width, height)
    for _ in range(int(rng.integers(1, objects_per_image + 1))):
        object_class = int(rng.integers(0, num_classes))
        w, h = (int(s) for s in rng.integers(side // 4, side * 3 // 4 + 1, size=2))
        x0 = int(rng.integers(0, width - w + 1))
        y0 = int(rng.integers(0, height - h + 1))
        mask = np.zeros((height, width), bool)
        mask[y0:y0 + h, x0:x0 + w] = shape_mask(glyph(object_class)[0], w, h)
        labels[_grow(mask, BORDER_PIXELS) & ~mask] = UNLABELLED
        labels[mask] = object_label(object_class)
        paint(canvas, rng, object_class, x0, y0, w, h)
    return canvas, labels


def write_ade20k(root: Path, seed: int, num_classes: int, train_images: int, val_images: int,
                 image_size, objects_per_image: int) -> None:
    """Write the ADE20K layout under the (new, empty) directory ``root``."""
    width, height = image_size
    for (folder, prefix), count in zip(SPLITS, (train_images, val_images)):
        rng = split_rng(seed, f'ade20k/{folder}')
        (root / 'images' / folder).mkdir(parents=True)
        (root / 'annotations' / folder).mkdir(parents=True)
        for n in range(1, count + 1):
            canvas, labels = scene(rng, num_classes, objects_per_image, width, height)
            name = f'{prefix}_{n:08d}'
            Image.fromarray(noisy_pixels(canvas, rng)).save(
                root / 'images' / folder / f'{name}.jpg', 'JPEG', quality=JPEG_QUALITY)
            # uint8 (H, W) labels: an 8-bit single-channel ('L') PNG, as ADE20K's
            Image.fromarray(labels).save(root / 'annotations' / folder / f'{name}.png')


def make_ade20k(root, *, seed: int = 0, num_classes: int = 4, train_images: int = 8,
                val_images: int = 4, image_size=(96, 64), objects_per_image: int = 2,
                force: bool = False) -> bool:
    """Make the tiny ADE20K at ``root`` (the ``ADEChallengeData2016`` folder), with
    ``num_classes`` object classes besides the background; ``image_size`` is (width, height).
    Return False if it was already complete for these parameters."""
    if not 1 <= num_classes <= MAX_OBJECT_CLASSES:
        raise TinyDataError(f'num_classes must be in [1, {MAX_OBJECT_CLASSES}] (ADE20K has '
                            f'{ADE20K_CLASSES} classes, one of them the background), got {num_classes}')
    _require_at_least(0, seed=seed)
    _require_at_least(1, train_images=train_images, val_images=val_images,
                      objects_per_image=objects_per_image)
    width, height = _require_image_size('image_size', image_size, MIN_IMAGE_SIDE)
    params = dict(dataset='ade20k', seed=seed, num_classes=num_classes, train_images=train_images,
                  val_images=val_images, image_size=[width, height],
                  objects_per_image=objects_per_image)
    return _materialize(Path(root), params, force, lambda tmp: write_ade20k(
        tmp, seed, num_classes, train_images, val_images, (width, height), objects_per_image))
