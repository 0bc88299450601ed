"""The detection configs' dataset and metric on real generated VOCdevkit files."""
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmdet.registry import DATASETS

import fdrop_mm.datasets.voc  # noqa: F401  registers CheckedVOCDataset, VOCMetricPerClass
from fdrop_mm.tiny_data import make_voc
from tests.conftest import TINY_DETECTION, build_test_split


@pytest.fixture()
def voc(tmp_path) -> Path:
    root = tmp_path / 'VOCdevkit'
    make_voc(root, seed=0, voc07_trainval=6, voc07_test=4, voc12_trainval=4)
    return root


def first_annotation(root: Path) -> Path:
    return sorted((root / 'VOC2007' / 'Annotations').glob('*.xml'))[0]


def test_generated_test_split_loads(voc):
    dataset = build_test_split(voc)
    assert len(dataset) == 4 and dataset.metainfo['dataset_type'] == 'VOC2007'


def test_wrong_data_root_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f'data_root {tmp_path}/nowhere'):
        build_test_split(tmp_path / 'nowhere')


def test_malformed_xml_names_the_file(voc):
    xml = first_annotation(voc)
    xml.write_text(xml.read_text()[:-40])
    with pytest.raises(ValueError, match=f'{xml.name}: bad VOC annotation'):
        build_test_split(voc)


@pytest.mark.parametrize('tag, value, message', [
    ('name', 'unicorn', "unknown class name 'unicorn'"),
    ('xmax', '5000', 'outside the 192x160 image'),
])
def test_bad_object_names_the_file(voc, tag, value, message):
    xml = first_annotation(voc)
    text = xml.read_text()
    old = text.split(f'<{tag}>', 1)[1].split(f'</{tag}>', 1)[0]
    xml.write_text(text.replace(f'<{tag}>{old}</{tag}>', f'<{tag}>{value}</{tag}>', 1))
    with pytest.raises(ValueError, match=f'{xml.name}: .*{message}'):
        build_test_split(voc)


def set_first_box(xml: Path, box) -> str:
    """Give the first object of ``xml`` the box (xmin, ymin, xmax, ymax); return its class name."""
    tree = ET.parse(xml)
    first = tree.getroot().find('object')
    for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), box):
        first.find('bndbox').find(tag).text = str(value)
    tree.write(xml)
    return first.find('name').text


@pytest.mark.parametrize('box, message', [
    ((50, 20, 40, 60), r'xmin 50 > xmax 40$'),
    ((10, 30, 40, 30), r'ymin == ymax == 30 \(an empty box: zero height\)$'),
    ((0, 20, 40, 60), r'xmin 0 < 1 \(outside the 192x160 image; VOC boxes are 1-based, inclusive\)$'),
    ((10, 20, 40, 161), r'ymax 161 > image height 160 \(outside the 192x160 image'),
    ((300, 20, 40, 60), r'xmin 300 > xmax 40; xmin 300 > image width 192 \(outside'),
])
def test_bad_box_says_what_is_wrong(voc, box, message):
    xml = first_annotation(voc)
    name = set_first_box(xml, box)
    shown = ' '.join(f'{k}={v}' for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), box))
    with pytest.raises(ValueError, match=rf"{xml}: bad VOC annotation: object 1 of \d+ \('{name}'\), "
                                         rf"box {shown}: {message}"):
        build_test_split(voc)


def first_test_image(root: Path) -> Path:
    image_id = (root / 'VOC2007' / 'ImageSets' / 'Main' / 'test.txt').read_text().split()[0]
    return root / 'VOC2007' / 'JPEGImages' / f'{image_id}.jpg'


def test_listed_image_missing_or_empty_is_named_when_the_dataset_is_built(voc):
    image = first_test_image(voc)
    listed = rf'image {image} \(listed in {voc}/VOC2007/ImageSets/Main/test\.txt\)'
    image.write_bytes(b'')
    with pytest.raises(ValueError, match=rf'{listed} is empty \(0 bytes\)'):
        build_test_split(voc)
    image.unlink()
    with pytest.raises(FileNotFoundError, match=rf'{listed} does not exist'):
        build_test_split(voc)


def test_missing_test_image_stops_training_before_its_first_iteration(voc, tmp_path, monkeypatch):
    """The tiny config validates after all of training; its test images are checked at the start."""
    image = first_test_image(voc)
    image.unlink()
    monkeypatch.setenv('VOC_ROOT', f'{voc}/')
    cfg = Config.fromfile(str(TINY_DETECTION))
    cfg.model.backbone.init_cfg = None
    cfg.work_dir, cfg.experiment_name = str(tmp_path), f'missing_image_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    with pytest.raises(FileNotFoundError, match=rf'image {image} \(listed in .*test\.txt\) does not exist'):
        runner.train()
    assert runner.iter == 0


def test_voc_root_sets_the_tiny_config_data_root(voc, monkeypatch):
    """$VOC_ROOT is the one variable of the tiny config as of the full one; mmengine logs it as used."""
    monkeypatch.setenv('VOC_ROOT', f'{voc}/')
    cfg = Config.fromfile(str(TINY_DETECTION))
    assert cfg.env_variables == {'VOC_ROOT': f'{voc}/'}
    train_sets = cfg.train_dataloader.dataset.dataset.datasets
    roots = [d.data_root for d in train_sets] + [cfg.val_dataloader.dataset.data_root,
                                                 cfg.test_dataloader.dataset.data_root]
    assert roots == [f'{voc}/'] * 4
    init_default_scope('mmdet')
    assert len(DATASETS.build(cfg.test_dataloader.dataset)) == 4
