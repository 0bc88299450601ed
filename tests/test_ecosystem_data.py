"""fdrop_mm.tiny_data.ade20k, .rawframes and .videos: their output, read by mmsegmentation's
ADE20KDataset and mmaction2's RawframeDataset and VideoDataset with the stock recipes' loading
transforms, holds a class signal a nearest-centroid classifier learns (the videos: the clips of
the rawframes), is byte-identical for a seed, and bad parameters are refused by name."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fdrop_mm.tiny_data.ade20k import make_ade20k
from fdrop_mm.tiny_data.rawframes import list_file, make_rawframes
from fdrop_mm.tiny_data import TinyDataError
from fdrop_mm.tiny_data.videos import make_videos, video_list_file

ADE_CLASSES, RAWFRAME_CLASSES = 4, 4


def _tree_bytes(root):
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob('*')) if path.is_file()}


@pytest.fixture(scope='module')
def ade20k(tmp_path_factory):
    root = tmp_path_factory.mktemp('ade') / 'ADEChallengeData2016'
    make_ade20k(root, num_classes=ADE_CLASSES, train_images=8, val_images=4)
    return root


CLIPS = dict(num_classes=RAWFRAME_CLASSES, train_per_class=3, val_per_class=2, total_frames=6)


@pytest.fixture(scope='module')
def rawframes(tmp_path_factory):
    root = tmp_path_factory.mktemp('rawframes') / 'kinetics400'
    make_rawframes(root, **CLIPS)
    return root


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('videos') / 'kinetics400_videos'
    make_videos(root, **CLIPS)
    return root


def ade20k_split(root, split, pipeline):
    from mmseg.datasets import ADE20KDataset
    return ADE20KDataset(data_root=str(root), pipeline=pipeline, test_mode=split == 'validation',
                         data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'))


def rawframe_split(root, split, pipeline):
    from mmaction.datasets import RawframeDataset
    return RawframeDataset(ann_file=str(root / list_file(split)), pipeline=pipeline,
                           data_prefix=dict(img=str(root / f'rawframes_{split}')), test_mode=split == 'val')


def test_ade20k_reads_as_the_recipe_loads_it_with_zero_as_ignore(ade20k):
    """The stock ADE20K pipeline's LoadImageFromFile + LoadAnnotations(reduce_zero_label=True):
    every pair loads, 0 (unlabelled) becomes the ignore index 255, label k becomes class k - 1."""
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets.transforms import LoadAnnotations
    pipeline = [LoadImageFromFile(), LoadAnnotations(reduce_zero_label=True)]
    for split, count in (('training', 8), ('validation', 4)):
        dataset = ade20k_split(ade20k, split, pipeline)
        assert len(dataset) == count
        for index in range(count):
            sample = dataset[index]
            raw = np.asarray(Image.open(sample['seg_map_path']))
            assert sample['img'].shape == (64, 96, 3) and sample['gt_seg_map'].shape == raw.shape
            expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
            assert np.array_equal(sample['gt_seg_map'], expected)
            assert 0 in raw and 1 in raw and raw.max() <= ADE_CLASSES + 1  # unlabelled, wall, objects
    assert dataset.metainfo['classes'][0] == 'wall'


def test_rawframes_read_as_the_recipe_samples_them(rawframes):
    """RawframeDataset with SampleFrames + RawFrameDecode: every video and frame of both lists
    loads, with its label."""
    import fdrop_mm  # noqa: F401  (lets mmaction2 1.2.0 import its models)
    from mmaction.datasets.transforms import RawFrameDecode, SampleFrames
    pipeline = [SampleFrames(clip_len=6, frame_interval=1, num_clips=1, test_mode=True), RawFrameDecode()]
    for split, per_class in (('train', 3), ('val', 2)):
        dataset = rawframe_split(rawframes, split, pipeline)
        assert len(dataset) == RAWFRAME_CLASSES * per_class
        labels = []
        for index in range(len(dataset)):
            sample = dataset[index]
            assert sample['total_frames'] == 6 and len(sample['imgs']) == 6
            assert sample['imgs'][0].shape == (64, 80, 3)
            labels.append(sample['label'])
        assert sorted(labels) == sorted(list(range(RAWFRAME_CLASSES)) * per_class)


def read_frames(folder):
    return np.stack([np.asarray(Image.open(path), np.float64) for path in sorted(folder.glob('*.jpg'))])


def test_videos_decode_as_the_recipe_reads_them_into_the_rawframes_clips(videos, rawframes):
    """VideoDataset with DecordInit + SampleFrames + DecordDecode (the stock recipes' loading):
    every video of both lists decodes to all its frames, with its label, and is the clip the
    rawframes set holds under its name: nearer to it than to any other clip."""
    import fdrop_mm  # noqa: F401
    from mmaction.datasets import VideoDataset
    from mmaction.datasets.transforms import DecordDecode, DecordInit, SampleFrames
    pipeline = [DecordInit(), SampleFrames(clip_len=6, frame_interval=1, num_clips=1, test_mode=True),
                DecordDecode()]
    for split in ('train', 'val'):
        dataset = VideoDataset(ann_file=str(videos / video_list_file(split)), pipeline=pipeline,
                               data_prefix=dict(video=str(videos / f'videos_{split}')), test_mode=True)
        clips = {}  # rawframes: video name -> (label, frames)
        for line in (rawframes / list_file(split)).read_text().splitlines():
            video, _, label = line.split()
            clips[video] = int(label), read_frames(rawframes / f'rawframes_{split}' / video)
        assert len(dataset) == len(clips)
        for index in range(len(dataset)):
            sample = dataset[index]
            name = Path(sample['filename']).stem
            decoded = np.stack(sample['imgs']).astype(np.float64)
            assert sample['total_frames'] == 6 and decoded.shape == (6, 64, 80, 3)
            assert sample['label'] == clips[name][0]
            distances = {other: np.abs(decoded - frames).mean() for other, (_, frames) in clips.items()}
            assert min(distances, key=distances.get) == name, distances


def nearest_centroid_accuracy(train_x, train_y, test_x, test_y):
    """Mean per-class recall of the nearest class centroid (a learner independent of the data's code)."""
    classes = np.unique(train_y)
    centroids = np.stack([train_x[train_y == c].mean(0) for c in classes])
    predicted = classes[np.argmin(((test_x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    return np.mean([np.mean(predicted[test_y == c] == c) for c in np.unique(test_y)])


def test_ade20k_pixel_classes_are_learnable(ade20k):
    """Per-pixel RGB, nearest centroid over training pixels: each labelled class is recognised on
    validation images far above chance (1 / (object classes + background))."""
    def pixels(split):
        xs, ys = [], []
        for path in sorted((ade20k / 'images' / split).glob('*.jpg')):
            rgb = np.asarray(Image.open(path), np.float64).reshape(-1, 3)
            labels = np.asarray(Image.open(ade20k / 'annotations' / split / path.name.replace('.jpg', '.png')))
            keep = labels.reshape(-1) > 0
            xs.append(rgb[keep])
            ys.append(labels.reshape(-1)[keep])
        return np.concatenate(xs), np.concatenate(ys)
    chance = 1 / (ADE_CLASSES + 1)
    assert nearest_centroid_accuracy(*pixels('training'), *pixels('validation')) > 2 * chance


def test_rawframe_classes_are_learnable(rawframes):
    """A video's feature: the mean colour of its saturated pixels (the moving object); nearest
    centroid from the training list classifies the validation videos far above chance."""
    def videos(split):
        xs, ys = [], []
        for line in (rawframes / list_file(split)).read_text().splitlines():
            video, _, label = line.split()
            frames = read_frames(rawframes / f'rawframes_{split}' / video)
            saturated = frames.max(-1) - frames.min(-1) > 80
            xs.append(frames[saturated].mean(0))
            ys.append(int(label))
        return np.stack(xs), np.array(ys)
    assert nearest_centroid_accuracy(*videos('train'), *videos('val')) > 2 / RAWFRAME_CLASSES


@pytest.mark.parametrize('make, kwargs', [
    (make_ade20k, dict(num_classes=2, train_images=2, val_images=1, image_size=(48, 32))),
    (make_rawframes, dict(num_classes=2, train_per_class=1, val_per_class=1, total_frames=3)),
    (make_videos, dict(num_classes=2, train_per_class=1, val_per_class=1, total_frames=3))])
def test_same_seed_gives_identical_bytes_other_seed_differs_rerun_skips(tmp_path, make, kwargs):
    assert make(tmp_path / 'a', seed=0, **kwargs) is True
    assert make(tmp_path / 'b', seed=0, **kwargs) is True
    assert make(tmp_path / 'c', seed=1, **kwargs) is True
    first = _tree_bytes(tmp_path / 'a')
    assert first == _tree_bytes(tmp_path / 'b')
    other = _tree_bytes(tmp_path / 'c')
    assert other.keys() == first.keys()
    assert any(other[name] != first[name] for name in first if name.endswith(('.jpg', '.mp4')))
    assert make(tmp_path / 'a', seed=0, **kwargs) is False  # complete: skipped
    with pytest.raises(TinyDataError, match=r'seed: 0 on disk, 2 asked.*--force'):
        make(tmp_path / 'a', seed=2, **kwargs)


@pytest.mark.parametrize('make, kwargs, message', [
    (make_ade20k, dict(num_classes=0), r'num_classes must be in \[1, 149\].*got 0'),
    (make_ade20k, dict(num_classes=150), r'num_classes must be in \[1, 149\].*got 150'),
    (make_ade20k, dict(train_images=0), 'train_images must be at least 1, got 0'),
    (make_ade20k, dict(objects_per_image=0), 'objects_per_image must be at least 1, got 0'),
    (make_ade20k, dict(image_size=(96, 16)), r'image_size must be \(width, height\), each at least 32'),
    (make_ade20k, dict(seed=-1), 'seed must be at least 0, got -1'),
    (make_rawframes, dict(num_classes=1), 'num_classes must be at least 2, got 1'),
    (make_rawframes, dict(val_per_class=0), 'val_per_class must be at least 1, got 0'),
    (make_rawframes, dict(total_frames=0), 'total_frames must be at least 1, got 0'),
    (make_rawframes, dict(frame_size=(20, 64)), r'frame_size must be \(width, height\), each at least 32'),
    (make_videos, dict(train_per_class=0), 'train_per_class must be at least 1, got 0')])
def test_bad_parameters_are_named(tmp_path, make, kwargs, message):
    with pytest.raises(TinyDataError, match=message):
        make(tmp_path / 'out', **kwargs)
    assert not (tmp_path / 'out').exists()
