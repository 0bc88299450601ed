"""Cost of FocusedDropoutHook in a ResNet-50 classifier training step, in a real mmengine Runner.

mmpretrain's stock ResNet-50 ImageClassifier (configs/tiny/resnet50_tiny-imagenet.py, i.e. the
pretraining config on generated images), IterBasedTrainLoop, SGD, trained by ``Runner.train()``
with no hook, and with ``FocusedDropoutHook(targets=['backbone.layer3'])`` at participation 1.0
and 0.1 (the paper's setting). Each iteration is timed from the first ``before_train_iter`` hook
to the last ``after_train_iter`` hook (forward, backward, SGD step and every hook; data loading
excluded). The arms run interleaved: every repeat runs no hook, participation 1.0 and 0.1 back to
back (the order rotating), each run gives its median iteration time after the warm-up, each
repeat the ratio arm / no hook of its own runs, and the table the median of those per-repeat
ratios with their interquartile range and range (after one discarded run that warms up the
process). The focused iterations are a function of the config's seed, so every run of an arm
focuses the same iterations.

    python bench/bench_train_step.py [--repeats 15] [--iters 10] [--warmup 2] [--batch 8] [--size 128]
        [--threads 2] [--amp] [--device auto|cuda] [--run 1] [--results bench/results.md | FILE | -]

writes (or replaces) its section ``Training step, <device>: run <run>`` of bench/results.md.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fdrop_mm.testing import make_imagenet

from results_md import fmt_spread, machine, pin_malloc, spread, write_section  # bench/ is this script's folder

REPO = Path(__file__).resolve().parents[1]

ARMS = {'no hook': None, 'FD, participation 1.0': 1.0, 'FD, participation 0.1': 0.1}
TARGETS = {1.0: 1.02, 0.1: 1.01}  # issue #7
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


def run_arm(data_root, work_root, participation, iters, warmup, batch, threads, amp=False):
    """Median seconds per iteration after the warm-up, and the fraction of focused iterations."""
    runner = Runner.from_cfg(step_config(data_root, work_root / uuid.uuid4().hex[:8], participation,
                                         iters, batch, amp))
    clock = StepClock()
    runner.register_hook(_IterStart(clock))
    runner.register_hook(_IterEnd(clock))
    torch.set_num_threads(threads)
    runner.train()
    measured = clock.times[warmup:]
    focused = 0.0
    if participation is not None:
        active = runner.message_hub.get_scalar('train/fd/active').data[0][warmup:]
        focused = float(sum(active)) / len(active)
    return statistics.median(measured), focused


def measure(repeats, iters, warmup, batch, size, threads, amp=False) -> dict:
    """{arm: (median s/iter, spread of per-repeat ratios to no hook, focused fraction)}."""
    with tempfile.TemporaryDirectory(prefix='fd_step_bench_') as tmp:
        data_root = Path(tmp) / 'imagenet'
        make_imagenet(data_root, num_classes=NUM_CLASSES, train_per_class=max(2, batch * iters // NUM_CLASSES + 1),
                      val_per_class=1, image_size=size)
        per_arm = {arm: [] for arm in ARMS}
        run_arm(data_root, Path(tmp) / 'work', None, iters, warmup, batch, threads, amp)  # process warm-up
        arms = list(ARMS)
        for r in range(repeats):  # rotate the order, so that no arm always runs first
            for arm in arms[r % len(arms):] + arms[:r % len(arms)]:
                per_arm[arm].append(run_arm(data_root, Path(tmp) / 'work', ARMS[arm], iters, warmup, batch,
                                            threads, amp))
                print(f'repeat {r + 1}/{repeats}, {arm}: {per_arm[arm][-1][0]:.3f} s/iter', flush=True)
    base = [seconds for seconds, _ in per_arm['no hook']]
    out = {}
    for arm, runs in per_arm.items():
        ratios = [seconds / b for (seconds, _), b in zip(runs, base)]
        out[arm] = (statistics.median(s for s, _ in runs), spread(ratios), statistics.mean(f for _, f in runs))
    return out


def table(results, batch, size, repeats, iters, warmup, device) -> list:
    lines = [machine() + '.', '',
             f'ResNet-50 ImageClassifier, {device}, batch {batch} at {size}×{size}, SGD; {repeats} interleaved '
             f'repeats of {iters} iterations ({warmup} warm-up) per arm; × no hook = median of the per-repeat '
             'ratios (arm median s/iter) / (no-hook median s/iter), with IQR and range.', '',
             '| arm | s/iter | images/s | × no hook (IQR, range) | focused iterations | target |',
             '|---|---|---|---|---|---|']
    for arm, (seconds, ratio, focused) in results.items():
        target = TARGETS.get(ARMS[arm])
        mark = '' if target is None else f'≤ {target}: **{"met" if ratio["median"] <= target else "missed"}**'
        lines.append(f'| {arm} | {seconds:.3f} | {batch / seconds:.1f} | {fmt_spread(ratio, 3)} | {focused:.0%} | {mark} |')
    return lines + ['']


def device_name(threads: int, amp: bool) -> str:
    if torch.cuda.is_available():
        return f'CUDA {torch.cuda.get_device_name()}, {"bfloat16 AMP" if amp else "float32"}'
    return f'CPU, {threads} thread{"s" if threads > 1 else ""}{", bfloat16 AMP" if amp else ""}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=int, default=15, help='interleaved repeats (each runs every arm once)')
    parser.add_argument('--iters', type=int, default=10, help='iterations per run, warm-up included')
    parser.add_argument('--warmup', type=int, default=2, help='iterations per run not timed')
    parser.add_argument('--device', choices=['auto', 'cuda'], default='auto',
                        help="the Runner's device (a GPU when there is one); cuda: fail where there is none")
    parser.add_argument('--batch', type=int, help='default 8 on CPU, 64 on CUDA')
    parser.add_argument('--size', type=int, help='image side, default 128 on CPU, 224 on CUDA')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--amp', action='store_true', help='bfloat16 AMP (AmpOptimWrapper)')
    parser.add_argument('--run', default='1', help='label of this run: its section is "Training step, <device>: run <run>"')
    parser.add_argument('--results', '--out', default=None, help='results file to write the section into '
                        '(default bench/results.md); "-" only prints')
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit(f'bench_train_step.py --device cuda: no CUDA device here (torch {torch.__version__}, built for '
                 f'CUDA {torch.version.cuda}, torch.cuda.is_available() is False); use --device auto for the CPU')
    cuda = torch.cuda.is_available()
    args.batch = args.batch or (64 if cuda else 8)
    args.size = args.size or (224 if cuda else 128)
    if args.iters <= args.warmup:
        parser.error(f'--iters ({args.iters}) must exceed --warmup ({args.warmup})')
    if args.repeats < 2:
        parser.error('--repeats must be at least 2 (the spread of the per-repeat ratios)')
    allocator = pin_malloc()  # as bench/run_benchmarks.py runs it, so the two agree
    device = device_name(args.threads, args.amp)
    results = measure(args.repeats, args.iters, args.warmup, args.batch, args.size, args.threads, args.amp)
    lines = table(results, args.batch, args.size, args.repeats, args.iters, args.warmup, device) + [allocator + '.']
    heading = f'Training step, {"CUDA" if torch.cuda.is_available() else "CPU"}{", AMP" if args.amp else ""}: run {args.run}'
    print('\n'.join([f'## {heading}', '', *lines]))
    if args.results != '-':
        write_section(heading, lines, **({'path': args.results} if args.results else {}))
        print(f'wrote section "{heading}" of {args.results or "bench/results.md"}', file=sys.stderr)


if __name__ == '__main__':
    main()
