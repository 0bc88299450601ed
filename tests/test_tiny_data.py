"""fdrop_mm.tiny_data's output, loaded by the real mmpretrain and mmdet dataset classes,
and its command line tools/misc/make_tiny_data.py."""
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from fdrop_mm.tiny_data import TinyDataError, generate, imagenet, voc
from tests.conftest import run_tool

NUM_CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, IMAGENET_SIZE = 20, 30, 10, 64
VOC07_TRAINVAL, VOC07_TEST, VOC12_TRAINVAL, VOC_W, VOC_H = 60, 100, 40, 192, 160


def _tree_bytes(root):
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob('*')) if path.is_file()}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Default-sized datasets, made once."""
    out = tmp_path_factory.mktemp('tiny')
    generate(out)
    return out


def test_same_seed_gives_identical_bytes_other_seed_differs(tiny, tmp_path):
    generate(tmp_path / 'again')
    generate(tmp_path / 'seed1', seed=1)
    first = _tree_bytes(tiny)
    assert first == _tree_bytes(tmp_path / 'again')
    other = _tree_bytes(tmp_path / 'seed1')
    assert other.keys() == first.keys()
    image = 'imagenet/train/n01440764/n01440764_1.JPEG'
    assert other[image] != first[image]


def test_rerun_skips_refuses_other_parameters_and_force_replaces(tmp_path, capsys):
    small = dict(only=['imagenet'], num_classes=2, imagenet_train_per_class=1, imagenet_val_per_class=1)
    assert generate(tmp_path, **small) == [(tmp_path / 'imagenet', True)]
    assert f'wrote {tmp_path / "imagenet"}' in capsys.readouterr().out
    assert generate(tmp_path, **small) == [(tmp_path / 'imagenet', False)]
    assert 'already complete' in capsys.readouterr().out
    with pytest.raises(TinyDataError, match=r'seed: 0 on disk, 3 asked.*--force'):
        generate(tmp_path, seed=3, **small)
    assert generate(tmp_path, seed=3, force=True, **small) == [(tmp_path / 'imagenet', True)]
    assert 'wrote' in capsys.readouterr().out
    assert not (tmp_path / 'VOCdevkit').exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['imagenet']  # no partial dir left


def test_bad_output_locations_are_named(tmp_path):
    a_file = tmp_path / 'file'
    a_file.write_text('')
    with pytest.raises(TinyDataError, match=f'{a_file} exists and is not a directory'):
        generate(a_file)
    foreign = tmp_path / 'out' / 'VOCdevkit'
    foreign.mkdir(parents=True)
    (foreign / 'mine.txt').write_text('')
    with pytest.raises(TinyDataError, match=f'{foreign} is not empty and has no tiny_data.json'):
        generate(tmp_path / 'out', only=['voc'], force=True)


@pytest.mark.parametrize('kwargs, message', [
    (dict(only=['imagenet', 'coco']), r"only: unknown datasets \['coco'\]"),
    (dict(voc_sizes=(80, 80)), r"unknown sizes \['voc_sizes'\]"),
    (dict(only=['voc'], voc_size=(60, 80)), 'VOC image sides must be at least 80 pixels')])
def test_bad_parameters_are_named(tmp_path, kwargs, message):
    with pytest.raises(TinyDataError, match=message):
        generate(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_cli_makes_the_default_datasets_and_exits_with_the_error(tmp_path):
    """tools/misc/make_tiny_data.py: its flags reach the generator; the default --only is what the
    pretrain-and-detect pipeline needs (imagenet, voc); a refusal exits 1 with the reason."""
    small = ['--out', tmp_path, '--num-classes', '2', '--imagenet-train-per-class', '1',
             '--imagenet-val-per-class', '1', '--imagenet-size', '16', '--voc07-trainval', '1',
             '--voc07-test', '1', '--voc12-trainval', '1', '--voc-size', '80', '96']
    proc = run_tool('misc/make_tiny_data.py', *small)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [f'wrote {tmp_path / "imagenet"}', f'wrote {tmp_path / "VOCdevkit"}']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['VOCdevkit', 'imagenet']
    params = json.loads((tmp_path / 'imagenet' / 'tiny_data.json').read_text())['params']
    assert params == dict(dataset='imagenet', seed=0, num_classes=2, train_per_class=1, val_per_class=1,
                          image_size=16)
    params = json.loads((tmp_path / 'VOCdevkit' / 'tiny_data.json').read_text())['params']
    assert params == dict(dataset='voc', seed=0, voc07_trainval=1, voc07_test=1, voc12_trainval=1,
                          image_size=[80, 96])

    proc = run_tool('misc/make_tiny_data.py', *small, '--seed', '3')
    assert proc.returncode == 2
    assert proc.stderr.startswith(f'make_tiny_data.py: error: {tmp_path / "imagenet"} was made with other '
                                  'parameters (seed: 0 on disk, 3 asked); use --force to replace it')


def test_imagenet_loads_in_mmpretrain(tiny):
    from mmpretrain.registry import DATASETS
    from mmpretrain.utils import register_all_modules
    register_all_modules()
    root = tiny / 'imagenet'
    classes = str(root / 'meta' / 'classes.txt')
    pipeline = [dict(type='LoadImageFromFile')]
    train = DATASETS.build(dict(type='ImageNet', data_root=str(root), split='train',
                                classes=classes, pipeline=pipeline))
    val = DATASETS.build(dict(type='ImageNet', data_root=str(root), split='val',
                              classes=classes, pipeline=pipeline))
    assert train.CLASSES == tuple(imagenet.imagenet_class_names(NUM_CLASSES))
    assert len(train) == NUM_CLASSES * TRAIN_PER_CLASS
    assert len(val) == NUM_CLASSES * VAL_PER_CLASS
    for dataset, per_class in ((train, TRAIN_PER_CLASS), (val, VAL_PER_CLASS)):
        labels = Counter(int(label) for label in dataset.get_gt_labels())
        assert labels == {label: per_class for label in range(NUM_CLASSES)}
    wnid = imagenet.imagenet_wnids(NUM_CLASSES)[3]
    sample = train[3 * TRAIN_PER_CLASS]
    assert Path(sample['img_path']).parent.name == wnid and sample['gt_label'] == 3
    assert sample['img'].shape == (IMAGENET_SIZE, IMAGENET_SIZE, 3)
    assert val[0]['img'].shape == (IMAGENET_SIZE, IMAGENET_SIZE, 3)
    # Without `classes` the 1000 ImageNet names stay: nothing checks labels against them.
    default = DATASETS.build(dict(type='ImageNet', data_root=str(root), split='val'))
    assert len(default.CLASSES) == 1000 and len(default) == len(val)


def _xml_objects(sub_root, image_id):
    return ET.parse(sub_root / 'Annotations' / f'{image_id}.xml').getroot().findall('object')


def test_voc_loads_in_mmdet_with_stock_voc0712_config(tiny):
    import mmdet
    from mmengine.config import Config
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules()
    devkit = f'{tiny / "VOCdevkit"}/'
    # What `mmdet::_base_/datasets/voc0712.py` names in a config's `_base_`.
    cfg = Config.fromfile(Path(mmdet.__file__).parent / '.mim/configs/_base_/datasets/voc0712.py')
    train_cfg, test_cfg = cfg.train_dataloader.dataset, cfg.val_dataloader.dataset
    for dataset_cfg in (*train_cfg.dataset.datasets, test_cfg):
        dataset_cfg.data_root = devkit
    train = DATASETS.build(train_cfg)  # RepeatDataset(ConcatDataset([VOC2007, VOC2012]))
    test = DATASETS.build(test_cfg)
    voc07, voc12 = train.dataset.datasets
    assert len(train) == train_cfg.times * (VOC07_TRAINVAL + VOC12_TRAINVAL)

    difficult_total = 0
    for dataset, year, split, expected in ((voc07, 2007, 'trainval', VOC07_TRAINVAL),
                                           (voc12, 2012, 'trainval', VOC12_TRAINVAL),
                                           (test, 2007, 'test', VOC07_TEST)):
        sub_root = tiny / 'VOCdevkit' / f'VOC{year}'
        ids = (sub_root / 'ImageSets' / 'Main' / f'{split}.txt').read_text().split()
        assert len(ids) == expected
        assert len(dataset) == expected  # the min_size / filter_empty_gt filters keep all
        assert dataset.metainfo['dataset_type'] == f'VOC{year}'
        assert dataset.metainfo['classes'] == voc.VOC_CLASSES
        for index, image_id in enumerate(ids):
            info = dataset.get_data_info(index)
            assert Path(info['img_path']).stem == image_id
            assert (info['width'], info['height']) == (VOC_W, VOC_H)
            objects = _xml_objects(sub_root, image_id)
            assert 1 <= len(info['instances']) == len(objects) <= 3
            for instance, obj in zip(info['instances'], objects):
                x1, y1, x2, y2 = instance['bbox']
                assert 0 <= x1 and 0 <= y1 and x2 <= VOC_W - 1 and y2 <= VOC_H - 1
                assert min(x2 - x1, y2 - y1) >= 32  # above bbox_min_size, so never ignored
                assert obj.findtext('name') in voc.VOC_CLASSES
                assert instance['ignore_flag'] == int(obj.findtext('difficult'))
                difficult_total += instance['ignore_flag']
    assert difficult_total > 0

    sample = voc07[0]  # through the stock train pipeline, resized to (1000, 600)
    assert sample['inputs'].shape[1:] == (600, 720)
    assert len(sample['data_samples'].gt_instances) >= 1
