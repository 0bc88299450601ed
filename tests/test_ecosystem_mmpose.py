"""FocusedDropout in mmpose 1.3.2's stock top-down heatmap ResNet-50 COCO recipe
(configs/mmpose: the recipe, the README's hook lines with the default target, CPU adaptations),
as a user runs it: through mmpose's own packaged tools/train.py (``mmpose/.mim/tools/train.py``,
what ``mim train`` runs) on a tiny COCO person-keypoints set in its real format
(fdrop_mm.tiny_data.coco_keypoints), then ``--resume`` with a longer schedule: both runs log a loss
and FD masking (``fd/keep_ratio`` strictly inside (0, 1) on the focused steps), the second resumes
after the first one's epoch, and both print the recipe's CocoMetric AP in [0, 1]. And the data:
mmpose's CocoDataset reads the generated files, and the recipe's pipelines carry the keypoints'
signal to the network's input.
"""
import json
import math
import os
import re

import numpy as np
import pytest
from PIL import Image

from fdrop_mm.tiny_data.coco_keypoints import (KEYPOINT_NAMES, annotation_file, keypoint_colours,
                                             make_coco_keypoints)
from fdrop_mm.tiny_data import TinyDataError
from tests.conftest import REPO
from tests.packaged_tools import RESUMED, TARGET, packaged_train_py, run, training_steps

CONFIG = REPO / 'configs/mmpose/td-hm_res50_fd_tiny-coco-128x96.py'
TRAIN_IMAGES, VAL_IMAGES = 8, 4
AP_LINE = re.compile(r'Epoch\(val\).*?\scoco/AP: (\S+)')
OWN_COLOUR_SHARE = 0.9  # of the keypoints, whose pixel is nearest to their own dot colour


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('pose') / 'coco'
    make_coco_keypoints(root, train_images=TRAIN_IMAGES, val_images=VAL_IMAGES)
    return root


@pytest.fixture
def env(coco_root, monkeypatch):
    """$COCO_ROOT for the config, one thread per process (2 shared cores), this checkout first."""
    monkeypatch.setenv('COCO_ROOT', str(coco_root))
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join([str(REPO), *filter(None, [os.environ.get('PYTHONPATH')])]))
    return dict(os.environ)


def own_colour_share(pixels_at_keypoints: np.ndarray) -> float:
    """The share of (K, 17, 3) RGB pixels whose nearest dot colour is their own keypoint's."""
    palette = keypoint_colours().astype(float)
    nearest = ((pixels_at_keypoints[..., None, :] - palette) ** 2).sum(-1).argmin(-1)
    return float((nearest == np.arange(len(KEYPOINT_NAMES))).mean())


def pixels_at(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """(17, 3) pixels of the (H, W, 3) ``image`` at the (17, 2) ``keypoints``, rounded."""
    cols, rows = np.rint(keypoints).astype(int).T
    return image[rows, cols].astype(float)


@pytest.mark.slow
def test_packaged_train_py_trains_masks_resumes_and_prints_coco_ap(env, tmp_path):
    tool = packaged_train_py('mmpose')
    work_dir = tmp_path / 'work'

    def check(log):
        steps = training_steps(log)
        assert steps, log[-3000:]
        assert all(math.isfinite(float(fields['loss'])) for _, fields in steps), steps
        focused = [fields for _, fields in steps if float(fields['fd/active']) == 1.0]
        assert focused, f'no focused step to show masking in {steps}'
        assert all(0.0 < float(fields['fd/keep_ratio']) < 1.0 for fields in focused), focused
        aps = [float(value) for value in AP_LINE.findall(log)]
        assert aps and all(0.0 <= ap <= 1.0 for ap in aps), log[-3000:]
        assert f"1 FocusedDropout module(s): ['{TARGET}']" in log
        return [position for position, _ in steps]

    first = run([tool, CONFIG, '--work-dir', work_dir], env, tmp_path)
    assert check(first) == [(1, b) for b in range(1, 5)]  # 8 people, 2 a step
    assert f'FD goes on the output of the penultimate stage, {TARGET}' in first
    second = run([tool, CONFIG, '--work-dir', work_dir, '--resume', '--cfg-options', 'train_cfg.max_epochs=2'],
                 env, tmp_path)
    assert f'resumed from the latest checkpoint {work_dir / "epoch_1.pth"}' in second
    assert RESUMED.findall(second) == [('1', '4')]
    assert check(second) == [(2, b) for b in range(1, 5)]


def test_coco_dataset_reads_the_files_and_the_pipelines_keep_the_keypoint_signal(env, coco_root):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.registry import DATASETS
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmpose')
    for split, count in (('train', TRAIN_IMAGES), ('val', VAL_IMAGES)):
        published = json.loads((coco_root / annotation_file(split)).read_text())
        dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
        assert len(dataset) == count  # one person an image, each kept
        shown = []
        for index, annotation in enumerate(published['annotations']):
            info = dataset.get_data_info(index)
            keypoints = np.array(annotation['keypoints'], np.float32).reshape(-1, 3)
            np.testing.assert_array_equal(info['keypoints'][0], keypoints[:, :2])
            x, y, w, h = annotation['bbox']
            np.testing.assert_allclose(info['bbox'][0], [x, y, x + w, y + h])
            sample = dataset[index]  # the recipe's whole pipeline
            assert tuple(sample['inputs'].shape) == (3, 128, 96)
            if split == 'train':
                assert tuple(sample['data_samples'].gt_fields.heatmaps.shape) == (17, 32, 24)
            else:  # up to TopdownAffine: the keypoints' dots in the network's input
                warped = dataset.get_data_info(index)
                for transform in dataset.pipeline.transforms[:-1]:
                    warped = transform(warped)
                shown.append(pixels_at(warped['img'][..., ::-1], warped['transformed_keypoints'][0]))
        if split == 'val':
            assert own_colour_share(np.stack(shown)) >= OWN_COLOUR_SHARE


def test_the_files_show_each_keypoint_in_its_own_colour_deterministically(coco_root, tmp_path):
    published = json.loads((coco_root / annotation_file('train')).read_text())
    (category, ) = published['categories']
    assert category['keypoints'] == list(KEYPOINT_NAMES) and category['name'] == 'person'
    shown = []
    for image, annotation in zip(published['images'], published['annotations']):
        pixels = np.asarray(Image.open(coco_root / 'train2017' / image['file_name']).convert('RGB'))
        assert pixels.shape == (image['height'], image['width'], 3) and annotation['image_id'] == image['id']
        keypoints = np.array(annotation['keypoints']).reshape(-1, 3)
        x, y, w, h = annotation['bbox']
        assert (keypoints[:, 2] == 2).all() and annotation['num_keypoints'] == 17
        assert ((keypoints[:, 0] >= x) & (keypoints[:, 0] < x + w)).all()
        assert ((keypoints[:, 1] >= y) & (keypoints[:, 1] < y + h)).all()
        assert 0 < annotation['area'] <= w * h
        shown.append(pixels_at(pixels, keypoints[:, :2]))
    assert own_colour_share(np.stack(shown)) >= OWN_COLOUR_SHARE

    again = tmp_path / 'coco'
    make_coco_keypoints(again, train_images=TRAIN_IMAGES, val_images=VAL_IMAGES)
    for path in sorted(p for p in coco_root.rglob('*') if p.is_file()):
        assert (again / path.relative_to(coco_root)).read_bytes() == path.read_bytes(), path


@pytest.mark.parametrize('arguments, message', [
    (dict(train_images=0), 'train_images must be at least 1, got 0'),
    (dict(val_images=-1), 'val_images must be at least 1, got -1'),
    (dict(seed=-1), 'seed must be at least 0, got -1'),
    (dict(image_size=(40, 128)), r'image_size must be \(width, height\), each at least 48 pixels, got \(40, 128\)'),
])
def test_bad_parameters_are_refused_by_name(arguments, message, tmp_path):
    with pytest.raises(TinyDataError, match=message):
        make_coco_keypoints(tmp_path / 'coco', **arguments)
    assert not (tmp_path / 'coco').exists()


@pytest.mark.slow
def test_the_target_returns_a_map_per_person_crop(env):
    """What FD masks: the model (built from the config) run on a batch of 128x96 person crops;
    backbone.layer3 gives (N, 1024, 8, 6), one reference channel and mask per crop."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmpose')
    model = MODELS.build(cfg.model).eval()
    shapes = []
    dict(model.named_modules())[TARGET].register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        model(torch.rand(2, 3, 128, 96), None, mode='tensor')
    assert shapes == [(2, 1024, 8, 6)]
