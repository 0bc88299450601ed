"""FocusedDropoutHook in real mmengine Runners: decisions, weight decay, targets, resume, DDP."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, MODELS, init_default_scope
from mmengine.runner import Runner

from fdrop_mm import FocusedDropout, FocusedDropoutHook
from fdrop_mm.engine.hooks.focused_dropout_hook import penultimate_stage
from tests.conftest import DUMP_HOOK, REPO, classifier_cfg, free_port


def fd_hook(**kwargs):
    return dict(type='FocusedDropoutHook', **kwargs)


def train(image_folder, work_dir, hooks, **cfg):
    runner = Runner.from_cfg(Config(classifier_cfg(image_folder, work_dir, custom_hooks=hooks, **cfg)))
    runner.train()
    return runner


def scalar_history(runner, key):
    return [float(v) for v in runner.message_hub.get_scalar(key).data[0]]


def the_hook(runner) -> FocusedDropoutHook:
    return next(h for h in runner.hooks if isinstance(h, FocusedDropoutHook))


@pytest.mark.parametrize('kwargs, field', [
    (dict(participation=1.5), 'participation'),
    (dict(participation=-0.1), 'participation'),
    (dict(weight_decay_multiplier=-1), 'weight_decay_multiplier'),
    (dict(weight_decay_multiplier=float('nan')), 'weight_decay_multiplier'),
    (dict(weight_decay_multiplier=float('inf')), 'weight_decay_multiplier'),
    (dict(seed=-1), 'seed'),
    (dict(seed=2 ** 63), 'seed'),
    (dict(targets=['backbone.layer3', 'backbone.layer3']), 'targets'),
    (dict(targets=['backbone.layer3', 'backbone.layer3.1']), 'allow_nested_targets'),
    (dict(mode='random'), 'mode'),
    (dict(targets='backbone.layer3'), 'targets'),
    (dict(targets=[]), 'targets'),
    (dict(gamma_range=(0.7, 0.2)), 'gamma_range'),
    (dict(mode='weight_decay_only', targets=['backbone.layer3']), 'targets'),
])
def test_bad_values_fail_when_the_hook_is_built(kwargs, field):
    with pytest.raises(ValueError, match=field):
        HOOKS.build(fd_hook(**kwargs))


def test_unknown_target_lists_candidates(image_folder, tmp_path):
    with pytest.raises(ValueError, match=r"backbone\.layer9.*closest: \['backbone\.layer"):
        train(image_folder, tmp_path, [fd_hook(targets=['backbone.layer9'])], max_iters=1)


def test_without_targets_fd_goes_on_the_penultimate_stage(image_folder, tmp_path):
    """The paper's default (§5), found from the model: a 4-stage ResNet's layer3, masked on the
    focused iterations (counted by a forward hook on layer3, not by the hook's own state)."""
    recorder = RecordLayer3()
    runner = Runner.from_cfg(Config(classifier_cfg(image_folder, tmp_path, max_iters=10,
                                                   custom_hooks=[fd_hook(participation=0.5)])))
    runner.register_hook(recorder)
    runner.train()
    masked = [not torch.equal(after, before) for _, before, _, after in recorder.records]
    assert 0 < sum(masked) < 10
    assert scalar_history(runner, 'train/fd/active') == [float(m) for m in masked]
    assert the_hook(runner).settings()['modules'] == ['backbone.layer3']
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'FD goes on the output of the penultimate stage, backbone.layer3' in log


@pytest.mark.parametrize('config, backbone, stage', [
    ('mmpretrain::resnet/resnet50_8xb32_in1k.py', 'ResNet', 'backbone.layer3'),
    ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', 'ResNet', 'backbone.layer3'),
    ('mmpretrain::convnext/convnext-tiny_32xb128_in1k.py', 'ConvNeXt', 'backbone.stages.2'),
    ('mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py', 'ResNetV1c', 'backbone.layer3'),
    ('mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py', 'ResNetV1c', 'backbone.layer3'),
    ('mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py', 'ResNet',
     'backbone.layer3'),
    ('mmaction::recognition/i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py', 'ResNet3d',
     'backbone.layer3'),
    ('mmaction::recognition/slowonly/slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb.py',
     'ResNet3dSlowOnly', 'backbone.layer3'),
    ('mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py', 'ResNet',
     'backbone.layer3'),
])
def test_penultimate_stage_of_stock_models(config, backbone, stage):
    """The stage is found from the built model of each package's own config (no pretrained
    weights: nothing to download)."""
    scope, path = config.split('::')
    cfg = Config.fromfile(str(Path(importlib.import_module(scope).__file__).parent / '.mim/configs' / path))
    for model in (cfg.model, cfg.model.backbone):
        for key in ('pretrained', 'init_cfg'):
            if key in model:
                model[key] = None
    init_default_scope(scope)
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == backbone
    assert penultimate_stage(model) == stage


def test_no_recognisable_stages_is_an_error_naming_candidates(image_folder, tmp_path):
    cfg = classifier_cfg(image_folder, tmp_path, max_iters=1, custom_hooks=[fd_hook()])
    cfg['model']['backbone'] = dict(type='LeNet5', num_classes=-1)
    cfg['model']['head']['in_channels'] = 120
    with pytest.raises(ValueError, match=r"no targets.*finds no backbone stages.*set targets=.*'backbone\.features'"):
        Runner.from_cfg(Config(cfg)).train()


class RecordLayer3(Hook):
    """Records backbone.layer3's output before and after the FocusedDropoutHook's forward hook."""
    priority = 'LOW'  # before_train after FocusedDropoutHook's, so 'after' sees its output

    def __init__(self):
        self.records = []

    def before_train(self, runner):
        layer3 = runner.model.backbone.layer3
        layer3.register_forward_hook(lambda m, a, out: self.records.append(['before', out.detach()]),
                                     prepend=True)
        layer3.register_forward_hook(lambda m, a, out: self.records[-1].extend(['after', out.detach()]))


def test_targets_mask_on_focused_iterations_only(image_folder, tmp_path):
    recorder = RecordLayer3()
    runner = Runner.from_cfg(Config(classifier_cfg(
        image_folder, tmp_path, max_iters=10,
        custom_hooks=[fd_hook(participation=0.5, targets=['backbone.layer3'])])))
    runner.register_hook(recorder)
    runner.train()
    hook = the_hook(runner)
    assert len(recorder.records) == 10
    active = scalar_history(runner, 'train/fd/active')
    assert 0 < sum(active) < 10
    for step, (_, before, _, after) in enumerate(recorder.records):
        if active[step]:
            kept = after != 0
            assert torch.equal(after[kept], before[kept])
            shared = kept.any(dim=1, keepdim=True).expand_as(kept)  # one spatial mask for all channels
            assert torch.equal(after, before * shared)
            assert not shared.all()
        else:
            assert torch.equal(after, before)
    # in eval the target is untouched even if the hook marks the step focused
    runner.model.eval()
    for module in hook._modules:
        module.active = True
    with torch.no_grad():
        runner.model(torch.randn(2, 3, 32, 32), mode='tensor')
    _, before, _, after = recorder.records[-1]
    assert torch.equal(after, before)


class MasksPerIteration(Hook):
    """Per training iteration, the forwards of the model's FocusedDropout modules that masked
    (one the hook does not switch on returns its input itself)."""
    priority = 'LOWEST'

    def before_train(self, runner):
        self.masked = []
        for module in runner.model.modules():
            if isinstance(module, FocusedDropout):
                module.register_forward_hook(lambda m, args, out: self._count(out is not args[0]))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.masked.append(0)

    def _count(self, masked: bool):
        self.masked[-1] += masked


def test_drives_plugin_modules_and_rejects_conflicting_settings(image_folder, tmp_path):
    backbone = dict(type='mmdet.ResNet', depth=50, num_stages=4, out_indices=(3, ), base_channels=8,
                    plugins=[dict(cfg=dict(type='FocusedDropout'), stages=(False, False, True, False),
                                  position='after_conv3')])
    cfg = classifier_cfg(image_folder, tmp_path, max_iters=6)
    cfg['model']['backbone'] = backbone
    cfg['model']['head']['in_channels'] = 256
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'mmdet.models'], allow_failed_imports=False)
    runner = Runner.from_cfg(Config({**cfg, 'custom_hooks': [fd_hook(participation=0.5)]}))
    counter = MasksPerIteration()
    runner.register_hook(counter)
    runner.train()
    plugins, masked = [m for m in runner.model.modules() if isinstance(m, FocusedDropout)], counter.masked
    assert len(plugins) == 6 and set(masked) == {0, 6}  # all six blocks of layer3, or none
    assert scalar_history(runner, 'train/fd/active') == [float(m == 6) for m in masked]
    assert len(scalar_history(runner, 'train/fd/keep_ratio')) == masked.count(6)
    assert not any(m.active for m in plugins)

    conflicting = Runner.from_cfg(Config({**cfg, 'work_dir': str(tmp_path / 'x'),
                                          'custom_hooks': [fd_hook(gamma_range=(0.6, 0.9))]}))
    with pytest.raises(ValueError, match=r"layer3\.0\.focused_dropout.*gamma_range"):
        conflicting.train()


def optimizer_ready_runner(image_folder, tmp_path, targets=('backbone.layer3', ), **hook_kwargs):
    runner = Runner.from_cfg(Config(classifier_cfg(
        image_folder, tmp_path, optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-2),
                                                   paramwise_cfg=dict(norm_decay_mult=0.0)))))
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    hook = FocusedDropoutHook(targets=targets and list(targets), **hook_kwargs)
    hook.before_train(runner)
    return runner, hook


@pytest.mark.parametrize('participation, factor', [(1.0, 3.0), (0.0, 1.0)])
def test_weight_decay_multiplied_for_the_step_and_restored(image_folder, tmp_path, participation, factor):
    runner, hook = optimizer_ready_runner(image_folder, tmp_path, participation=participation,
                                          weight_decay_multiplier=3.0)
    optim = runner.optim_wrapper  # its param_groups add a logging-only group: use the optimizer's
    hook.before_train_iter(runner, 0)
    base = [g['weight_decay'] for g in optim.optimizer.param_groups]
    assert 0.0 in base and 1e-2 in base  # norms have no decay
    before = [(p, p.detach().clone(), g['weight_decay']) for g in optim.optimizer.param_groups for p in g['params']]
    for p, _, _ in before:
        p.grad = torch.zeros_like(p)
    optim.step()
    for p, old, decay in before:
        # SGD with a zero gradient: p <- p - lr * weight_decay * p
        torch.testing.assert_close(p.detach(), old * (1 - 0.1 * decay * factor), rtol=1e-6, atol=1e-7)
    assert [g['weight_decay'] for g in optim.optimizer.param_groups] == base


def test_weight_decay_restored_when_the_step_raises(image_folder, tmp_path):
    runner, hook = optimizer_ready_runner(image_folder, tmp_path, participation=1.0,
                                          weight_decay_multiplier=3.0)
    optim = runner.optim_wrapper
    hook.before_train_iter(runner, 0)
    base = [g['weight_decay'] for g in optim.optimizer.param_groups]
    seen = []

    def fail_inside_step(optimizer, args, kwargs):
        seen.append([g['weight_decay'] for g in optimizer.param_groups])
        raise RuntimeError('step failed')

    optim.optimizer.register_step_pre_hook(fail_inside_step)
    with pytest.raises(RuntimeError, match='step failed'):
        optim.step()
    assert len(seen) == 1 and seen[0] == pytest.approx([3 * d for d in base])  # magnified inside the step
    assert [g['weight_decay'] for g in optim.optimizer.param_groups] == base


def test_a_step_the_grad_scaler_skips_logs_the_base_weight_decay(image_folder, tmp_path):
    """torch's GradScaler skips optimizer.step() when a gradient is not finite: nothing was
    magnified, and fd/weight_decay says so; the step it takes next logs the magnified value."""
    runner, hook = optimizer_ready_runner(image_folder, tmp_path, targets=None, mode='weight_decay_only',
                                          participation=1.0, weight_decay_multiplier=3.0)
    optimizer = runner.optim_wrapper.optimizer
    params = [p for g in optimizer.param_groups for p in g['params']]
    logged = []
    for gradient in (float('inf'), 0.0):
        hook.before_train_iter(runner, 0)
        before = [p.detach().clone() for p in params]
        scaler = torch.amp.GradScaler('cpu')
        scaler.scale(torch.ones(()))
        for p in params:
            p.grad = torch.full_like(p, gradient)
        scaler.step(optimizer)
        hook.after_train_iter(runner, 0)
        logged.append(runner.message_hub.get_scalar('train/fd/weight_decay').current())
        changed = any(not torch.equal(p, b) for p, b in zip(params, before))
        assert changed == (gradient == 0.0)  # skipped with an inf gradient, weight decay only without
    assert logged == [pytest.approx(1e-2), pytest.approx(3e-2)]


def test_nested_targets_when_allowed_log_each_modules_keep_ratio(image_folder, tmp_path):
    runner = train(image_folder, tmp_path, [fd_hook(participation=1.0, allow_nested_targets=True,
                                                    targets=['backbone.layer3', 'backbone.layer3.1'])], max_iters=2)
    outer = scalar_history(runner, 'train/fd/keep_ratio/backbone.layer3')
    inner = scalar_history(runner, 'train/fd/keep_ratio/backbone.layer3.1')
    # layer3.1 is layer3's last block: the outer mask acts on the inner one's output, keeping a subset
    assert len(outer) == len(inner) == 2 and all(o <= i < 1 for o, i in zip(outer, inner))
    assert 'train/fd/keep_ratio' not in runner.message_hub.log_scalars


def test_resume_repeats_the_uninterrupted_sequence(image_folder, tmp_path):
    hooks = [fd_hook(participation=0.5, targets=['backbone.layer3'])]
    ckpt = dict(type='CheckpointHook', interval=6, by_epoch=False)
    full = train(image_folder, tmp_path / 'full', hooks, max_iters=12)
    train(image_folder, tmp_path / 'part', hooks, max_iters=6,
          default_hooks=dict(checkpoint=ckpt))
    resumed = train(image_folder, tmp_path / 'resumed', hooks, max_iters=12, resume=True,
                    load_from=str(tmp_path / 'part' / 'iter_6.pth'))
    expected = scalar_history(full, 'train/fd/active')
    assert 0 < sum(expected[6:]) < 6
    assert scalar_history(resumed, 'train/fd/active') == expected
    assert 'with other settings' not in next((tmp_path / 'resumed').glob('*/*.log')).read_text()
    history = torch.load(tmp_path / 'resumed' / 'iter_12.pth', map_location='cpu')['meta']['focused_dropout_history']
    assert [h['from_iter'] for h in history] == [0]  # the same settings throughout


@pytest.mark.slow
def test_two_process_ddp_keeps_replicas_identical(image_folder, tmp_path):
    (tmp_path / 'dump_per_rank.py').write_text(DUMP_HOOK)
    cfg = classifier_cfg(image_folder, tmp_path / 'work', custom_hooks=[
        fd_hook(participation=0.5, weight_decay_multiplier=2.0, targets=['backbone.layer3']),
        dict(type='DumpPerRank')])
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'dump_per_rank'], allow_failed_imports=False)
    cfg['randomness'] = dict(seed=0, diff_rank_seed=True)  # ranks draw different γ and data order
    Config(cfg).dump(str(tmp_path / 'ddp_cfg.py'))
    env = {**os.environ, 'PYTHON': sys.executable, 'PORT': str(free_port()),
           'PYTHONPATH': str(tmp_path)}
    proc = subprocess.run(['bash', str(REPO / 'tools/dist_train.sh'), str(tmp_path / 'ddp_cfg.py'), '2'],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / 'work' / f'rank{r}.pt') for r in (0, 1)]
    assert ranks[0]['active'] == ranks[1]['active']
    assert 0 < sum(ranks[0]['active']) < 20
    for name, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][name]), name


def test_checkpoint_meta_records_the_settings(image_folder, tmp_path):
    runner = Runner.from_cfg(Config(classifier_cfg(
        image_folder, tmp_path, max_iters=2,
        custom_hooks=[fd_hook(participation=0.5, targets=['backbone.layer3'], seed=5)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)))))
    settings = dict(type='FocusedDropoutHook', participation=0.5, weight_decay_multiplier=2.0,
                    targets=['backbone.layer3'], gamma_range=(0.3, 0.6), mode='focused', seed=5,
                    modules=['backbone.layer3'])
    saved = {}
    for when in ('before', 'after'):  # train(): the modules are known from before_train on, and kept
        runner.save_checkpoint(str(tmp_path), f'{when}.pth', save_optimizer=False, save_param_scheduler=False)
        saved[when] = torch.load(tmp_path / f'{when}.pth', map_location='cpu')['meta']
        if when == 'before':
            runner.train()
    assert saved['before']['focused_dropout'] == dict(settings, modules=None)
    meta = torch.load(tmp_path / 'iter_2.pth', map_location='cpu')['meta']
    for meta in (meta, saved['after']):
        assert meta['focused_dropout'] == settings
        assert meta['focused_dropout_history'] == [dict(from_iter=0, settings=settings)]
    optimizer = runner.optim_wrapper.optimizer
    assert 'step' not in vars(optimizer), 'the weight-decay wrapper is removed after training'
