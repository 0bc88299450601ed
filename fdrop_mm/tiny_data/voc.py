"""VOCdevkit (``<out>/VOCdevkit``, for mmdet 3.3.0 ``VOCDataset``)::

    VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/{trainval,test}.txt}
    VOC2012/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/trainval.txt}

with VOC's ids (``000001``, ``2008_000001``), its 20 classes and annotation XML in
VOC's layout (1-based inclusive pixel boxes; ~10% of objects ``difficult``). Every box
side exceeds 32 pixels, so nothing is dropped or ignored by the stock
``mmdet::_base_/datasets/voc0712.py`` filters (``min_size=32, bbox_min_size=32``);
a config only sets ``data_root='<out>/VOCdevkit/'``. Images are ``--voc-size`` W H
(default 192x160); the stock pipelines resize them to (1000, 600) regardless.
"""
from pathlib import Path
from xml.etree import ElementTree as ET

from .drawing import noisy_background, paint, save_jpeg, split_rng, write_lines
from .manifest import TinyDataError, _materialize, _require_at_least

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
VOC_MIN_BOX_SIDE = 40  # pixels; mmdet ignores boxes narrower than bbox_min_size=32
VOC_DIFFICULT_RATE = 0.1


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
