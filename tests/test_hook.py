"""FocusedDropoutHook in real mmengine Runners: decisions, weight decay, targets, resume, DDP."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from fdrop_mm import FocusedDropout, FocusedDropoutHook
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


def test_nothing_to_drive_lists_modules(image_folder, tmp_path):
    with pytest.raises(ValueError, match=r"nothing to drive.*'backbone\.layer3'"):
        train(image_folder, tmp_path, [fd_hook()], max_iters=1)


def test_decisions_logging_and_keep_ratio(image_folder, tmp_path):
    runner = train(image_folder, tmp_path, [fd_hook(participation=0.5, targets=['backbone.layer3'])])
    hook = the_hook(runner)
    active = scalar_history(runner, 'train/fd/active')
    assert active == [float(hook.is_focused_step(i)) for i in range(20)]
    assert 0 < sum(active) < 20
    decay = scalar_history(runner, 'train/fd/weight_decay')
    assert decay == [pytest.approx(5e-4 * (2 if a else 1)) for a in active]
    keep = scalar_history(runner, 'train/fd/keep_ratio')
    assert len(keep) == sum(active) and all(0 < k <= 1 for k in keep)
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'fd/active' in log and 'fd/weight_decay' in log


def test_decision_is_per_optimizer_step_under_accumulation(image_folder, tmp_path):
    runner = train(image_folder, tmp_path, [fd_hook(participation=0.5, targets=['backbone.layer3'])],
                   optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, weight_decay=5e-4),
                                      accumulative_counts=2))
    active = scalar_history(runner, 'train/fd/active')
    hook = the_hook(runner)
    assert active == [float(hook.is_focused_step(i // 2)) for i in range(20)]


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
    for step, (_, before, _, after) in enumerate(recorder.records):
        if hook.is_focused_step(step):
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


def test_drives_plugin_modules_and_rejects_conflicting_settings(image_folder, tmp_path):
    backbone = dict(type='mmdet.ResNet', depth=50, num_stages=4, out_indices=(3, ), base_channels=8,
                    plugins=[dict(cfg=dict(type='FocusedDropout'), stages=(False, False, True, False),
                                  position='after_conv3')])
    cfg = classifier_cfg(image_folder, tmp_path, max_iters=6)
    cfg['model']['backbone'] = backbone
    cfg['model']['head']['in_channels'] = 256
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'mmdet.models'], allow_failed_imports=False)
    runner = Runner.from_cfg(Config({**cfg, 'custom_hooks': [fd_hook(participation=0.5)]}))
    runner.train()
    hook = the_hook(runner)
    active = scalar_history(runner, 'train/fd/active')
    assert active == [float(hook.is_focused_step(i)) for i in range(6)]
    assert len(scalar_history(runner, 'train/fd/keep_ratio')) == sum(active)
    plugins = [m for m in runner.model.modules() if isinstance(m, FocusedDropout)]
    assert len(plugins) == 6 and not any(m.active for m in plugins)

    conflicting = Runner.from_cfg(Config({**cfg, 'work_dir': str(tmp_path / 'x'),
                                          'custom_hooks': [fd_hook(gamma_range=(0.6, 0.9))]}))
    with pytest.raises(ValueError, match=r"layer3\.0\.focused_dropout.*gamma_range"):
        conflicting.train()


def optimizer_ready_runner(image_folder, tmp_path, **hook_kwargs):
    runner = Runner.from_cfg(Config(classifier_cfg(
        image_folder, tmp_path, optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-2),
                                                   paramwise_cfg=dict(norm_decay_mult=0.0)))))
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    hook = FocusedDropoutHook(targets=['backbone.layer3'], **hook_kwargs)
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
    runner = train(image_folder, tmp_path, [fd_hook(participation=0.5, targets=['backbone.layer3'], seed=5)],
                   max_iters=2, default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2,
                                                                   by_epoch=False)))
    meta = torch.load(tmp_path / 'iter_2.pth', map_location='cpu')['meta']
    assert meta['focused_dropout'] == dict(
        type='FocusedDropoutHook', participation=0.5, weight_decay_multiplier=2.0, targets=['backbone.layer3'],
        gamma_range=(0.3, 0.6), mode='focused', seed=5, modules=['backbone.layer3'])
    optimizer = runner.optim_wrapper.optimizer
    assert 'step' not in vars(optimizer), 'the weight-decay wrapper is removed after training'
