"""``compile = True``: mmengine's Runner torch.compiles the model's train_step; FocusedDropout
(a plugins= module in mmdet's ResNet and a targets= one from the hook) trains compiled as it
trains eagerly, and switching it on and off between iterations compiles nothing new once both
paths have run. docs/hook.md, "torch.compile", gives the costs measured here."""
import time

import pytest
import torch
import torch._dynamo
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch._dynamo.utils import counters, guard_failures

from tests.conftest import classifier_cfg

ITERS = 12  # focused at 2, 5, 6, 7, 10 (seed 0, participation 0.5)
SETTLED = 7  # iterations 7-11 switch FocusedDropout on and off, after both paths have run


class CompileLog(Hook):
    """Per iteration: wall seconds and dynamo's frame compilations so far (recompiles included)."""
    priority = 'VERY_HIGH'

    def __init__(self):
        self.seconds, self.frames = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.frames.append(counters['frames']['total'])


def train(image_folder, work_dir, compile_cfg=None):
    """mmdet ResNet (one stage of three Bottlenecks, FocusedDropout plugins after conv3) with a
    hook target on its first block: 4 FocusedDropout modules."""
    cfg = classifier_cfg(image_folder, work_dir, max_iters=ITERS, default_hooks=dict(checkpoint=None),
                         custom_hooks=[dict(type='FocusedDropoutHook', participation=0.5,
                                            targets=['backbone.layer1.0'])])
    cfg['model']['backbone'] = dict(
        type='mmdet.ResNet', depth=50, num_stages=1, strides=(1, ), dilations=(1, ), out_indices=(0, ),
        base_channels=8, zero_init_residual=False,
        plugins=[dict(cfg=dict(type='FocusedDropout'), stages=(True, ), position='after_conv3')])
    cfg['model']['head']['in_channels'] = 32
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'mmdet.models'], allow_failed_imports=False)
    if compile_cfg is not None:
        cfg['compile'] = compile_cfg
    torch._dynamo.reset()
    counters.clear()
    guard_failures.clear()
    log = CompileLog()
    runner = Runner.from_cfg(Config(cfg))
    runner.register_hook(log)
    runner.train()
    history = runner.message_hub.get_scalar
    return dict(loss=[float(v) for v in history('train/loss').data[0]],
                active=[float(v) for v in history('train/fd/active').data[0]],
                keep=[float(v) for v in history('train/fd/keep_ratio').data[0]],
                seconds=log.seconds, frames=log.frames)


def gamma_seed_recompiles() -> int:
    """Recompilations caused by FocusedDropout's per-iteration γ seed (an int module attribute)."""
    return sum('_gamma_seed' in str(reason) for reasons in guard_failures.values() for reason in reasons)


@pytest.fixture(scope='module')
def eager(image_folder, tmp_path_factory):
    return train(image_folder, tmp_path_factory.mktemp('eager'))


def assert_trains_like_eager(run, eager):
    assert run['active'] == eager['active'] and 0 < sum(eager['active']) < ITERS
    assert max(eager['active'][:SETTLED]) == 1 and min(eager['active'][SETTLED:]) == 0, \
        'iterations SETTLED.. must switch FocusedDropout on and off after both paths ran'
    torch.testing.assert_close(run['loss'], eager['loss'], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(run['keep'], eager['keep'], rtol=1e-4, atol=1e-5)
    # no frame compiled while FocusedDropout switches on and off after both paths ran
    assert run['frames'][SETTLED - 1] == run['frames'][-1], run['frames']


@pytest.mark.slow
def test_compile_true_trains_like_eager_and_settles(image_folder, tmp_path, eager):
    """The config line ``compile = True`` (inductor): the eager run's losses; the costs printed
    are those docs/hook.md quotes."""
    run = train(image_folder, tmp_path, compile_cfg=True)
    assert_trains_like_eager(run, eager)
    print(f"\ncompile=True, seconds per iteration: {[round(s, 1) for s in run['seconds']]} (eager "
          f"{[round(s, 2) for s in eager['seconds']]}); frames compiled by iteration: {run['frames']}; "
          f"graphs: {counters['stats']['unique_graphs']}; γ-seed recompiles: {gamma_seed_recompiles()}")


@pytest.mark.slow
def test_the_per_iteration_gamma_seed_causes_no_recompilation(image_folder, tmp_path, eager):
    """The hook gives every module a new integer γ seed on each focused iteration
    (``FocusedDropout.seed_gamma``); dynamo specialises integer attributes of an nn.Module, so a
    compiled γ draw would fail a guard and recompile per iteration up to the recompile limit.
    The draw runs eagerly (``torch.compiler.disable``): no guard on the seed ever fails. Guards are
    dynamo's, whatever the backend: the backend 'eager' keeps this fast."""
    run = train(image_folder, tmp_path, compile_cfg=dict(backend='eager'))
    assert_trains_like_eager(run, eager)
    assert gamma_seed_recompiles() == 0
