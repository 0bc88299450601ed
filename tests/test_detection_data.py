"""The detection configs' dataset and metric on real generated VOCdevkit files."""
import importlib.util
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmdet.registry import DATASETS

import fdrop_mm.detection  # noqa: F401  registers CheckedVOCDataset, VOCMetricPerClass
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location('make_tiny_data', REPO / 'tools' / 'make_tiny_data.py')
make_tiny_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_tiny_data)


@pytest.fixture()


def voc(tmp_path) -> Path:
    root = tmp_path / 'VOCdevkit'
    make_tiny_data.make_voc(root, seed=0, voc07_trainval=6, voc07_test=4, voc12_trainval=4)
    return root


def build_test_split(root: Path, **kwargs):
    """The tiny config's VOC2007 test dataset, rooted at ``root``."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(REPO / 'configs/tiny/retinanet_r50_fpn_voc0712_tiny.py'))
    dataset = dict(cfg.test_dataloader.dataset, data_root=str(root) + '/', **kwargs)
    return DATASETS.build(dataset)


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
