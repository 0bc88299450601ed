"""A deterministic tiny Kinetics-400-style action-recognition set in mmaction2 1.2.0's rawframes
format, for its ``RawframeDataset``.

Usage::

    make_rawframes('data/tiny/kinetics400', seed=0, num_classes=4, train_per_class=2)

Layout, as mmaction2's ``tools/data/build_rawframes.py`` writes a video set's frames and its
``build_file_list.py`` the lists::

    rawframes_train/<video>/img_00001.jpg ... img_<total_frames>.jpg
    rawframes_val/<video>/img_00001.jpg ...
    kinetics400_train_list_rawframes.txt     "<video> <total_frames> <label>" per line
    kinetics400_val_list_rawframes.txt

``<video>`` is ``video_<nnnnnn>``, numbered across both splits; frames count from 1, as
``RawframeDataset``'s defaults (``filename_tmpl='img_{:05}.jpg'``, ``start_index=1``) expect.
A config sets ``type='RawframeDataset', data_root='<root>'``,
``ann_file='kinetics400_train_list_rawframes.txt'`` and ``data_prefix=dict(img='rawframes_train')``.
fdrop_mm.tiny_data.videos writes the same clips as video files (:func:`make_clips` serves both).

In a video of class ``label`` one object, drawn as fdrop_mm.tiny_data draws class
``label`` (the shape, texture and hue of ``drawing.glyph(label)``), moves in a straight line
across a noisy, randomly tinted background, so every frame shows the class and the clip shows
it moving. The same parameters and seed give byte-identical files; a ``tiny_data.json``
manifest is written last, and a rerun with the same parameters skips a complete set (see
:func:`fdrop_mm.tiny_data.generate` for the rules).
"""
from pathlib import Path

import numpy as np
from PIL import Image

from .drawing import JPEG_QUALITY, noisy_background, noisy_pixels, paint, split_rng, write_lines
from .manifest import _materialize, _require_at_least, _require_image_size

FRAME_TEMPLATE = 'img_{:05d}.jpg'  # RawframeDataset's default filename_tmpl, from 1
MIN_FRAME_SIDE = 32
SPLITS = ('train', 'val')


def list_file(split: str) -> str:
    """The annotation list of ``split`` ('train' or 'val'), relative to the set's root."""
    return f'kinetics400_{split}_list_rawframes.txt'


def moving_object_frames(rng: np.random.Generator, label: int, total_frames: int, width: int, height: int):
    """``total_frames`` float RGB canvases of one object of class ``label`` moving in a
    straight line, at a constant speed, from one random place to another."""
    background = noisy_background(rng, width, height)
    side = int(rng.uniform(0.4, 0.6) * min(width, height))
    start, end = (np.array([rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)])
                  for _ in range(2))
    frames = []
    for t in range(total_frames):
        x0, y0 = np.rint(start + (end - start) * t / max(1, total_frames - 1)).astype(int)
        canvas = background.copy()
        paint(canvas, rng, label, int(x0), int(y0), side, side)
        frames.append(canvas)
    return frames


def make_clips(root, dataset: str, write_clip, list_name, list_line, *, seed: int, num_classes: int,
               train_per_class: int, val_per_class: int, total_frames: int, frame_size, force: bool) -> bool:
    """Make a tiny set of moving-object clips at ``root`` (see :func:`make_rawframes`), stored by
    ``write_clip(root, split, video, frames)`` (``frames``: uint8 RGB arrays) and listed in
    ``root / list_name(split)`` by one ``list_line(video, total_frames, label)`` per clip. Every
    storage holds the same clips for the same parameters."""
    _require_at_least(2, num_classes=num_classes)
    _require_at_least(0, seed=seed)
    _require_at_least(1, train_per_class=train_per_class, val_per_class=val_per_class,
                      total_frames=total_frames)
    width, height = _require_image_size('frame_size', frame_size, MIN_FRAME_SIDE)
    params = dict(dataset=dataset, seed=seed, num_classes=num_classes,
                  train_per_class=train_per_class, val_per_class=val_per_class,
                  total_frames=total_frames, frame_size=[width, height])

    def write(tmp: Path) -> None:
        number = 0  # videos are numbered across the splits
        for split, per_class in zip(SPLITS, (train_per_class, val_per_class)):
            rng = split_rng(seed, f'clips/{split}')
            lines = []
            for label in rng.permutation(np.repeat(np.arange(num_classes), per_class)).tolist():
                number += 1
                video = f'video_{number:06d}'
                frames = moving_object_frames(rng, label, total_frames, width, height)
                write_clip(tmp, split, video, [noisy_pixels(frame, rng) for frame in frames])
                lines.append(list_line(video, total_frames, label))
            write_lines(tmp / list_name(split), lines)

    return _materialize(Path(root), params, force, write)


def _write_frame_folder(root: Path, split: str, video: str, frames) -> None:
    folder = root / f'rawframes_{split}' / video
    folder.mkdir(parents=True)
    for index, pixels in enumerate(frames, start=1):
        Image.fromarray(pixels).save(folder / FRAME_TEMPLATE.format(index), 'JPEG', quality=JPEG_QUALITY)


def make_rawframes(root, *, seed: int = 0, num_classes: int = 4, train_per_class: int = 2,
                   val_per_class: int = 1, total_frames: int = 16, frame_size=(80, 64),
                   force: bool = False) -> bool:
    """Make the tiny rawframes set at ``root``: ``num_classes`` classes (labels 0..num_classes-1),
    videos of ``total_frames`` frames of ``frame_size`` (width, height) pixels. Return False if it
    was already complete for these parameters."""
    return make_clips(root, 'rawframes', _write_frame_folder, list_file,
                      lambda video, total, label: f'{video} {total} {label}', seed=seed,
                      num_classes=num_classes, train_per_class=train_per_class,
                      val_per_class=val_per_class, total_frames=total_frames, frame_size=frame_size,
                      force=force)
