"""FocusedDropoutHook checked from what the model and the optimizers did, not from the hook: masks
counted by forward hooks, the weight decay each step applied solved from the parameters' SGD update
(p' = p - lr (g + wd p)), decisions against binomial bounds. Covers Runners built in Python,
accumulation counts on built wrappers, two optimizers, a train_step that calls ``self.loss``
directly (frozen stage, with_cp), and resuming with other settings or without the hook."""
import functools
import math

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner import Runner
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS as CLS_MODELS

from fdrop_mm import FocusedDropout, FocusedDropoutHook
from fdrop_mm.apis import train as train_from_config
from fdrop_mm.transfer import extract_backbone
from tests.conftest import classifier_cfg

LR, DECAY = 0.1, 1e-2
PLAIN_SGD = dict(optimizer=dict(type='SGD', lr=LR, weight_decay=DECAY))  # no momentum: the update is solvable


def fd_hook(**kwargs) -> dict:
    return dict(type='FocusedDropoutHook', **kwargs)


def scalars(runner, key):
    return [float(v) for v in runner.message_hub.get_scalar(key).data[0]]


def within_4_sigma(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p))


@CLS_MODELS.register_module(force=True)
class DirectLossClassifier(ImageClassifier):
    """A train_step that calls ``self.loss`` directly, never ``model(...)``, as research and
    GAN-style models do; with several optimizers it steps each one itself."""

    def train_step(self, data, optim_wrapper):
        data = self.data_preprocessor(data, True)
        loss, log_vars = self.parse_losses(self.loss(**data))
        if isinstance(optim_wrapper, OptimWrapperDict):
            loss.backward()
            for wrapper in optim_wrapper.values():
                wrapper.step()
                wrapper.zero_grad()
        else:
            optim_wrapper.update_params(loss)
        return log_vars


class Observed(Hook):
    """Per training iteration: ``masked``, how many FocusedDropout forwards replaced their input
    (one the hook does not switch on returns its input itself), and ``decay``, for each optimizer
    that stepped, the weight decay the step applied, solved from its SGD update."""
    priority = 'LOW'  # before_train after FocusedDropoutHook's: its target hook is in place

    def __init__(self, target=None):
        self.target, self.masked, self.decay, self._seen, self._before = target, [], [], [], []

    def before_train(self, runner):
        if self.target:
            module = runner.model.get_submodule(self.target)
            module.register_forward_hook(lambda m, a, out: self._seen.append(out), prepend=True)
            module.register_forward_hook(lambda m, a, out: self._count(out is not self._seen.pop()))
        for module in runner.model.modules():
            if isinstance(module, FocusedDropout):
                module.register_forward_hook(lambda m, a, out: self._count(out is not a[0]))
        wrappers = runner.optim_wrapper
        for name, wrapper in (wrappers.items() if isinstance(wrappers, OptimWrapperDict)
                              else [('optim_wrapper', wrappers)]):
            wrapper.optimizer.register_step_pre_hook(self._before_step)
            wrapper.optimizer.register_step_post_hook(functools.partial(self._after_step, name))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.masked.append(0)
        self.decay.append({})

    def _count(self, masked: bool):
        if self.masked:
            self.masked[-1] += masked

    def _before_step(self, optimizer, args, kwargs):
        self._before = [(p, p.detach().double().clone(), p.grad.detach().double().clone(), group['lr'])
                        for group in optimizer.param_groups for p in group['params'] if p.grad is not None]

    def _after_step(self, name, optimizer, args, kwargs):
        residual = sum((((old - p.detach().double()) / lr - grad) * old).sum() for p, old, grad, lr in self._before)
        self.decay[-1][name] = float(residual / sum((old * old).sum() for _, old, _, _ in self._before))


def from_cfg(image_folder, work_dir, hooks, observed=None, **overrides) -> Runner:
    runner = Runner.from_cfg(Config(classifier_cfg(image_folder, work_dir, custom_hooks=hooks, **overrides)))
    if observed is not None:
        runner.register_hook(observed)
    return runner


def built_in_python(image_folder, work_dir, hooks, optim_wrapper, model=None, **overrides) -> Runner:
    """``Runner(...)`` without a config, as a researcher writes it: ``runner.cfg`` is empty."""
    cfg = classifier_cfg(image_folder, work_dir, custom_hooks=hooks, **overrides)  # deep-copies its arguments
    del cfg['custom_imports']
    cfg['optim_wrapper'] = optim_wrapper
    if model is not None:
        cfg['model'] = model
    return Runner(**cfg)


def build_classifier(image_folder, tmp_path, **model):
    cfg = classifier_cfg(image_folder, tmp_path)['model']
    return CLS_MODELS.build({**cfg, **model})


# ------------------------------------------------------------------ decisions, masks, weight decay
def test_masks_logs_and_applied_weight_decay_agree_step_by_step(image_folder, tmp_path):
    observed = Observed('backbone.layer3')
    runner = from_cfg(image_folder, tmp_path, [fd_hook(participation=0.5, targets=['backbone.layer3'])],
                      observed, optim_wrapper=PLAIN_SGD)
    runner.train()
    masked = observed.masked
    assert set(masked) <= {0, 1} and within_4_sigma(sum(masked), 20, 0.5)
    assert scalars(runner, 'train/fd/active') == [float(m) for m in masked]
    applied = [d['optim_wrapper'] for d in observed.decay]
    assert applied == [pytest.approx(DECAY * (2 if m else 1), rel=1e-3) for m in masked]
    assert scalars(runner, 'train/fd/weight_decay') == [pytest.approx(d, rel=1e-3) for d in applied]
    keep = scalars(runner, 'train/fd/keep_ratio')
    assert len(keep) == sum(masked) and all(0 < k < 1 for k in keep)
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'fd/active' in log and 'fd/weight_decay' in log


@pytest.mark.parametrize('where, counts, iters', [
    ('config', 2, 20), ('Runner keyword arguments', 3, 10), ('a built OptimWrapper', 3, 10)])
def test_one_decision_per_optimizer_step_wherever_accumulation_is_set(image_folder, tmp_path, where, counts,
                                                                      iters):
    """Every micro-batch of a step masks alike, the step applies that decision's weight decay,
    micro-batches that take no step log the base value; the last window is partial (10 = 3+3+3+1)."""
    hooks = [fd_hook(participation=0.5, targets=['backbone.layer3'])]
    observed = Observed('backbone.layer3')
    if where == 'config':
        runner = from_cfg(image_folder, tmp_path, hooks, observed, max_iters=iters,
                          optim_wrapper=dict(PLAIN_SGD, accumulative_counts=counts))
    elif where == 'Runner keyword arguments':
        runner = built_in_python(image_folder, tmp_path, hooks, dict(PLAIN_SGD, accumulative_counts=counts),
                                 max_iters=iters)
        runner.register_hook(observed)
    else:
        model = build_classifier(image_folder, tmp_path)
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR, weight_decay=DECAY),
                               accumulative_counts=counts)
        runner = built_in_python(image_folder, tmp_path, hooks, wrapper, model=model, max_iters=iters)
        runner.register_hook(observed)
    runner.train()
    windows = [observed.masked[start:start + counts] for start in range(0, iters, counts)]
    assert all(len(set(w)) == 1 for w in windows), windows
    assert 0 < sum(w[0] for w in windows) < len(windows)
    stepped = [i for i, d in enumerate(observed.decay) if d]
    assert stepped == [min(start + counts, iters) - 1 for start in range(0, iters, counts)]
    logged = scalars(runner, 'train/fd/weight_decay')
    for i, decay in enumerate(observed.decay):
        if decay:
            factor = 2 if observed.masked[i] else 1
            assert decay['optim_wrapper'] == pytest.approx(DECAY * factor, rel=1e-3)
            assert logged[i] == pytest.approx(decay['optim_wrapper'], rel=1e-3)
        else:
            assert logged[i] == DECAY  # a micro-batch: no step, no magnified weight decay


def two_optimizers(model, counts=(1, 1), decays=(DECAY, 4 * DECAY)) -> dict:
    head = list(model.neck.parameters()) + list(model.head.parameters())
    return dict(backbone=OptimWrapper(torch.optim.SGD(model.backbone.parameters(), lr=LR, weight_decay=decays[0]),
                                      accumulative_counts=counts[0]),
                head=OptimWrapper(torch.optim.SGD(head, lr=LR, weight_decay=decays[1]),
                                  accumulative_counts=counts[1]))


def test_two_optimizers_log_the_weight_decay_each_applied(image_folder, tmp_path):
    model = build_classifier(image_folder, tmp_path, type='DirectLossClassifier')
    observed = Observed('backbone.layer3')
    runner = built_in_python(image_folder, tmp_path, [fd_hook(participation=0.5, targets=['backbone.layer3'])],
                             two_optimizers(model), model=model, max_iters=10)
    runner.register_hook(observed)
    runner.train()
    assert 0 < sum(observed.masked) < 10
    for name, base in (('backbone', DECAY), ('head', 4 * DECAY)):
        applied = [d[name] for d in observed.decay]
        assert applied == [pytest.approx(base * (2 if m else 1), rel=1e-3) for m in observed.masked]
        assert scalars(runner, f'train/fd/weight_decay/{name}') == [pytest.approx(a, rel=1e-3) for a in applied]
    assert scalars(runner, 'train/fd/weight_decay') == scalars(runner, 'train/fd/weight_decay/head')  # the largest


def test_wrappers_that_accumulate_differently_are_an_error(image_folder, tmp_path):
    model = build_classifier(image_folder, tmp_path, type='DirectLossClassifier')
    runner = built_in_python(image_folder, tmp_path, [fd_hook(targets=['backbone.layer3'])],
                             two_optimizers(model, counts=(2, 3)), model=model, max_iters=6)
    with pytest.raises(ValueError, match=r"accumulate different.*'backbone': 2, 'head': 3"):
        runner.train()


@pytest.mark.parametrize('p', [0.05, 0.1, 0.5])
def test_focused_fraction_is_the_participation_and_ignores_step_parity(p):
    """20,000 decisions: the focused fraction, on all steps and on even and odd ones, within 4σ
    of p; consecutive steps are both focused with probability p² (independent draws)."""
    hook = FocusedDropoutHook(participation=p, seed=0)
    focused = np.array([hook.is_focused_step(step) for step in range(20000)])
    assert within_4_sigma(focused.sum(), focused.size, p)
    for parity in (0, 1):
        assert within_4_sigma(focused[parity::2].sum(), focused.size // 2, p)
    assert within_4_sigma((focused[0::2] & focused[1::2]).sum(), focused.size // 2, p * p)  # disjoint pairs
    other_seed = np.array([FocusedDropoutHook(participation=p, seed=1).is_focused_step(s) for s in range(20000)])
    assert within_4_sigma((focused & other_seed).sum(), focused.size, p * p)


# ------------------------------------------------------------------ a train_step that calls self.loss
def direct_loss_cfg(backbone: dict) -> dict:
    return dict(model=dict(type='DirectLossClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
                           head=dict(type='LinearClsHead', num_classes=2, in_channels=8 * 32,
                                     loss=dict(type='CrossEntropyLoss'), topk=(1, )),
                           data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=2,
                                                  mean=[127.5] * 3, std=[64.0] * 3)),
                custom_imports=dict(imports=['fdrop_mm', 'mmdet.models'], allow_failed_imports=False))


def resnet50(**kwargs) -> dict:
    return dict(type='mmdet.ResNet', depth=50, num_stages=4, out_indices=(3, ), base_channels=8, **kwargs)


def test_frozen_target_is_an_error_with_a_custom_train_step(image_folder, tmp_path):
    runner = from_cfg(image_folder, tmp_path, [fd_hook(participation=1.0, targets=['backbone.layer1'])],
                      max_iters=2, **direct_loss_cfg(resnet50(frozen_stages=1)))
    with pytest.raises(RuntimeError, match=r"'backbone.layer1' is in eval mode during training.*frozen_stages"):
        runner.train()
    assert runner.iter == 0


class ParamsAfterTraining(Hook):
    def after_train(self, runner):
        self.params = {k: v.detach().clone() for k, v in runner.model.named_parameters()}


def test_with_cp_trains_like_without_under_a_custom_train_step(image_folder, tmp_path, capsys):
    """A target inside a checkpointed Bottleneck: the forward the backward recomputes reuses the
    iteration's γ, so two focused steps end with the weights of with_cp=False."""
    params, keep = {}, {}
    for with_cp in (False, True):
        recorder = ParamsAfterTraining()
        runner = from_cfg(image_folder, tmp_path / str(with_cp),
                          [fd_hook(participation=1.0, targets=['backbone.layer3.0.conv2'])], max_iters=2,
                          optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                          **direct_loss_cfg(resnet50(with_cp=with_cp, zero_init_residual=False)))
        runner.register_hook(recorder)
        runner.train()
        params[with_cp], keep[with_cp] = recorder.params, scalars(runner, 'train/fd/keep_ratio')
    assert keep[True] == keep[False] and len(keep[True]) == 2 and all(k < 1 for k in keep[True])
    difference = max(((params[True][k] - v).abs().max() / v.abs().max().clamp_min(1e-30)).item()
                     for k, v in params[False].items())
    with capsys.disabled():
        print(f'\nwith_cp vs without, custom train_step: max relative parameter difference {difference:.3g}')
    assert difference == 0.0


# ------------------------------------------------------------------ resume
def checkpoint_every(iters: int) -> dict:
    return dict(checkpoint=dict(type='CheckpointHook', interval=iters, by_epoch=False))


def r50_source(meta: dict, path):
    """The record of a real run (``meta``) on an mmpretrain ResNet-50 classifier's weights, the
    source extract_backbone takes."""
    model = CLS_MODELS.build(dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=50),
                                  neck=dict(type='GlobalAveragePooling'),
                                  head=dict(type='LinearClsHead', num_classes=2, in_channels=2048)))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


def test_resume_with_other_settings_warns_and_the_history_is_kept(image_folder, tmp_path):
    first = fd_hook(participation=0.5, targets=['backbone.layer3'], seed=1)
    second = fd_hook(participation=0.1, targets=['backbone.layer3'], seed=2)
    from_cfg(image_folder, tmp_path / 'part', [first], max_iters=4, default_hooks=checkpoint_every(4)).train()
    resumed = from_cfg(image_folder, tmp_path / 'resumed', [second], max_iters=12, resume=True,
                       load_from=str(tmp_path / 'part' / 'iter_4.pth'), default_hooks=checkpoint_every(12))
    resumed.train()
    log = next((tmp_path / 'resumed').glob('*/*.log')).read_text()
    assert 'WARNING - FocusedDropout: resumed at iteration 4 with other settings' in log
    assert 'participation 0.5 -> 0.1; seed 1 -> 2' in log
    meta = torch.load(tmp_path / 'resumed' / 'iter_12.pth', map_location='cpu')['meta']
    history = meta['focused_dropout_history']
    assert [(h['from_iter'], h['settings']['participation'], h['settings']['seed']) for h in history] == \
        [(0, 0.5, 1), (4, 0.1, 2)]
    assert meta['focused_dropout']['participation'] == 0.1
    record = extract_backbone(r50_source(meta, tmp_path / 'src.pth'), tmp_path / 'backbone.pth')['meta']
    assert record['focused_dropout_history'] == history
    assert 'from iteration 0: participation=0.5' in record['focused_dropout_note']
    assert 'from iteration 4: participation=0.1' in record['focused_dropout_note']


def test_resume_without_the_hook_warns_and_records_it(image_folder, tmp_path):
    """tools/train.py (fdrop_mm.apis.train) resuming an FD checkpoint with a config without the hook."""
    from_cfg(image_folder, tmp_path / 'part', [fd_hook(participation=0.5, targets=['backbone.layer3'])],
             max_iters=4, default_hooks=checkpoint_every(4)).train()
    config = tmp_path / 'plain.py'
    Config(classifier_cfg(image_folder, tmp_path / 'resumed', max_iters=8,
                          default_hooks=checkpoint_every(8))).dump(str(config))
    train_from_config(str(config), resume=str(tmp_path / 'part' / 'iter_4.pth'))
    log = next((tmp_path / 'resumed').glob('*/*.log')).read_text()
    assert 'resumed at iteration 4 with other settings' in log and '-> no FocusedDropoutHook' in log
    meta = torch.load(tmp_path / 'resumed' / 'iter_8.pth', map_location='cpu')['meta']
    assert meta.get('focused_dropout') is None
    history = meta['focused_dropout_history']
    assert [h['from_iter'] for h in history] == [0, 4] and history[1]['settings'] is None
    assert history[0]['settings']['participation'] == 0.5
    record = extract_backbone(r50_source(meta, tmp_path / 'src.pth'), tmp_path / 'backbone.pth')['meta']
    assert 'from iteration 4: without FocusedDropoutHook' in record['focused_dropout_note']
