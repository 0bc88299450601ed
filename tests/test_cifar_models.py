"""The paper's CIFAR networks and compared regularisers (§5) inside real mmpretrain classifiers."""
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from fdrop_mm import FocusedDropout, focused_mask
from fdrop_mm.models.backbones.cifar import PENULTIMATE_STAGE
from tests.conftest import classifier_cfg

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')


def classifier(backbone: dict, num_classes: int = 10):
    """An mmpretrain ImageClassifier with the backbone, GAP and a linear head, built from a config."""
    out_channels = MODELS.build(backbone).out_channels
    return MODELS.build(dict(
        type='ImageClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=out_channels,
                  loss=dict(type='CrossEntropyLoss'))))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# Published parameter counts (10 classes): He et al. 2016 Table 6, Huang et al. 2017 Table 2,
# Zagoruyko & Komodakis 2016 Table 4; VGG-19-BN with a linear head on CIFAR ≈ 20.0 M.
PUBLISHED = [
    (dict(type='CifarResNet', depth=20), 0.27e6, (64, 8, 8)),
    (dict(type='CifarResNet', depth=56), 0.85e6, (64, 8, 8)),
    (dict(type='CifarResNet', depth=110), 1.7e6, (64, 8, 8)),
    (dict(type='CifarVGG', depth=19), 20.0e6, (512, 1, 1)),
    (dict(type='CifarDenseNet', depth=100, growth_rate=12), 0.8e6, (342, 8, 8)),
    (dict(type='CifarWideResNet', depth=28, widen_factor=10), 36.5e6, (640, 8, 8)),
]


@pytest.mark.parametrize('backbone, published, feature_shape', PUBLISHED,
                         ids=['resnet20', 'resnet56', 'resnet110', 'vgg19', 'densenet100', 'wrn28-10'])
def test_parameter_count_matches_published(backbone, published, feature_shape):
    model = classifier(backbone)
    assert abs(count_parameters(model) - published) / published < 0.05
    assert model.backbone.out_channels == feature_shape[0]
    assert PENULTIMATE_STAGE[backbone['type']] == len(model.backbone.stages) - 2


# WRN-28-10's forward/backward is ~5 GFLOPs per image: the same code at widen_factor=1 is checked.
FORWARD = [(cfg, shape) for cfg, _, shape in PUBLISHED if cfg['type'] != 'CifarWideResNet']
FORWARD.append((dict(type='CifarWideResNet', depth=28, widen_factor=1), (64, 8, 8)))


@pytest.mark.parametrize('backbone, feature_shape', FORWARD,
                         ids=['resnet20', 'resnet56', 'resnet110', 'vgg19', 'densenet100', 'wrn28-1'])
def test_forward_backward_at_cifar_size(backbone, feature_shape):
    model = classifier(backbone)
    model.train()
    stage_sizes = []
    for stage in model.backbone.stages:
        stage.register_forward_hook(lambda module, args, out: stage_sizes.append(out.shape[-1]))
    images = torch.randn(2, 3, 32, 32)
    samples = [DataSample().set_gt_label(label) for label in (3, 7)]
    losses = model(images, samples, mode='loss')
    losses['loss'].backward()
    assert torch.isfinite(losses['loss'])
    # each group ends at its own resolution: 32, 16, 8 (VGG: ..., 4, 2, then the final max-pool)
    assert stage_sizes == [32 >> i for i in range(len(model.backbone.stages))]
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, f'parameters without gradient: {unused}'
    with torch.no_grad():
        assert tuple(model.backbone(images)[0].shape) == (2, ) + feature_shape
        assert tuple(model(images, mode='tensor').shape) == (2, 10)


# The paper's positions (§5): DropBlock on the outputs of the first two groups, the others on the
# output of the penultimate group (stage 1 of CifarResNet).
REGULARISERS = {
    'dropout': (dict(type='Dropout', drop_prob=0.2), (1, )),
    'spatial_dropout': (dict(type='SpatialDropout', p=0.2), (1, )),
    'dropblock': (dict(type='DropBlock2d', drop_prob=0.2, block_size=5), (0, 1)),
    'focused_dropout': (dict(type='FocusedDropout', gamma_range=(0.5, 0.5)), (1, )),
}


def regularised_resnet20(name: str):
    cfg, after_stages = REGULARISERS[name]
    return classifier(dict(type='CifarResNet', depth=20,
                           stage_regularizer=dict(cfg=cfg, after_stages=after_stages)))


def record_regulariser_io(model) -> dict:
    """Each stage regulariser's (input, output) of its latest forward, by stage index."""
    records = {}
    for index, module in model.backbone.stage_regularizers.items():
        module.register_forward_hook(
            lambda m, args, out, index=index: records.__setitem__(index, (args[0].detach(), out.detach())))
    return records


def dropped_fraction(inputs, outputs) -> float:
    """Fraction of the non-zero input units that the regulariser set to zero."""
    nonzero = inputs != 0
    return float(((outputs == 0) & nonzero).sum() / nonzero.sum())


@pytest.mark.parametrize('name', list(REGULARISERS))
def test_regulariser_drops_in_training_at_the_papers_position(name):
    torch.manual_seed(0)
    model = regularised_resnet20(name)
    _, after_stages = REGULARISERS[name]
    assert list(model.backbone.stage_regularizers) == [str(i) for i in after_stages]
    records = record_regulariser_io(model)
    model.train()
    model(torch.randn(8, 3, 32, 32), mode='tensor')
    assert sorted(records) == [str(i) for i in after_stages]
    for index, (inputs, outputs) in records.items():
        fraction = dropped_fraction(inputs, outputs)
        kept = outputs != 0
        if name == 'dropout':  # element-wise at rate p, kept units scaled by 1 / (1 - p)
            assert abs(fraction - 0.2) < 0.03
            torch.testing.assert_close(outputs[kept], inputs[kept] / 0.8)
        elif name == 'spatial_dropout':  # whole channels of a sample
            assert 0.1 < fraction < 0.3
            channel_dropped = (outputs == 0).flatten(2).all(dim=2)
            channel_live = (inputs != 0).flatten(2).any(dim=2)
            assert torch.equal((outputs != 0).flatten(2).any(dim=2), channel_live & ~channel_dropped)
        elif name == 'dropblock':  # square blocks; overlaps and borders push the rate above p
            assert 0.15 < fraction < 0.35, (index, fraction)
            assert not torch.equal((outputs == 0)[:, 0], (outputs == 0)[:, 1])  # a mask per channel
        else:  # FocusedDropout: the focused-area mask of this very input, shared by all channels
            torch.testing.assert_close(outputs, inputs * focused_mask(inputs, 0.5), rtol=0, atol=0)
            assert 0.1 < fraction < 0.99


@pytest.mark.parametrize('name', list(REGULARISERS))
def test_regulariser_is_identity_in_eval(name):
    torch.manual_seed(0)
    model = regularised_resnet20(name)
    plain = classifier(dict(type='CifarResNet', depth=20))
    plain.load_state_dict(model.state_dict())  # strict: the regularisers hold no state
    images = torch.randn(4, 3, 32, 32)
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(model(images, mode='tensor'), plain(images, mode='tensor'))


def test_focused_dropout_hook_drives_the_stage_regulariser_in_a_runner(image_folder, tmp_path):
    """A real Runner: FocusedDropoutHook (targets=None) finds the backbone's FocusedDropout and
    switches it on for every step at participation 1, off after each step."""
    cfg = classifier_cfg(
        image_folder, tmp_path / 'work', max_iters=3,
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='CifarResNet', depth=20, stage_regularizer=dict(
                cfg=dict(type='FocusedDropout'), after_stages=(PENULTIMATE_STAGE['CifarResNet'], ))),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
                      loss=dict(type='CrossEntropyLoss')),
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=2,
                                   mean=[127.5] * 3, std=[64.0] * 3)),
        custom_hooks=[dict(type='FocusedDropoutHook', participation=1.0)])
    runner = Runner.from_cfg(Config(cfg))
    module = runner.model.backbone.stage_regularizers['1']
    assert isinstance(module, FocusedDropout)
    calls = []
    module.register_forward_hook(
        lambda m, args, out: calls.append((m.active, dropped_fraction(args[0], out.detach()))))
    runner.train()
    assert len(calls) == 3
    assert all(active and 0 < fraction < 1 for active, fraction in calls), calls
    assert module.active is False  # the hook switches it off after every step
    assert runner.message_hub.get_scalar('train/fd/active').current() == 1.0
    assert 0 < runner.message_hub.get_scalar('train/fd/keep_ratio').current() < 1


@pytest.mark.parametrize('backbone, message', [
    (dict(type='CifarResNet', depth=21), r'depth must be 6n \+ 2'),
    (dict(type='CifarVGG', depth=18), 'depth must be one of'),
    (dict(type='CifarDenseNet', depth=101), r'depth must be 6n \+ 4'),
    (dict(type='CifarWideResNet', widen_factor=0), 'widen_factor must be a positive integer'),
    (dict(type='CifarResNet', depth=20, stage_regularizer=dict(cfg=dict(type='Dropout'))),
     "exactly the keys 'cfg' and 'after_stages'"),
    (dict(type='CifarResNet', depth=20, stage_regularizer=dict(cfg=dict(type='Dropout'), after_stages=(3, ))),
     r'after_stages must be a non-empty sequence of distinct stage indices in 0\.\.2'),
    (dict(type='CifarResNet', depth=20, stage_regularizer=dict(cfg=dict(p=0.1), after_stages=(1, ))),
     "stage_regularizer.cfg must be a module config with a 'type'"),
    (dict(type='CifarResNet', depth=20, stage_regularizer=dict(
        cfg=dict(type='DropBlock2d', drop_prob=0.0, block_size=5), after_stages=(0, ))),
     r'drop_prob must lie in \(0, 1\]'),
    (dict(type='CifarResNet', depth=20, stage_regularizer=dict(
        cfg=dict(type='DropBlock2d', keep_prob=0.9, block_size=5), after_stages=(0, ))),
     "unexpected keyword argument 'keep_prob'"),
])
def test_bad_config_is_an_error_naming_the_field(backbone, message):
    with pytest.raises((ValueError, TypeError), match=message):
        MODELS.build(backbone)
