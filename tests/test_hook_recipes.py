"""FocusedDropout in the recipes researchers run, on real mmdet / mmpretrain models and Runners:
activation checkpointing, frozen stages, targets that cannot be masked, modules nobody drives.

Each case either trains correctly or stops with an error naming the module: none may run to the
end while logging "focused" and masking nothing, or masking what the log says it does not.
"""
import copy
import warnings

import pytest
import torch
import torch.utils.checkpoint as cp
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch import nn

from fdrop_mm import FocusedDropout
from fdrop_mm.focused_dropout import UndrivenFocusedDropoutWarning
from tests.conftest import classifier_cfg

FD_PLUGIN = dict(cfg=dict(type='FocusedDropout'), position='after_conv3')
LAYER3 = (False, False, True, False)


def resnet50(**kwargs) -> dict:
    """mmdet's ResNet-50 (Bottleneck, plugins=, with_cp=, frozen_stages=), narrow for CPU."""
    return dict(type='mmdet.ResNet', depth=50, num_stages=4, out_indices=(3, ), base_channels=8, **kwargs)


def fd_classifier(image_folder, work_dir, backbone: dict, hooks=(), **overrides) -> Runner:
    cfg = classifier_cfg(image_folder, work_dir, custom_hooks=list(hooks), **overrides)
    cfg['model']['backbone'] = backbone
    cfg['model']['head']['in_channels'] = 8 * 32
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'mmdet.models'], allow_failed_imports=False)
    return Runner.from_cfg(Config(cfg))


def fd_hook(**kwargs) -> dict:
    return dict(type='FocusedDropoutHook', **kwargs)


def fd_plugin_names(model: nn.Module):
    return [name for name, m in model.named_modules() if isinstance(m, FocusedDropout)]


# ------------------------------------------------------------------ activation checkpointing
class Checkpointed(nn.Module):
    """``block`` run through torch.utils.checkpoint with an explicit ``use_reentrant``."""

    def __init__(self, block: nn.Module, use_reentrant: bool):
        super().__init__()
        self.block, self.use_reentrant = block, use_reentrant

    def forward(self, x):
        return cp.checkpoint(self.block, x, use_reentrant=self.use_reentrant)


def focused_gradients(backbone: nn.Module, x: torch.Tensor, seed: int = 3):
    """One focused iteration as FocusedDropoutHook drives it (seeded γ, held after the forward)."""
    modules = [m for m in backbone.modules() if isinstance(m, FocusedDropout)]
    assert modules
    for index, module in enumerate(modules):
        module.driven, module.active = True, True
        module.seed_gamma(seed + index)
    out = backbone(x)[-1]
    for module in modules:
        module.hold_gamma()
    out.square().mean().backward()
    ratios = [m.last_keep_ratio.item() for m in modules]
    return {k: p.grad.clone() for k, p in backbone.named_parameters() if p.grad is not None}, ratios


def max_relative_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)).item() for k in a)


@pytest.mark.parametrize('checkpointing', ['mmdet with_cp', 'use_reentrant=True', 'use_reentrant=False'])
def test_checkpointed_blocks_get_the_gradients_of_plain_ones(checkpointing):
    """mmdet ResNet-50 with FD plugins after_conv3 in stage 3: with_cp=True must give the
    gradients of with_cp=False (before the fix, the recomputed forward drew another γ)."""
    torch.manual_seed(0)
    plain = DET_MODELS.build(resnet50(plugins=[dict(FD_PLUGIN, stages=LAYER3)], zero_init_residual=False))
    checkpointed = copy.deepcopy(plain)
    if checkpointing == 'mmdet with_cp':
        for m in checkpointed.modules():
            if hasattr(m, 'with_cp'):
                m.with_cp = True
    else:
        use_reentrant = checkpointing == 'use_reentrant=True'
        checkpointed.layer3 = nn.Sequential(*[Checkpointed(b, use_reentrant) for b in checkpointed.layer3])
    x = torch.randn(4, 3, 64, 64, requires_grad=True)  # with_cp checkpoints only when x needs grad
    plain.train(), checkpointed.train()
    reference, ratios = focused_gradients(plain, x)
    assert all(r < 1 for r in ratios), 'the test needs masks that drop positions'
    gradients, recomputed_ratios = focused_gradients(checkpointed, x)
    assert recomputed_ratios == ratios
    rename = {k.replace('.block.', '.'): v for k, v in gradients.items()}
    assert max_relative_difference(rename, reference) < 1e-5


class ParamsAfterTraining(Hook):
    def after_train(self, runner):
        self.params = {k: v.detach().clone() for k, v in runner.model.named_parameters()}


@pytest.mark.parametrize('hook', [fd_hook(participation=1.0),
                                  fd_hook(participation=1.0, targets=['backbone.layer3.0.conv2'])],
                         ids=['plugins', 'target inside a checkpointed block'])
def test_with_cp_trains_like_without_through_a_runner(image_folder, tmp_path, hook):
    """Same weights, seed and focused iterations: with_cp=True ends with the weights of with_cp=False."""
    plugins = [dict(FD_PLUGIN, stages=LAYER3)] if 'targets' not in hook else None
    params, keep = {}, {}
    for with_cp in (False, True):
        recorder = ParamsAfterTraining()
        runner = fd_classifier(image_folder, tmp_path / str(with_cp),
                               resnet50(plugins=plugins, with_cp=with_cp, zero_init_residual=False), [hook],
                               max_iters=2, optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)))
        runner.register_hook(recorder)
        runner.train()
        params[with_cp] = recorder.params
        keep[with_cp] = [float(v) for v in runner.message_hub.get_scalar('train/fd/keep_ratio').data[0]]
    assert keep[True] == keep[False] and len(keep[True]) == 2 and all(k < 1 for k in keep[True])
    assert max_relative_difference(params[True], params[False]) < 1e-5


# ------------------------------------------------------------------ FocusedDropout that cannot act
@pytest.mark.parametrize('backbone, hook, name', [
    (resnet50(frozen_stages=1), fd_hook(participation=1.0, targets=['backbone.layer1']), 'backbone.layer1'),
    (resnet50(frozen_stages=1, plugins=[dict(FD_PLUGIN, stages=(True, False, False, False))]),
     fd_hook(participation=1.0), 'backbone.layer1.0.focused_dropout'),
], ids=['target in a frozen stage', 'plugin in a frozen stage'])
def test_frozen_stage_is_an_error_at_the_first_focused_iteration(image_folder, tmp_path, backbone, hook, name):
    runner = fd_classifier(image_folder, tmp_path, backbone, [hook], max_iters=2)
    with pytest.raises(RuntimeError, match=rf"'{name}' is in eval mode during training.*frozen_stages"):
        runner.train()
    assert runner.iter == 0


@pytest.mark.parametrize('target, returned', [
    ('backbone', r'a tuple of 1 \(Tensor\)'),
    ('head.fc', r'a 2-D torch.float32 tensor of shape \(4, 2\)'),
])
def test_target_without_a_feature_map_fails_at_its_first_forward(image_folder, tmp_path, target, returned):
    """participation 0: the first training forward is not focused, and it must still fail."""
    runner = fd_classifier(image_folder, tmp_path, resnet50(), [fd_hook(participation=0.0, targets=[target])])
    with pytest.raises(TypeError, match=rf"targets entry '{target}' returned {returned}"):
        runner.train()
    assert runner.iter == 0


def test_target_called_several_times_per_forward_is_an_error(image_folder, tmp_path):
    runner = fd_classifier(image_folder, tmp_path, resnet50(),
                           [fd_hook(participation=0.0, targets=['backbone.layer3.0.relu'])])
    with pytest.raises(RuntimeError, match=r"'backbone.layer3.0.relu' ran a second time in one training iteration"):
        runner.train()
    assert runner.iter == 0


class SpareFocusedDropout(Hook):
    """Adds a FocusedDropout module in a branch the forward never takes (an unused auxiliary head's)."""
    priority = 'VERY_HIGH'  # before FocusedDropoutHook collects the model's modules

    def before_train(self, runner):
        runner.model.backbone.spare = FocusedDropout()


def test_a_driven_module_that_did_not_run_in_a_focused_iteration_is_an_error(image_folder, tmp_path):
    runner = fd_classifier(image_folder, tmp_path, resnet50(), [fd_hook(participation=1.0)], max_iters=2)
    runner.register_hook(SpareFocusedDropout())
    with pytest.raises(RuntimeError, match=r"FocusedDropout module 'backbone.spare' did not run in the training "
                                           r"iteration 0, a focused one"):
        runner.train()
    assert runner.iter == 0


def test_zero_initialised_residual_keeps_everything_and_says_so(image_folder, tmp_path):
    """zero_init_residual=True (the default) makes norm3's output 0: a plugin after_conv3 keeps
    every position at first, and the log names the module."""
    runner = fd_classifier(image_folder, tmp_path, resnet50(plugins=[dict(FD_PLUGIN, stages=LAYER3)]),
                           [fd_hook(participation=1.0)], max_iters=2)
    runner.train()
    keep = [float(v) for v in runner.message_hub.get_scalar('train/fd/keep_ratio').data[0]]
    assert keep[0] == 1.0 and len(keep) == 2
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert "FocusedDropout module 'backbone.layer3.0.focused_dropout' kept every position at iteration 0" in log
    assert 'zero_init_residual' in log


# ------------------------------------------------------------------ modules nobody drives
class CountMasked(Hook):
    """Counts the forwards of the model's FocusedDropout modules that applied a mask (an
    inactive module returns its input itself)."""
    priority = 'LOWEST'

    def before_train(self, runner):
        self.masked = 0

        def count(module, args, output):
            self.masked += int(output is not args[0])
        for module in runner.model.modules():
            if isinstance(module, FocusedDropout):
                module.register_forward_hook(count)


@pytest.mark.parametrize('participation', [0.0, 1.0])
def test_in_model_modules_are_driven_alongside_targets(image_folder, tmp_path, participation):
    counter = CountMasked()
    backbone = resnet50(plugins=[dict(FD_PLUGIN, stages=LAYER3)], zero_init_residual=False)
    runner = fd_classifier(image_folder, tmp_path, backbone,
                           [fd_hook(participation=participation, targets=['backbone.layer2'])], max_iters=4)
    runner.register_hook(counter)
    runner.train()
    assert counter.masked == (0 if participation == 0 else 4 * 6)  # 6 Bottlenecks in layer3
    active = [float(v) for v in runner.message_hub.get_scalar('train/fd/active').data[0]]
    assert active == [participation] * 4


def test_a_module_without_a_hook_warns_at_the_first_training_forward(image_folder, tmp_path):
    backbone = resnet50(plugins=[dict(FD_PLUGIN, stages=LAYER3)])
    with pytest.warns(UndrivenFocusedDropoutWarning, match=r"no FocusedDropoutHook drives it.*custom_hooks"):
        fd_classifier(image_folder, tmp_path / 'bare', backbone, max_iters=1).train()
    with warnings.catch_warnings():
        warnings.simplefilter('error', UndrivenFocusedDropoutWarning)
        fd_classifier(image_folder, tmp_path / 'hooked', backbone, [fd_hook(participation=1.0)], max_iters=1).train()


def test_two_hooks_are_an_error(image_folder, tmp_path):
    runner = fd_classifier(image_folder, tmp_path, resnet50(),
                           [fd_hook(targets=['backbone.layer3']), fd_hook(targets=['backbone.layer2'])])
    with pytest.raises(ValueError, match=r'2 FocusedDropoutHooks.*x4'):
        runner.train()


# ------------------------------------------------------------------ settings that name no field
@pytest.mark.parametrize('kwargs, field', [
    (dict(gamma_range=0.5), 'gamma_range'),
    (dict(gamma_range=(0.3, )), 'gamma_range'),
    (dict(gamma_range='0.3,0.6'), 'gamma_range'),
    (dict(seed=1.7), 'seed'),
    (dict(seed=True), 'seed'),
    (dict(participation='0.1'), 'participation'),
    (dict(weight_decay_multiplier=None), 'weight_decay_multiplier'),
    (dict(targets=[3]), 'targets'),
])
def test_malformed_settings_name_their_field(kwargs, field):
    from mmengine.registry import HOOKS
    with pytest.raises((TypeError, ValueError), match=field):
        HOOKS.build(fd_hook(**kwargs))
    if 'gamma_range' in kwargs:
        with pytest.raises(TypeError, match=field):
            FocusedDropout(**kwargs)
