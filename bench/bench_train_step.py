"""Cost of FocusedDropoutHook in a ResNet-50 classifier training step, in a real mmengine Runner.

mmpretrain's stock ResNet-50 ImageClassifier (configs/tiny/resnet50_tiny-imagenet.py, i.e. the
pretraining config on generated images), IterBasedTrainLoop, SGD, trained by ``Runner.train()``
with no hook, and with ``FocusedDropoutHook(targets=['backbone.layer3'])`` at participation 1.0
and 0.1 (the paper's setting). Each iteration is timed from the first ``before_train_iter`` hook
to the last ``after_train_iter`` hook (forward, backward, SGD step and every hook; data loading
excluded). The arms run interleaved (A/B/A/B...); each run gives its mean iteration time after
the warm-up, each repeat the ratio arm / no hook, and the table the median ratio over repeats
(after one discarded run that warms up the process).

    python bench/bench_train_step.py [--repeats 5] [--iters 12] [--batch 8] [--size 128]
"""
import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fdrop_mm.testing import make_imagenet

REPO = Path(__file__).resolve().parents[1]

ARMS = {'no hook': None, 'FD, participation 1.0': 1.0, 'FD, participation 0.1': 0.1}
TARGETS = {1.0: 1.02, 0.1: 1.01}  # issue #7
WARMUP_ITERS = 2
NUM_CLASSES = 10  # of the generated images; the config's head is set to match


class StepClock:
    """Per-iteration wall time between two hooks that bracket all others (CUDA synchronised)."""

    def __init__(self):
        self.times = []
        self._start = None

    def tick(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def tock(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


class _IterStart(Hook):
    priority = 'HIGHEST'

    def __init__(self, clock):
        self.clock = clock

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.clock.tick()


class _IterEnd(Hook):
    priority = 'LOWEST'

    def __init__(self, clock):
        self.clock = clock

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.clock.tock()


def step_config(data_root, work_dir, participation, iters, batch, amp=False) -> Config:
    """The tiny ResNet-50 pretraining config as a fixed-length, deterministic-data timing run."""
    os.environ['IMAGENET_ROOT'] = str(data_root)
    cfg = Config.fromfile(str(REPO / 'configs/tiny/resnet50_tiny-imagenet.py'))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'step_{uuid.uuid4().hex[:8]}'
    cfg.log_level = 'WARNING'
    cfg.model.head.num_classes = cfg.data_preprocessor.num_classes = NUM_CLASSES
    cfg.train_dataloader.batch_size = batch
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.dataset.pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=iters)
    cfg.default_hooks.checkpoint = None
    cfg.custom_hooks = [] if participation is None else [dict(
        type='FocusedDropoutHook', participation=participation, targets=['backbone.layer3'])]
    if amp:
        cfg.optim_wrapper = dict(cfg.optim_wrapper, type='AmpOptimWrapper', dtype='bfloat16')
    return cfg


def run_arm(data_root, work_root, participation, iters, batch, threads, amp=False):
    """Mean seconds per iteration after the warm-up, and the fraction of focused iterations."""
    runner = Runner.from_cfg(step_config(data_root, work_root / uuid.uuid4().hex[:8], participation,
                                         iters, batch, amp))
    clock = StepClock()
    runner.register_hook(_IterStart(clock))
    runner.register_hook(_IterEnd(clock))
    torch.set_num_threads(threads)
    runner.train()
    measured = clock.times[WARMUP_ITERS:]
    focused = 0.0
    if participation is not None:
        active = runner.message_hub.get_scalar('train/fd/active').data[0][WARMUP_ITERS:]
        focused = float(sum(active)) / len(active)
    return statistics.mean(measured), focused


def measure(repeats, iters, batch, size, threads, amp=False) -> dict:
    """{arm: (median s/iter, median ratio to no hook, focused fraction)}."""
    with tempfile.TemporaryDirectory(prefix='fd_step_bench_') as tmp:
        data_root = Path(tmp) / 'imagenet'
        make_imagenet(data_root, num_classes=NUM_CLASSES, train_per_class=max(2, batch * iters // NUM_CLASSES + 1),
                      val_per_class=1, image_size=size)
        per_arm = {arm: [] for arm in ARMS}
        run_arm(data_root, Path(tmp) / 'work', None, iters, batch, threads, amp)  # process warm-up, discarded
        for _ in range(repeats):
            for arm, participation in ARMS.items():
                per_arm[arm].append(run_arm(data_root, Path(tmp) / 'work', participation, iters, batch,
                                            threads, amp))
    base = [seconds for seconds, _ in per_arm['no hook']]
    out = {}
    for arm, runs in per_arm.items():
        ratios = [seconds / b for (seconds, _), b in zip(runs, base)]
        out[arm] = (statistics.median(s for s, _ in runs), statistics.median(ratios),
                    statistics.mean(f for _, f in runs))
    return out


def table(results, batch, size, repeats, iters, device) -> list:
    lines = [f'ResNet-50 ImageClassifier, {device}, batch {batch} at {size}×{size}, SGD; '
             f'{repeats} interleaved repeats of {iters} iterations ({WARMUP_ITERS} warm-up); '
             'ratio = median over repeats of (arm mean s/iter) / (no-hook mean s/iter).', '',
             '| arm | s/iter | images/s | × no hook | focused iterations | target |', '|---|---|---|---|---|---|']
    for arm, (seconds, ratio, focused) in results.items():
        target = TARGETS.get(ARMS[arm])
        mark = '' if target is None else f'≤ {target}: **{"met" if ratio <= target else "missed"}**'
        lines.append(f'| {arm} | {seconds:.3f} | {batch / seconds:.1f} | {ratio:.3f} | {focused:.0%} | {mark} |')
    return lines + ['']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--iters', type=int, default=12, help='iterations per run, warm-up included')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    if args.iters <= WARMUP_ITERS:
        parser.error(f'--iters must exceed the {WARMUP_ITERS} warm-up iterations')
    device = 'CUDA' if torch.cuda.is_available() else f'CPU, {args.threads} threads'
    results = measure(args.repeats, args.iters, args.batch, args.size, args.threads)
    print('\n'.join(table(results, args.batch, args.size, args.repeats, args.iters, device)))


if __name__ == '__main__':
    main()
