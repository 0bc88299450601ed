"""A deterministic tiny COCO person-keypoints set in its real on-disk format, for mmpose 1.3.2's
``CocoDataset`` (top-down) and ``CocoMetric``.

Usage::

    make_coco_keypoints('data/tiny/coco', seed=0, train_images=8, val_images=4)

Layout, as the published ``train2017.zip``, ``val2017.zip`` and
``annotations_trainval2017.zip`` unpack::

    train2017/<nnnnnnnnnnnn>.jpg    annotations/person_keypoints_train2017.json
    val2017/<nnnnnnnnnnnn>.jpg      annotations/person_keypoints_val2017.json

Each annotation file holds COCO's ``images`` (id, file_name, width, height), ``annotations``
(id, image_id, category_id 1, ``bbox`` [x, y, w, h], ``area``, ``iscrowd`` 0, ``keypoints``
[x, y, v] * 17 with v = 2 "labelled and visible", ``num_keypoints``) and the one ``person``
category with COCO's 17 keypoint names and skeleton. Image ids count across both splits.

Every image shows one person on a noisy, randomly tinted background: a stick figure (head,
torso, limbs along COCO's skeleton) in a body colour, with a bright dot of its own colour at each
of the 17 keypoints (:func:`keypoint_colours`), so a keypoint's position is learnable from
what is drawn there and left and right are told apart. The pose is a standing person with
jittered joints, at a random scale and place. ``bbox`` is the figure's tight box, ``area`` its
pixel count (what COCO's segmentation area measures, and what the OKS of ``CocoMetric`` scales
by). The same parameters and seed give byte-identical files; a ``tiny_data.json`` manifest is
written last, and a rerun with the same parameters skips a complete set (see
:func:`fdrop_mm.tiny_data.generate` for the rules).
"""
import colorsys
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .drawing import JPEG_QUALITY, noisy_background, noisy_pixels, split_rng
from .manifest import _materialize, _require_at_least, _require_image_size

KEYPOINT_NAMES = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                  'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                  'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle')
# COCO's skeleton, 1-based keypoint indices, as in person_keypoints_*2017.json
SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
            (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
# a standing person facing the camera, (x, y) in a unit box (the person's left is the image's right)
# (a large head, so that the five face keypoints' dots stay apart)
STANDING_POSE = ((0.50, 0.11), (0.60, 0.05), (0.40, 0.05), (0.70, 0.10), (0.30, 0.10),
                 (0.70, 0.22), (0.30, 0.22), (0.80, 0.38), (0.20, 0.38), (0.88, 0.52),
                 (0.12, 0.52), (0.62, 0.55), (0.38, 0.55), (0.64, 0.75), (0.36, 0.75),
                 (0.65, 0.95), (0.35, 0.95))
JOINT_JITTER = 0.02  # standard deviation of a joint's offset, in units of the pose box's sides
PERSON_ASPECT = 0.5  # the pose box's width over its height
VISIBLE = 2  # COCO's v: labelled and visible
SPLITS = (('train2017', 'train'), ('val2017', 'val'))  # image folder, split
MIN_IMAGE_SIDE = 48


def annotation_file(split: str) -> str:
    """The annotation file of ``split`` ('train' or 'val'), relative to the set's root."""
    return f'annotations/person_keypoints_{split}2017.json'


def keypoint_colours():
    """(17, 3) uint8 RGB: the dot colour of each keypoint, 17 evenly spaced hues (neighbouring
    keypoints 7/17 of the hue circle apart)."""
    count = len(KEYPOINT_NAMES)
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(k * 7 % count / count, 1.0, 1.0)]
                     for k in range(len(KEYPOINT_NAMES))], np.uint8)


def person_keypoints(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(17, 2) float pixel positions of one jittered standing person, inside the image."""
    person_h = rng.uniform(0.55, 0.9) * height
    person_w = min(PERSON_ASPECT * person_h, 0.9 * width)
    x0 = rng.uniform(0.05 * width, 0.95 * width - person_w)
    y0 = rng.uniform(0.05 * height, 0.95 * height - person_h)
    pose = np.array(STANDING_POSE) + rng.normal(0, JOINT_JITTER, size=(len(KEYPOINT_NAMES), 2))
    points = np.array([x0, y0]) + pose * np.array([person_w, person_h])
    return np.clip(points, 0, np.array([width - 1, height - 1]))


def draw_person(canvas: np.ndarray, rng: np.random.Generator, points: np.ndarray) -> np.ndarray:
    """Paint the figure of ``points`` into ``canvas``; return its boolean (H, W) pixel mask."""
    height, width = canvas.shape[:2]
    person_h = points[:, 1].max() - points[:, 1].min()
    limb = max(2, round(person_h / 14))
    dot = max(1, round(person_h / 40))
    figure = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(figure)
    xy = [tuple(p) for p in points.tolist()]
    for a, b in SKELETON:
        draw.line([xy[a - 1], xy[b - 1]], fill=255, width=limb)
    draw.polygon([xy[5], xy[6], xy[12], xy[11]], fill=255)  # torso: shoulders and hips
    head = 0.6 * abs(points[3, 0] - points[4, 0]) + 1  # around the nose, past the ears
    nose_x, nose_y = points[0]
    draw.ellipse([nose_x - head, nose_y - head, nose_x + head, nose_y + head], fill=255)
    mask = np.asarray(figure) > 0
    body = np.clip(rng.uniform(70, 170) + rng.normal(0, 20, size=3), 0, 255)
    canvas[mask] = body
    dots = Image.new('L', (width, height), 0)
    for k, (x, y) in enumerate(points.tolist()):
        dots.paste(0, (0, 0, width, height))
        ImageDraw.Draw(dots).ellipse([x - dot, y - dot, x + dot, y + dot], fill=255)
        canvas[np.asarray(dots) > 0] = keypoint_colours()[k]
    return mask


def annotation(points: np.ndarray, mask: np.ndarray, annotation_id: int, image_id: int) -> dict:
    """The COCO keypoint annotation of one drawn person."""
    rows, cols = np.nonzero(mask)
    x, y = int(cols.min()), int(rows.min())
    keypoints = [value for (px, py) in points.tolist() for value in (round(px, 2), round(py, 2), VISIBLE)]
    return dict(id=annotation_id, image_id=image_id, category_id=1, iscrowd=0,
                bbox=[x, y, int(cols.max()) + 1 - x, int(rows.max()) + 1 - y], area=int(mask.sum()),
                keypoints=keypoints, num_keypoints=len(KEYPOINT_NAMES))


def write_coco_keypoints(root: Path, seed: int, train_images: int, val_images: int, image_size) -> None:
    """Write the COCO keypoints layout under the (new, empty) directory ``root``."""
    width, height = image_size
    category = dict(id=1, name='person', supercategory='person', keypoints=list(KEYPOINT_NAMES),
                    skeleton=[list(pair) for pair in SKELETON])
    image_id = 0
    for (folder, split), count in zip(SPLITS, (train_images, val_images)):
        rng = split_rng(seed, f'coco_keypoints/{split}')
        (root / folder).mkdir(parents=True)
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            canvas = noisy_background(rng, width, height)
            points = person_keypoints(rng, width, height)
            mask = draw_person(canvas, rng, points)
            file_name = f'{image_id:012d}.jpg'
            Image.fromarray(noisy_pixels(canvas, rng)).save(root / folder / file_name, 'JPEG',
                                                            quality=JPEG_QUALITY)
            images.append(dict(id=image_id, file_name=file_name, width=width, height=height))
            annotations.append(annotation(points, mask, image_id, image_id))
        path = root / annotation_file(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=[category])))


def make_coco_keypoints(root, *, seed: int = 0, train_images: int = 8, val_images: int = 4,
                        image_size=(96, 128), force: bool = False) -> bool:
    """Make the tiny COCO person-keypoints set at ``root`` (the folder holding ``train2017/``,
    ``val2017/`` and ``annotations/``), one person an image; ``image_size`` is (width, height).
    Return False if it was already complete for these parameters."""
    _require_at_least(0, seed=seed)
    _require_at_least(1, train_images=train_images, val_images=val_images)
    width, height = _require_image_size('image_size', image_size, MIN_IMAGE_SIDE)
    params = dict(dataset='coco_keypoints', seed=seed, train_images=train_images,
                  val_images=val_images, image_size=[width, height])
    return _materialize(Path(root), params, force, lambda tmp: write_coco_keypoints(
        tmp, seed, train_images, val_images, (width, height)))
