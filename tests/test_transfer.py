"""mmpretrain ResNet-50 checkpoint -> mmdet ResNet / RetinaNet backbone (fdrop_mm.transfer)."""
import re
from pathlib import Path

import mmdet
import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.runner import Runner, save_checkpoint
from mmpretrain.registry import MODELS as CLS_MODELS

from fdrop_mm.config_text import parse_config_text
from fdrop_mm.transfer import NO_FOCUSED_DROPOUT_NOTE, extract_backbone
from tests.conftest import classifier_cfg, run_tool

VOC_RETINANET = Path(mmdet.__file__).parent / '.mim/configs/pascal_voc/retinanet_r50_fpn_1x_voc0712.py'
FD_HOOK = dict(type='FocusedDropoutHook', targets=['backbone.layer3'], participation=0.5)
R50_KEYS = 318  # parameters and buffers of mmdet ResNet(depth=50)


def classifier(depth=50, backbone='ResNet', num_classes=10):
    return CLS_MODELS.build(dict(
        type='ImageClassifier', _scope_='mmpretrain', backbone=dict(type=backbone, depth=depth),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=2048 if depth >= 50 else 512)))


def resnet(init_cfg, **kwargs):
    return DET_MODELS.build(dict(type='ResNet', depth=50, _scope_='mmdet', init_cfg=init_cfg, **kwargs))


def strict(checkpoint, **kwargs):
    return dict(type='StrictPretrained', checkpoint=str(checkpoint), **kwargs)


def assert_backbone_equals(backbone, state_dict):
    own = backbone.state_dict()
    assert len(own) == R50_KEYS
    for name, value in own.items():
        assert torch.equal(value, state_dict[f'backbone.{name}']), name


@pytest.fixture(scope='module')
def source(image_folder, tmp_path_factory):
    """A real Runner checkpoint: mmpretrain ResNet-50 classifier, 1 iteration, FocusedDropoutHook."""
    work_dir = tmp_path_factory.mktemp('pretrain')
    model = dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=50),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=2, in_channels=2048),
                 data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=2,
                                        mean=[127.5] * 3, std=[64.0] * 3))
    optim = dict(optimizer=dict(type='SGD', lr=0.01, weight_decay=5e-4))  # no momentum: a smaller file
    runner = Runner.from_cfg(Config(classifier_cfg(image_folder, work_dir, max_iters=1, model=model,
                                                   custom_hooks=[FD_HOOK], optim_wrapper=optim)))
    runner.train()
    ckpt = work_dir / 'iter_1.pth'
    return ckpt, torch.load(ckpt)


@pytest.fixture(scope='module')
def extracted(source, tmp_path_factory):
    dst = tmp_path_factory.mktemp('backbone') / 'r50_backbone.pth'
    written = extract_backbone(source[0], dst, meta=dict(arm='fd_mwd', note='test'))
    return dst, written


@pytest.fixture(scope='module')
def resnet18_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('r18') / 'resnet18_cls.pth'
    save_checkpoint({'state_dict': classifier(depth=18).state_dict(), 'meta': {}}, str(path))
    return path


# extraction -------------------------------------------------------------------
def test_extract_keeps_exactly_the_backbone(source, extracted):
    (_, raw), (dst, written) = source, extracted
    allowed = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()  # plain tensors and Python: no fdrop_mm allow-list needed
    try:
        on_disk = torch.load(dst)  # torch's default weights-only load
    finally:
        torch.serialization.add_safe_globals(allowed)
    assert set(on_disk) == {'state_dict', 'meta'}
    backbone_keys = [k for k in raw['state_dict'] if k.startswith('backbone.')]
    assert sorted(on_disk['state_dict']) == sorted(backbone_keys) and len(backbone_keys) == R50_KEYS
    for k in backbone_keys:
        assert torch.equal(on_disk['state_dict'][k], raw['state_dict'][k]), k
    assert on_disk['meta'] == written['meta']


def test_meta_records_source_and_focused_dropout_settings(source, extracted):
    (src, raw), (_, written) = source, extracted
    meta = written['meta']
    assert meta['source'] == str(src)
    assert meta['source_meta']['iter'] == 1
    assert meta['source_meta']['experiment_name'] == raw['meta']['experiment_name']
    assert meta['backbone'] == dict(type='mmdet.ResNet', depth=50) and meta['num_tensors'] == R50_KEYS
    assert meta['arm'] == 'fd_mwd' and meta['note'] == 'test'
    # as the hook ran, its defaults filled in and its seed resolved (the runner's), with what it drove
    assert meta['focused_dropout'] == dict(
        type='FocusedDropoutHook', targets=['backbone.layer3'], participation=0.5, weight_decay_multiplier=2.0,
        gamma_range=(0.3, 0.6), mode='focused', seed=0, modules=['backbone.layer3'])
    assert 'focused_dropout_note' not in meta


def test_meta_records_the_classifier_source(extracted):
    source = extracted[1]['meta']['source_model']
    assert source == dict(type='ImageClassifier', known_from='meta.cfg model.type')


def test_detector_source_is_refused_unless_allowed(detector_checkpoint, tmp_path):
    """A fine-tuned detector's backbone.* fits mmdet ResNet-50 exactly: only its meta tells it apart."""
    dst = tmp_path / 'out.pth'
    with pytest.raises(ValueError, match=rf"checkpoint {re.escape(str(detector_checkpoint))} was trained as a "
                                         r"RetinaNet \(known from its meta\.cfg model\.type\), not as an "
                                         r"mmpretrain ImageClassifier.*allow_non_classifier_source=True"):
        extract_backbone(detector_checkpoint, dst)
    assert not dst.exists()
    written = extract_backbone(detector_checkpoint, dst, allow_non_classifier_source=True)
    assert written['meta']['source_model'] == dict(type='RetinaNet', known_from='meta.cfg model.type')
    detector_state = torch.load(detector_checkpoint)['state_dict']
    assert len(written['state_dict']) == R50_KEYS
    assert all(torch.equal(v, detector_state[k]) for k, v in written['state_dict'].items())


def test_detector_source_without_meta_is_known_by_its_heads(detector_checkpoint, tmp_path):
    torch.save({'state_dict': torch.load(detector_checkpoint)['state_dict']}, tmp_path / 'bare.pth')
    with pytest.raises(ValueError, match=r"was trained as a detector \(known from its state_dict keys "
                                         r"\['bbox_head\.'\]\)"):
        extract_backbone(tmp_path / 'bare.pth', tmp_path / 'out.pth')


def test_a_source_without_the_hook_records_no_focused_dropout(resnet18_ckpt, tmp_path):
    """A run without FocusedDropoutHook (a baseline, or in-model modules nobody drove) has no
    meta.focused_dropout: the backbone says so instead of guessing from the config text."""
    r50 = tmp_path / 'baseline.pth'
    save_checkpoint({'state_dict': classifier().state_dict(), 'meta': {'cfg': "custom_hooks = []\n"}}, str(r50))
    meta = extract_backbone(r50, tmp_path / 'out.pth')['meta']
    assert meta['focused_dropout'] is None and meta['focused_dropout_note'] == NO_FOCUSED_DROPOUT_NOTE


def test_config_text_is_parsed_not_executed(tmp_path):
    marker = tmp_path / 'executed'
    values, skipped = parse_config_text(
        f"import os\nhooks = [dict(type='FocusedDropoutHook', gamma_range=(0.3, -0.6))]\n"
        f"x = open({str(marker)!r}, 'w').write('x')\n")
    assert values == {'hooks': [dict(type='FocusedDropoutHook', gamma_range=(0.3, -0.6))]}
    assert 'x' in skipped and not marker.exists()


# StrictPretrained ------------------------------------------------------------------
def test_strict_pretrained_round_trip_with_plugins_and_frozen_stages(extracted):
    dst, written = extracted
    backbone = resnet(strict(dst), frozen_stages=1,
                      plugins=[dict(cfg=dict(type='FocusedDropout'), stages=(False, False, True, False),
                                    position='after_conv3')])
    backbone.init_weights()
    assert_backbone_equals(backbone, written['state_dict'])
    assert not any(p.requires_grad for m in (backbone.conv1, backbone.bn1, backbone.layer1)
                   for p in m.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())


def voc_retinanet(init_cfg):
    cfg = Config.fromfile(str(VOC_RETINANET)).model
    cfg.backbone.init_cfg = init_cfg
    cfg._scope_ = 'mmdet'
    return DET_MODELS.build(cfg)


def test_strict_pretrained_in_voc_retinanet_matches_stock_pretrained(extracted):
    dst, written = extracted
    torch.manual_seed(0)
    model = voc_retinanet(strict(dst, prefix='backbone.'))
    model.init_weights()
    assert_backbone_equals(model.backbone, written['state_dict'])
    assert model.backbone.frozen_stages == 1 and model.backbone.norm_eval
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    model.train()
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))

    # same order of inits and random draws as mmengine's Pretrained: the whole detector is identical
    torch.manual_seed(0)
    stock = voc_retinanet(dict(type='Pretrained', checkpoint=str(dst), prefix='backbone.'))
    stock.init_weights()
    ours = model.state_dict()
    for name, value in stock.state_dict().items():
        assert torch.equal(value, ours[name]), name


def test_children_init_runs_before_the_load(tmp_path):
    """mmcv's DCN zeroes its offsets in its own init_weights; the loaded offsets must survive it."""
    dcn = dict(dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
               stage_with_dcn=(False, False, False, True), base_channels=8)  # narrow: small file
    trained = resnet(None, **dcn)
    with torch.no_grad():
        for p in trained.layer4.parameters():
            p.normal_()
    sd = {f'backbone.{k}': v for k, v in trained.state_dict().items()}
    torch.save({'state_dict': sd}, tmp_path / 'dcn.pth')
    backbone = resnet(strict(tmp_path / 'dcn.pth'), **dcn)
    backbone.init_weights()
    offset = backbone.layer4[0].conv2.conv_offset.weight
    assert offset.abs().sum() > 0 and torch.equal(offset, sd['backbone.layer4.0.conv2.conv_offset.weight'])


# failures ------------------------------------------------------------------------
def test_missing_file(tmp_path):
    missing = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        extract_backbone(missing, tmp_path / 'out.pth')
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        resnet(strict(missing)).init_weights()
    assert not (tmp_path / 'out.pth').exists()


@pytest.mark.parametrize('content', [b'not a checkpoint', 'truncated'])
def test_corrupt_file(extracted, tmp_path, content):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(extracted[0].read_bytes()[:4096] if content == 'truncated' else content)
    with pytest.raises(ValueError, match=f'cannot read checkpoint {re.escape(str(bad))}') as error:
        extract_backbone(bad, tmp_path / 'out.pth')
    assert str(error.value).count('cannot read checkpoint') == 1, 'named once, by the one wrapper'
    assert not (tmp_path / 'out.pth').exists()


def test_head_only_checkpoint(tmp_path):
    head = {k: v for k, v in classifier().state_dict().items() if k.startswith('head.')}
    save_checkpoint({'state_dict': head, 'meta': {}}, str(tmp_path / 'head.pth'))
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'head.pth'))}.*{R50_KEYS} missing: "
                                         rf"\['conv1\.weight'.*\(\+{R50_KEYS - 10} more\).*"
                                         r"no 'backbone\.' keys at all, only \['head\.'\]"):
        extract_backbone(tmp_path / 'head.pth', tmp_path / 'out.pth')


def test_resnet18_classifier_checkpoint(resnet18_ckpt, tmp_path):
    pattern = rf"{re.escape(str(resnet18_ckpt))}.*missing: .*'layer1\.0\.conv3\.weight'.*shape mismatches: " \
              r"\['layer1\.0\.conv1\.weight: checkpoint \(64, 64, 3, 3\) vs model \(64, 64, 1, 1\)'"
    with pytest.raises(ValueError, match=pattern):
        extract_backbone(resnet18_ckpt, tmp_path / 'out.pth')
    with pytest.raises(RuntimeError, match=rf"StrictPretrained: checkpoint {re.escape(str(resnet18_ckpt))} "
                                           r"under prefix 'backbone\.' does not match ResNet: \d+ missing"):
        resnet(strict(resnet18_ckpt)).init_weights()


def test_cifar_resnet50_checkpoint(tmp_path):
    path = tmp_path / 'cifar.pth'
    save_checkpoint({'state_dict': classifier(backbone='ResNet_CIFAR').state_dict()}, str(path))
    with pytest.raises(ValueError, match=r"1 shape mismatches: \['conv1\.weight: checkpoint \(64, 3, 3, 3\) "
                                         r"vs model \(64, 3, 7, 7\)'\]"):
        extract_backbone(path, tmp_path / 'out.pth')


def test_non_finite_weights(extracted, tmp_path):
    sd = dict(extracted[1]['state_dict'])
    sd['backbone.layer2.0.bn1.running_var'] = sd['backbone.layer2.0.bn1.running_var'].clone().fill_(float('nan'))
    torch.save({'state_dict': sd}, tmp_path / 'nan.pth')
    with pytest.raises(ValueError, match=r"1 tensors with NaN/inf: \['layer2\.0\.bn1\.running_var'\]"):
        extract_backbone(tmp_path / 'nan.pth', tmp_path / 'out.pth')


def test_wrong_prefix(extracted):
    dst, written = extracted
    with pytest.raises(RuntimeError, match=rf"{re.escape(str(dst))} under prefix 'model\.' .*{R50_KEYS} missing"
                                           r".*no key starts with the prefix"):
        resnet(strict(dst, prefix='model.')).init_weights()
    # no prefix: every key is unexpected ('backbone.conv1.weight' ...)
    with pytest.raises(RuntimeError, match=rf"prefix ''.*{R50_KEYS} unexpected: \['backbone\.conv1\.weight'"):
        resnet(strict(dst, prefix=None)).init_weights()


def test_strict_pretrained_must_be_the_only_init_cfg(extracted):
    with pytest.raises(ValueError, match=r'ResNet\.init_cfg: StrictPretrained .*Kaiming'):
        resnet([strict(extracted[0]), dict(type='Kaiming', layer='Conv2d')]).init_weights()


# CLI --------------------------------------------------------------------------------
EXTRACT = 'model_converters/extract_backbone.py'


def test_cli(source, tmp_path):
    proc = run_tool(EXTRACT, '--help')
    assert proc.returncode == 0 and '--depth' in proc.stdout and '--meta' in proc.stdout

    dst = tmp_path / 'cli.pth'
    proc = run_tool(EXTRACT, source[0], dst, '--meta', 'arm=baseline', 'wd=0.0005')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'wrote {dst}: {R50_KEYS} tensors' in proc.stdout and '"arm": "baseline"' in proc.stdout
    assert torch.load(dst)['meta']['wd'] == 0.0005

    proc = run_tool(EXTRACT, tmp_path / 'nope.pth', dst)
    assert proc.returncode == 2 and 'nope.pth' in proc.stderr


def test_cli_detector_source(detector_checkpoint, tmp_path):
    dst = tmp_path / 'cli.pth'
    proc = run_tool(EXTRACT, detector_checkpoint, dst)
    assert proc.returncode == 2
    assert f'error: checkpoint {detector_checkpoint} was trained as a RetinaNet' in proc.stderr
    assert '--allow-non-classifier-source' in proc.stderr and not dst.exists()
    proc = run_tool(EXTRACT, detector_checkpoint, dst, '--allow-non-classifier-source')
    assert proc.returncode == 0 and '"type": "RetinaNet"' in proc.stdout
