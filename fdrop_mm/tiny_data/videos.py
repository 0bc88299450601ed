"""A deterministic tiny Kinetics-400-style action-recognition set as video files, for mmaction2
1.2.0's ``VideoDataset`` and the stock recipes' ``DecordInit`` + ``DecordDecode`` pipelines.

Usage::

    make_videos('data/tiny/kinetics400_videos', seed=0, num_classes=4, train_per_class=2)

Layout, as the Kinetics-400 videos and mmaction2's ``build_file_list.py`` lists are::

    videos_train/<video>.mp4     kinetics400_train_list_videos.txt   "<video>.mp4 <label>" per line
    videos_val/<video>.mp4       kinetics400_val_list_videos.txt

MPEG-4 Part 2 (``mp4v``) files written by OpenCV, which decord reads. They hold the clips that
:func:`fdrop_mm.tiny_data.rawframes.make_rawframes` writes as frame folders for the same parameters
(one object of the video's class moving across the frames), before compression.
"""
from pathlib import Path

import cv2

from .rawframes import make_clips

FRAME_RATE = 8  # frames per second written into the files


def video_list_file(split: str) -> str:
    """The annotation list of ``split`` ('train' or 'val'), relative to the set's root."""
    return f'kinetics400_{split}_list_videos.txt'


def _write_video(root: Path, split: str, video: str, frames) -> None:
    folder = root / f'videos_{split}'
    folder.mkdir(exist_ok=True)
    height, width = frames[0].shape[:2]
    path = folder / f'{video}.mp4'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), FRAME_RATE, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f'OpenCV cannot write the mp4v video {path} (its build has no such encoder)')
    try:
        for pixels in frames:
            writer.write(pixels[..., ::-1].copy())  # OpenCV takes BGR
    finally:
        writer.release()


def make_videos(root, *, seed: int = 0, num_classes: int = 4, train_per_class: int = 2,
                val_per_class: int = 1, total_frames: int = 16, frame_size=(80, 64),
                force: bool = False) -> bool:
    """Make the tiny video set at ``root``; the parameters are :func:`make_rawframes`'s. Return
    False if it was already complete for these parameters."""
    return make_clips(root, 'videos', _write_video, video_list_file,
                      lambda video, total, label: f'{video}.mp4 {label}', seed=seed,
                      num_classes=num_classes, train_per_class=train_per_class,
                      val_per_class=val_per_class, total_frames=total_frames, frame_size=frame_size,
                      force=force)
