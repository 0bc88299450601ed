"""Deterministic tiny ImageNet, VOCdevkit, CIFAR-10/100 and Tiny ImageNet datasets in their
real on-disk formats.

Usage::

    python tools/misc/make_tiny_data.py --out data/tiny [--seed 0] [--only DATASET ...] [--force]

or ``generate('data/tiny', only=('imagenet', 'voc'), seed=0, force=False, **sizes)``, writes
``<out>/imagenet`` and ``<out>/VOCdevkit`` (the default ``--only imagenet voc``), and
with ``--only cifar10 cifar100 tinyimagenet`` ``<out>/cifar10``, ``<out>/cifar100`` and
``<out>/tiny-imagenet-200``. Every image holds synthetic objects
whose class is learnable: class ``k`` is drawn as its own shape, fill texture and hue
(see :func:`glyph`) on a noisy, randomly tinted background, at varied positions and sizes.
The same parameters and seed give byte-identical files. Each dataset root gets a
``tiny_data.json`` manifest, written last; a rerun with the same parameters skips a
complete dataset, a rerun with other parameters is refused unless ``--force``.

ImageNet (``<out>/imagenet``, for mmpretrain 1.2.0 ``ImageNet``)::

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

VOCdevkit (``<out>/VOCdevkit``, for mmdet 3.3.0 ``VOCDataset``)::

    VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/{trainval,test}.txt}
    VOC2012/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/trainval.txt}

with VOC's ids (``000001``, ``2008_000001``), its 20 classes and annotation XML in
VOC's layout (1-based inclusive pixel boxes; ~10% of objects ``difficult``). Every box
side exceeds 32 pixels, so nothing is dropped or ignored by the stock
``mmdet::_base_/datasets/voc0712.py`` filters (``min_size=32, bbox_min_size=32``);
a config only sets ``data_root='<out>/VOCdevkit/'``. Images are ``--voc-size`` W H
(default 192x160); the stock pipelines resize them to (1000, 600) regardless.

CIFAR (``<out>/cifar10/cifar-10-batches-py``: ``data_batch_1..5``, ``test_batch``,
``batches.meta``; ``<out>/cifar100/cifar-100-python``: ``train``, ``test``, ``meta``) as the
published python pickles: dicts with the same keys, ``data`` uint8 (N, 3072) rows of R, G, B
planes, the real class names; CIFAR-100's coarse labels are synthetic (fine // 5). Written
with numpy 2, whose pickles need numpy >= 1.26 to load. The md5 sums differ from the
published files, so mmpretrain's CIFAR10/CIFAR100 refuse them: load them with
``fdrop_mm.datasets.classification``'s ``CheckedCIFAR10``/``CheckedCIFAR100`` and
``verify_md5=False``, which checks their structure instead.

Tiny ImageNet (``<out>/tiny-imagenet-200``, for ``fdrop_mm.datasets.classification.TinyImageNet``)::

    wnids.txt (unsorted), words.txt ("<wnid>\\t<name>", with two extra WordNet roots)
    train/<wnid>/images/<wnid>_<n>.JPEG   train/<wnid>/<wnid>_boxes.txt
    val/images/val_<n>.JPEG               val/val_annotations.txt
                                          "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>"
    test/images/test_<n>.JPEG             (no labels, as published)

``--tinyimagenet-size`` pixels square (default 64, the real size); the first training image
of the first class is greyscale, as some published ones are.
"""
import colorsys
import functools
import json
import math
import pickle
import shutil
import zlib
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw

FORMAT_VERSION = 1
MANIFEST = 'tiny_data.json'
JPEG_QUALITY = 95

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
VOC_MIN_BOX_SIDE = 40  # pixels; mmdet ignores boxes narrower than bbox_min_size=32
VOC_DIFFICULT_RATE = 0.1

SHAPES = ('ellipse', 'rectangle', 'triangle', 'diamond', 'cross', 'ring', 'star',
          'hexagon', 'inverted_triangle', 'frame')
TEXTURES = ('solid', 'hstripes', 'vstripes', 'checker')
MAX_IMAGENET_CLASSES = 1000
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


class TinyDataError(ValueError):
    """Bad input or an output location the generator must not overwrite."""


# ----------------------------------------------------------------------------- drawing

def glyph(class_index):
    """The (shape, texture, RGB colour) that draws class ``class_index``.

    Shape and texture pairs are unique for the first 40 classes; the hue, stepped by the
    golden ratio, keeps later classes apart too.
    """
    hue = (class_index * 0.6180339887) % 1.0
    colour = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))
    texture = TEXTURES[(class_index // len(SHAPES)) % len(TEXTURES)]
    return SHAPES[class_index % len(SHAPES)], texture, colour


def _fit(points, width, height):
    """Scale polygon ``points`` so they touch all four sides of a width x height box."""
    xs, ys = zip(*points)
    sx = (width - 1) / (max(xs) - min(xs))
    sy = (height - 1) / (max(ys) - min(ys))
    return [((x - min(xs)) * sx, (y - min(ys)) * sy) for x, y in points]


def _regular(n, start_deg, radii=(1.0,)):
    """Vertices of a regular n-gon (or star, with two alternating radii) on the unit circle."""
    step = 360 / (n * len(radii))
    return [(radii[i % len(radii)] * math.cos(math.radians(start_deg + i * step)),
             radii[i % len(radii)] * math.sin(math.radians(start_deg + i * step)))
            for i in range(n * len(radii))]


POLYGONS = {
    'triangle': [(0.5, 0), (1, 1), (0, 1)],
    'inverted_triangle': [(0, 0), (1, 0), (0.5, 1)],
    'diamond': [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    'cross': [(1, 0), (2, 0), (2, 1), (3, 1), (3, 2), (2, 2), (2, 3), (1, 3), (1, 2),
              (0, 2), (0, 1), (1, 1)],
    'star': _regular(5, -90, radii=(1.0, 0.42)),
    'hexagon': _regular(6, 0),
}


def shape_mask(shape, width, height):
    """Boolean (height, width) mask of ``shape`` touching all four sides of its box."""
    mask = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(mask)
    box = [0, 0, width - 1, height - 1]
    inset = max(2, min(width, height) // 5)
    inner = [inset, inset, width - 1 - inset, height - 1 - inset]
    if shape in ('ellipse', 'ring'):
        draw.ellipse(box, fill=255)
        if shape == 'ring':
            draw.ellipse(inner, fill=0)
    elif shape in ('rectangle', 'frame'):
        draw.rectangle(box, fill=255)
        if shape == 'frame':
            draw.rectangle(inner, fill=0)
    else:
        draw.polygon(_fit(POLYGONS[shape], width, height), fill=255)
    return np.asarray(mask) > 0


def texture_pattern(texture, width, height):
    """Boolean (height, width) pattern: True where the fill takes the bright colour."""
    period = max(2, min(width, height) // 8)
    rows, cols = np.mgrid[0:height, 0:width] // period
    return {'solid': np.ones((height, width), bool),
            'hstripes': rows % 2 == 0,
            'vstripes': cols % 2 == 0,
            'checker': (rows + cols) % 2 == 0}[texture]


def noisy_background(rng, width, height):
    """Float (height, width, 3) canvas: a random grey-ish tint with a soft gradient."""
    base = rng.uniform(60, 190) + rng.normal(0, 15, size=3)
    gradient = np.linspace(-1, 1, width)[None, :, None] * rng.normal(0, 20, size=3)
    return np.broadcast_to(base + gradient, (height, width, 3)).copy()


def paint(canvas, rng, class_index, x0, y0, width, height):
    """Draw class ``class_index`` into ``canvas`` filling the box at (x0, y0) of that size."""
    shape, texture, colour = glyph(class_index)
    bright = np.clip(np.array(colour) + rng.normal(0, 10, size=3), 0, 255)
    fill = np.where(texture_pattern(texture, width, height)[..., None], bright, 0.3 * bright)
    mask = shape_mask(shape, width, height)
    canvas[y0:y0 + height, x0:x0 + width][mask] = fill[mask]


def noisy_pixels(canvas, rng):
    """``canvas`` plus pixel noise, as uint8."""
    pixels = np.clip(canvas + rng.normal(0, 12, size=canvas.shape), 0, 255)
    return pixels.round().astype(np.uint8)


def save_jpeg(canvas, rng, path, grayscale=False):
    """Add pixel noise to ``canvas`` and write it as a JPEG at ``path`` (single-channel if
    ``grayscale``, as some of Tiny ImageNet's images are)."""
    image = Image.fromarray(noisy_pixels(canvas, rng))
    path.parent.mkdir(parents=True, exist_ok=True)
    (image.convert('L') if grayscale else image).save(path, 'JPEG', quality=JPEG_QUALITY)


def split_rng(seed, tag):
    """Generator for one split: depends only on ``seed`` and the split's name ``tag``."""
    return np.random.default_rng([seed, zlib.crc32(tag.encode())])


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f'{line}\n' for line in lines))


# ---------------------------------------------------------------------------- ImageNet

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


def object_image(rng, class_index, size):
    """A size x size canvas with one object of class ``class_index``, and its box
    (x0, y0, width, height)."""
    canvas = noisy_background(rng, size, size)
    side = rng.uniform(0.35, 0.8) * size
    aspect = rng.uniform(0.75, 1.33)
    width = int(np.clip(side * math.sqrt(aspect), 8, size))
    height = int(np.clip(side / math.sqrt(aspect), 8, size))
    x0 = int(rng.integers(0, size - width + 1))
    y0 = int(rng.integers(0, size - height + 1))
    paint(canvas, rng, class_index, x0, y0, width, height)
    return canvas, (x0, y0, width, height)


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


# -------------------------------------------------------------------------------- VOC

def _place_boxes(rng, count, image_w, image_h):
    """Up to ``count`` disjoint (x0, y0, w, h) boxes with sides of at least 40 pixels."""
    max_side = max(VOC_MIN_BOX_SIDE, int(0.6 * min(image_w, image_h)))
    boxes = []
    for _ in range(count * 50):
        if len(boxes) == count:
            break
        w, h = (int(s) for s in rng.integers(VOC_MIN_BOX_SIDE, max_side + 1, size=2))
        x0 = int(rng.integers(0, image_w - w + 1))
        y0 = int(rng.integers(0, image_h - h + 1))
        if all(x0 + w + 2 <= bx or bx + bw + 2 <= x0 or y0 + h + 2 <= by or by + bh + 2 <= y0
               for bx, by, bw, bh in boxes):
            boxes.append((x0, y0, w, h))
    return boxes


def voc_annotation(year, filename, image_w, image_h, objects):
    """VOC annotation XML text; ``objects`` are (name, difficult, xmin, ymin, xmax, ymax)."""
    def sub(parent, tag, text=None):
        element = ET.SubElement(parent, tag)
        if text is not None:
            element.text = str(text)
        return element

    annotation = ET.Element('annotation')
    sub(annotation, 'folder', f'VOC{year}')
    sub(annotation, 'filename', filename)
    source = sub(annotation, 'source')
    sub(source, 'database', f'The VOC{year} Database')
    sub(source, 'annotation', f'PASCAL VOC{year}')
    sub(source, 'image', 'synthetic')
    size = sub(annotation, 'size')
    sub(size, 'width', image_w)
    sub(size, 'height', image_h)
    sub(size, 'depth', 3)
    sub(annotation, 'segmented', 0)
    for name, difficult, *bbox in objects:
        obj = sub(annotation, 'object')
        sub(obj, 'name', name)
        sub(obj, 'pose', 'Unspecified')
        sub(obj, 'truncated', 0)
        sub(obj, 'difficult', int(difficult))
        bndbox = sub(obj, 'bndbox')
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), bbox):
            sub(bndbox, tag, value)
    ET.indent(annotation, space='\t')
    return ET.tostring(annotation, encoding='unicode') + '\n'


def _write_voc_split(devkit, year, split, image_ids, rng, image_w, image_h):
    """Write images, annotations and ``ImageSets/Main/<split>.txt`` for one split."""
    sub_root = devkit / f'VOC{year}'
    class_queue = []
    for image_id in image_ids:
        canvas = noisy_background(rng, image_w, image_h)
        objects = []
        for x0, y0, w, h in _place_boxes(rng, int(rng.integers(1, 4)), image_w, image_h):
            if not class_queue:  # cycle through shuffled classes so each one appears
                class_queue = rng.permutation(len(VOC_CLASSES)).tolist()
            class_index = class_queue.pop()
            paint(canvas, rng, class_index, x0, y0, w, h)
            difficult = rng.random() < VOC_DIFFICULT_RATE
            # VOC boxes are 1-based and inclusive: pixel columns x0 .. x0 + w - 1.
            objects.append((VOC_CLASSES[class_index], difficult, x0 + 1, y0 + 1, x0 + w, y0 + h))
        save_jpeg(canvas, rng, sub_root / 'JPEGImages' / f'{image_id}.jpg')
        xml = voc_annotation(year, f'{image_id}.jpg', image_w, image_h, objects)
        (sub_root / 'Annotations').mkdir(parents=True, exist_ok=True)
        (sub_root / 'Annotations' / f'{image_id}.xml').write_text(xml)
    write_lines(sub_root / 'ImageSets' / 'Main' / f'{split}.txt', image_ids)


def write_voc(devkit, seed, voc07_trainval, voc07_test, voc12_trainval, image_size):
    """Write VOC2007 trainval/test and VOC2012 trainval under the (new) directory ``devkit``."""
    image_w, image_h = image_size
    # VOC2007 numbers all its images together and splits the ids between trainval and test.
    is_test = split_rng(seed, 'voc2007/split').permutation(
        [False] * voc07_trainval + [True] * voc07_test)
    ids07 = [f'{n:06d}' for n in range(1, len(is_test) + 1)]
    for split, wanted in (('trainval', False), ('test', True)):
        split_ids = [i for i, test in zip(ids07, is_test) if test == wanted]
        _write_voc_split(devkit, 2007, split, split_ids, split_rng(seed, f'voc2007/{split}'),
                         image_w, image_h)
    ids12 = [f'2008_{n:06d}' for n in range(1, voc12_trainval + 1)]
    _write_voc_split(devkit, 2012, 'trainval', ids12, split_rng(seed, 'voc2012/trainval'),
                     image_w, image_h)


def make_voc(root, *, seed=0, voc07_trainval=60, voc07_test=100, voc12_trainval=40,
             image_size=(192, 160), force=False):
    """Make the tiny VOCdevkit at ``root``; return False if it was already complete."""
    _require_at_least(0, seed=seed)
    _require_at_least(1, voc07_trainval=voc07_trainval, voc07_test=voc07_test,
                      voc12_trainval=voc12_trainval)
    image_w, image_h = image_size
    if min(image_w, image_h) < 2 * VOC_MIN_BOX_SIDE:
        raise TinyDataError(f'VOC image sides must be at least {2 * VOC_MIN_BOX_SIDE} pixels '
                            f'(boxes are >= {VOC_MIN_BOX_SIDE}), got {image_w}x{image_h}')
    params = dict(dataset='voc', seed=seed, voc07_trainval=voc07_trainval,
                  voc07_test=voc07_test, voc12_trainval=voc12_trainval,
                  image_size=[image_w, image_h])
    return _materialize(Path(root), params, force, lambda tmp: write_voc(
        tmp, seed, voc07_trainval, voc07_test, voc12_trainval, (image_w, image_h)))


# ------------------------------------------------------------------------------ CIFAR

CIFAR_SIZE = 32
CIFAR_FORMATS = {
    # folder, training batch files, test file, meta file, label key, meta key of class names
    'cifar10': dict(folder='cifar-10-batches-py', num_classes=10, label_key='labels',
                    train_files=[f'data_batch_{n}' for n in range(1, 6)], test_file='test_batch',
                    meta_file='batches.meta', names_key='label_names'),
    'cifar100': dict(folder='cifar-100-python', num_classes=100, label_key='fine_labels',
                     train_files=['train'], test_file='test', meta_file='meta',
                     names_key='fine_label_names'),
}
CIFAR100_COARSE = 20  # synthetic superclasses: coarse label = fine label // 5


def cifar_class_names(dataset):
    """The real CIFAR class names in label order (as mmpretrain's CIFAR datasets list them)."""
    from mmpretrain.datasets.categories import CIFAR10_CATEGORIES, CIFAR100_CATEGORIES
    return list(CIFAR10_CATEGORIES if dataset == 'cifar10' else CIFAR100_CATEGORIES)


def _cifar_batch(dataset, rng, labels, names, batch_label):
    """One batch dict with the keys, types and row layout of the published pickles: ``data``
    is uint8 (N, 3072), each row the red, green then blue 32x32 planes."""
    images = [noisy_pixels(object_image(rng, label, CIFAR_SIZE)[0], rng) for label in labels]
    data = np.stack([image.transpose(2, 0, 1).reshape(-1) for image in images])
    filenames = [f'{names[label]}_s_{int(rng.integers(1, 10 ** 6)):06d}.png' for label in labels]
    labels = [int(label) for label in labels]
    if dataset == 'cifar10':
        return {'batch_label': batch_label, 'labels': labels, 'data': data, 'filenames': filenames}
    return {'filenames': filenames, 'batch_label': batch_label, 'fine_labels': labels,
            'coarse_labels': [label // 5 for label in labels], 'data': data}


def _write_pickle(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root, dataset, seed, train_per_class, test_per_class):
    """Write ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``."""
    spec = CIFAR_FORMATS[dataset]
    folder = root / spec['folder']
    folder.mkdir(parents=True)
    names = cifar_class_names(dataset)
    classes = np.arange(spec['num_classes'])
    rng = split_rng(seed, f'{dataset}/train')
    train_labels = rng.permutation(np.repeat(classes, train_per_class))
    chunks = np.array_split(train_labels, len(spec['train_files']))
    for n, (filename, chunk) in enumerate(zip(spec['train_files'], chunks), start=1):
        batch_label = f'training batch {n} of {len(chunks)}'
        _write_pickle(folder / filename, _cifar_batch(dataset, rng, chunk, names, batch_label))
    rng = split_rng(seed, f'{dataset}/test')
    test_labels = rng.permutation(np.repeat(classes, test_per_class))
    _write_pickle(folder / spec['test_file'],
                  _cifar_batch(dataset, rng, test_labels, names, 'testing batch 1 of 1'))
    if dataset == 'cifar10':
        meta = {'num_cases_per_batch': len(chunks[0]), 'label_names': names,
                'num_vis': 3 * CIFAR_SIZE * CIFAR_SIZE}
    else:
        meta = {'fine_label_names': names,
                'coarse_label_names': [f'superclass_{k:02d}' for k in range(CIFAR100_COARSE)]}
    _write_pickle(folder / spec['meta_file'], meta)


def make_cifar(root, dataset, *, seed=0, train_per_class=20, test_per_class=10, force=False):
    """Make the tiny CIFAR-10 or CIFAR-100 (``dataset``) at ``root``; False if already complete."""
    if dataset not in CIFAR_FORMATS:
        raise TinyDataError(f'dataset must be one of {sorted(CIFAR_FORMATS)}, got {dataset!r}')
    _require_at_least(0, seed=seed)
    _require_at_least(1, train_per_class=train_per_class, test_per_class=test_per_class)
    params = dict(dataset=dataset, seed=seed, train_per_class=train_per_class,
                  test_per_class=test_per_class)
    return _materialize(Path(root), params, force, lambda tmp: write_cifar(
        tmp, dataset, seed, train_per_class, test_per_class))


# ---------------------------------------------------------------------- Tiny ImageNet

WORDNET_ROOTS = ('n00001740\tentity', 'n00001930\tphysical entity')  # words.txt's first lines


def _box_fields(box):
    """Tiny ImageNet's inclusive pixel box "x0 y0 x1 y1" fields."""
    x0, y0, width, height = box
    return [x0, y0, x0 + width - 1, y0 + height - 1]


def write_tinyimagenet(root, seed, num_classes, train_per_class, val_per_class, image_size):
    """Write Tiny ImageNet-200's layout under the (new, empty) directory ``root``."""
    wnids = imagenet_wnids(num_classes)
    rng = split_rng(seed, 'tinyimagenet/train')
    write_lines(root / 'wnids.txt', rng.permutation(wnids).tolist())  # unsorted, as published
    write_lines(root / 'words.txt', [*WORDNET_ROOTS, *(
        f'{wnid}\t{name}' for wnid, name in zip(wnids, imagenet_class_names(num_classes)))])
    for label, wnid in enumerate(wnids):
        boxes = []
        for n in range(train_per_class):
            filename = f'{wnid}_{n}.JPEG'
            canvas, box = object_image(rng, label, image_size)
            save_jpeg(canvas, rng, root / 'train' / wnid / 'images' / filename,
                      grayscale=label == 0 and n == 0)  # like the published set's grey images
            boxes.append('\t'.join(map(str, [filename, *_box_fields(box)])))
        write_lines(root / 'train' / wnid / f'{wnid}_boxes.txt', boxes)
    for split in ('val', 'test'):
        rng = split_rng(seed, f'tinyimagenet/{split}')
        labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class)).tolist()
        annotations = []
        for n, label in enumerate(labels):
            filename = f'{split}_{n}.JPEG'
            canvas, box = object_image(rng, label, image_size)
            save_jpeg(canvas, rng, root / split / 'images' / filename)
            annotations.append('\t'.join(map(str, [filename, wnids[label], *_box_fields(box)])))
        if split == 'val':  # the test split is published without labels
            write_lines(root / 'val' / 'val_annotations.txt', annotations)


def make_tinyimagenet(root, *, seed=0, num_classes=10, train_per_class=10, val_per_class=4,
                      image_size=64, force=False):
    """Make the tiny Tiny ImageNet at ``root``; return False if it was already complete."""
    return _make_labelled_images(root, 'tinyimagenet', 'Tiny ImageNet', write_tinyimagenet, seed,
                                 num_classes, train_per_class, val_per_class, image_size, force)


# ------------------------------------------------------------------- output handling

def _require_at_least(minimum, **values):
    for name, value in values.items():
        if value < minimum:
            raise TinyDataError(f'{name} must be at least {minimum}, got {value}')


def _count_files(root):
    return sum(1 for path in root.rglob('*') if path.is_file())


def _read_manifest(root):
    """The manifest at ``root``, or None if there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TinyDataError(f'{path} is not a readable manifest ({err}); '
                            f'delete {root} to regenerate') from err


def _materialize(root, params, force, writer):
    """Build ``root`` with ``writer`` unless it already holds the same, complete dataset.

    The dataset is written into a sibling ``.<name>.partial`` directory and renamed into
    place, manifest included, so ``root`` is either complete or absent.
    """
    if root.exists() and not root.is_dir():
        raise TinyDataError(f'{root} exists and is not a directory')
    manifest = _read_manifest(root) if root.is_dir() else None
    if manifest is None and root.is_dir() and any(root.iterdir()):
        raise TinyDataError(f'{root} is not empty and has no {MANIFEST}: it was not made by '
                            f'this tool, so it is left alone; move it away or pick another --out')
    if manifest is not None and manifest.get('format_version') == FORMAT_VERSION \
            and manifest.get('params') == params:
        if _count_files(root) == manifest.get('num_files'):
            return False
    elif manifest is not None and not force:
        on_disk = dict(manifest.get('params') or {}, format_version=manifest.get('format_version'))
        asked = dict(params, format_version=FORMAT_VERSION)
        differences = ', '.join(f'{key}: {on_disk.get(key)!r} on disk, {asked.get(key)!r} asked'
                                for key in sorted(asked.keys() | on_disk.keys())
                                if on_disk.get(key) != asked.get(key))
        raise TinyDataError(f'{root} was made with other parameters ({differences}); '
                            f'use --force to replace it')
    partial = root.with_name(f'.{root.name}.partial')
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as err:
        raise TinyDataError(f'cannot create {partial}: {err}') from err
    writer(partial)
    num_files = _count_files(partial) + 1  # + the manifest itself
    (partial / MANIFEST).write_text(json.dumps(
        dict(generator='fdrop_mm.testing.tiny_data', format_version=FORMAT_VERSION,
             params=params, num_files=num_files), indent=2, sort_keys=True) + '\n')
    if root.is_dir():
        shutil.rmtree(root)
    partial.rename(root)
    return True


# ------------------------------------------------------------------------------ generate

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
