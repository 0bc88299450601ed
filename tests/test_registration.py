"""FocusedDropout builds from mmdet and mmpretrain configs and as an mmdet ResNet plugin."""
import pytest
import torch
from mmcv.cnn import build_plugin_layer
from mmengine.registry import DefaultScope, init_default_scope

from fdrop_mm import FocusedDropout


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
