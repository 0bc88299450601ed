"""FocusedDropout builds from mmdet and mmpretrain configs and as an mmdet ResNet plugin; the
package registers everything a config names."""
import os
import subprocess
import sys

import pytest
import torch
from mmcv.cnn import build_plugin_layer
from mmengine.registry import DefaultScope, init_default_scope

from fdrop_mm import FocusedDropout
from fdrop_mm.tiny_data import make_imagenet
from tests.conftest import REPO


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_builds_from_config_dict_in_scope(scope):
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    module = registry.build(dict(type='FocusedDropout', gamma_range=(0.4, 0.5), opposite=True))
    assert isinstance(module, FocusedDropout)
    assert module.gamma_range == (0.4, 0.5) and module.opposite


def test_build_plugin_layer_passes_in_channels():
    with DefaultScope.overwrite_default_scope('mmdet'):
        name, layer = build_plugin_layer(dict(type='FocusedDropout'), in_channels=256, postfix='_1')
    assert name == 'focused_dropout_1' and isinstance(layer, FocusedDropout)


def test_inside_mmdet_resnet50_via_plugins():
    torch.manual_seed(0)  # unseeded, 1 draw in 5 gave a plugin whose reference channel kept all 40 positions
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    backbone = MODELS.build(dict(
        type='ResNet', depth=50, out_indices=(0, 1, 2, 3),
        plugins=[dict(cfg=dict(type='FocusedDropout', gamma_range=(0.5, 0.5)),
                      stages=(False, False, True, False), position='after_conv3')]))
    plugins = [name for name, m in backbone.named_modules() if isinstance(m, FocusedDropout)]
    assert plugins == [f'layer3.{i}.focused_dropout' for i in range(6)]
    backbone.train()
    x = torch.randn(2, 3, 64, 80, requires_grad=True)
    outs = backbone(x)
    assert [tuple(o.shape[1:]) for o in outs] == [(256, 16, 20), (512, 8, 10), (1024, 4, 5), (2048, 2, 3)]
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(0 < backbone.get_submodule(n).last_keep_ratio < 1 for n in plugins)


README_LINES = '''custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)
custom_hooks = [
    dict(type='FocusedDropoutHook', participation=0.1, weight_decay_multiplier=2.0,
         targets=['backbone.layer3'], gamma_range=(0.3, 0.6)),
]
'''
BUILD_FROM_CONFIG = '''
import sys
from mmengine.config import Config
from mmengine.registry import DATASETS, HOOKS, init_default_scope

cfg = Config.fromfile(sys.argv[1])  # imports custom_imports, nothing else
init_default_scope(cfg.default_scope)
dataset = DATASETS.build(cfg.test_dataloader.dataset)
hook = HOOKS.build(cfg.custom_hooks[0])
print(type(dataset).__name__, len(dataset), type(hook).__name__)
'''


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp('imagenet') / 'imagenet'
    make_imagenet(root, seed=0, num_classes=2, train_per_class=1, val_per_class=2)
    return root


@pytest.mark.parametrize('base, dataset, extra', [
    # the project's configs, as the README tells users to extend them
    (str(REPO / 'configs/pretrain/resnet50_8xb32_in1k.py'), 'CheckedImageNet', ''),
    (str(REPO / 'configs/detection/retinanet_r50_fpn_1x_voc0712_from-baseline.py'), 'CheckedVOCDataset', ''),
    # stock configs with fdrop_mm's datasets
    ('mmpretrain::resnet/resnet18_8xb32_in1k.py', 'CheckedImageNet',
     "test_dataloader = dict(dataset=dict(type='CheckedImageNet', data_root='{imagenet}'))\n"),
    ('mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py', 'CheckedVOCDataset',
     "test_dataloader = dict(dataset=dict(type='CheckedVOCDataset', data_root='{voc}/'))\n"),
], ids=['ours-pretrain', 'ours-detection', 'stock-mmpretrain', 'stock-mmdet'])
def test_custom_imports_fdrop_mm_registers_everything(base, dataset, extra, tiny_imagenet, tiny_voc,
                                                      tmp_path):
    """The README's lines on a config: ``imports=['fdrop_mm']`` alone, in a fresh process, registers
    the hook and the datasets (replacing a config's own import list loses nothing)."""
    config = tmp_path / 'config.py'
    extra = extra.format(imagenet=tiny_imagenet, voc=tiny_voc)
    config.write_text(f'_base_ = {base!r}\n' + README_LINES + extra)
    env = {**os.environ, 'IMAGENET_ROOT': str(tiny_imagenet), 'VOC_ROOT': f'{tiny_voc}/'}
    proc = subprocess.run([sys.executable, '-c', BUILD_FROM_CONFIG, str(config)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-3:] == [dataset, '4', 'FocusedDropoutHook']
