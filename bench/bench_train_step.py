"""Cost of FocusedDropoutHook in a ResNet-50 classifier training step, in real mmengine Runners.

mmpretrain's stock ResNet-50 ImageClassifier (configs/tiny/resnet50_tiny-imagenet.py, i.e. the
pretraining config on generated images), IterBasedTrainLoop, SGD, trained by ``Runner.train()``
with no hook, and with ``FocusedDropoutHook(targets=['backbone.layer3'])`` at participation 1.0
and 0.1 (the paper's setting). Each iteration is timed from the first ``before_train_iter`` hook
to the last ``after_train_iter`` hook (forward, backward, SGD step and every hook; data loading
excluded).

The arms take turns iteration by iteration: each arm's Runner trains in its own process, and a
hook holds every iteration until this script says go, so one round runs one iteration of each
arm back to back (the order rotating) while the other two wait with their next batch loaded.
Every round gives a ratio arm / no hook of two iterations seconds apart, so drifts of the
machine cancel; the figure of an arm is the median of those per-round ratios over its plain
and its focused iterations, weighted by how often it focused (with participation 0.1 a
plain median would ignore the focused 10%), with the IQR and range of the per-round ratios
and a bootstrap 95% interval of the figure. The focused iterations are a function of the
config's seed, so every run focuses the same iterations.

    python bench/bench_train_step.py [--rounds 300] [--warmup 3] [--batch 8] [--size 128]
        [--threads 2] [--amp] [--device auto|cuda] [--run 1] [--results bench/results.md | FILE | -]

writes (or replaces) its section ``Training step, <device>: run <run>`` of bench/results.md.
"""
import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fdrop_mm.tiny_data import make_imagenet

from results_md import Provenance, fmt_quartiles, pin_malloc, spread, write_section  # bench/ is this script's folder

REPO = Path(__file__).resolve().parents[1]

ARMS = {'no hook': None, 'FD, participation 1.0': 1.0, 'FD, participation 0.1': 0.1}
TARGETS = {1.0: 1.02, 0.1: 1.01}  # participation -> the most × no hook a train step may cost
NUM_CLASSES = 10  # of the generated images; the config's head is set to match
BOOTSTRAP = 2000  # resamples of the rounds for the 95% interval
TURN_TIMEOUT = 600  # seconds one iteration (or building a Runner) may take before the bench gives up


class TakeTurns(Hook):
    """Hold each training iteration until the coordinator says go, and time it.

    ``before_train_iter`` (first of all hooks, the batch already loaded) reports 'ready' and waits
    for 'go', then starts the clock; ``after_train_iter`` (last of all hooks) stops it. The next
    'ready' therefore tells the coordinator that this iteration, its hooks and the next batch's
    loading are done, and it may give the turn to the next arm.
    """

    priority = 'HIGHEST'

    def __init__(self, conn):
        self.conn = conn
        self.times = []
        self._start = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.conn.send('ready')
        if self.conn.recv() != 'go':
            raise RuntimeError('bench_train_step: the coordinator sent something other than go')
        _synchronize()
        self._start = time.perf_counter()


class StopClock(Hook):
    priority = 'LOWEST'

    def __init__(self, turns: TakeTurns):
        self.turns = turns

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        _synchronize()
        self.turns.times.append(time.perf_counter() - self.turns._start)


def _synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)  # no epoch restarts between rounds
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


def arm_process(conn, data_root, work_dir, participation, iters, batch, threads, amp):
    """One arm's Runner.train(), iteration by iteration as the coordinator allows; sends back
    ('finished', seconds per iteration, focused flag per iteration) or ('failed', traceback)."""
    try:
        pin_malloc()  # as bench/run_benchmarks.py runs it, so the two agree
        torch.set_num_threads(threads)
        runner = Runner.from_cfg(step_config(data_root, work_dir, participation, iters, batch, amp))
        turns = TakeTurns(conn)
        runner.register_hook(turns)
        runner.register_hook(StopClock(turns))
        runner.train()
        focused = [0.0] * iters
        if participation is not None:
            focused = list(runner.message_hub.get_scalar('train/fd/active').data[0])
        conn.send(('finished', turns.times, focused))
    except BaseException:
        conn.send(('failed', traceback.format_exc()))
        raise


def _receive(conn, arm, expected):
    if not conn.poll(TURN_TIMEOUT):
        raise RuntimeError(f'bench_train_step: arm {arm!r} sent nothing for {TURN_TIMEOUT} s')
    try:
        message = conn.recv()
    except EOFError:
        raise RuntimeError(f'bench_train_step: arm {arm!r} exited without a word (killed, or out of memory?)') from None
    kind = message if isinstance(message, str) else message[0]
    if kind == 'failed':
        raise RuntimeError(f'bench_train_step: arm {arm!r} failed:\n{message[1]}')
    if kind != expected:
        raise RuntimeError(f'bench_train_step: arm {arm!r} sent {kind!r}, expected {expected!r}')
    return message


def run_rounds(rounds, warmup, batch, size, threads, amp=False) -> dict:
    """{arm: (seconds per iteration, focused flag per iteration)}, warm-up included, the arms taking turns."""
    iters = warmup + rounds
    arms = list(ARMS)
    results = {}
    with tempfile.TemporaryDirectory(prefix='fd_step_bench_') as tmp:
        data_root = Path(tmp) / 'imagenet'
        make_imagenet(data_root, num_classes=NUM_CLASSES, train_per_class=max(2, 4 * batch // NUM_CLASSES + 1),
                      val_per_class=1, image_size=size)
        context = multiprocessing.get_context('spawn')  # no fork of an initialised OpenMP/CUDA process
        conns, processes = {}, []
        try:
            for arm in arms:
                ours, theirs = context.Pipe()
                process = context.Process(target=arm_process, name=f'step bench: {arm}', args=(
                    theirs, data_root, Path(tmp) / uuid.uuid4().hex[:8], ARMS[arm], iters, batch, threads, amp))
                process.start()
                theirs.close()  # the arm's end lives in its process: a dead arm reads as EOF here
                processes.append(process)
                conns[arm] = ours
            for arm in arms:  # every Runner built, its first batch loaded
                _receive(conns[arm], arm, 'ready')
            for r in range(iters):
                last = r + 1 == iters
                for arm in arms[r % len(arms):] + arms[:r % len(arms)]:  # rotate: no arm always goes first
                    conns[arm].send('go')
                    message = _receive(conns[arm], arm, 'finished' if last else 'ready')
                    if last:
                        results[arm] = message[1:]
                if (r + 1) % 25 == 0 or last:
                    print(f'round {r + 1}/{iters} ({warmup} warm-up)', flush=True)
        finally:
            for conn in conns.values():  # an arm still waiting for its turn gets EOFError and exits
                conn.close()
            for process in processes:
                process.join(timeout=60)
                if process.is_alive():
                    process.kill()
    for arm, (times, focused) in results.items():
        if len(times) != iters or len(focused) != iters:
            raise RuntimeError(f'bench_train_step: arm {arm!r} timed {len(times)} and logged fd/active for '
                               f'{len(focused)} iterations, expected {iters}')
        if ARMS[arm] is not None and not any(focused):
            raise RuntimeError(f'bench_train_step: arm {arm!r} never masked (fd/active 0 in all {iters} '
                               'iterations): its figure would time a hook that does nothing')
    return {arm: results[arm] for arm in arms}


def by_focus(ratios, focused) -> tuple:
    """(ratios of the plain rounds, ratios of the focused rounds)."""
    return tuple([r for r, f in zip(ratios, focused) if f == flag] for flag in (0.0, 1.0))


def weighted_median(ratios, focused) -> float:
    """Median ratio of the plain and of the focused rounds, weighted by how many rounds each has."""
    return sum(len(g) * statistics.median(g) for g in by_focus(ratios, focused) if g) / len(ratios)


def summarise(results: dict, warmup: int, bootstrap: int = BOOTSTRAP) -> dict:
    """{arm: dict(seconds, figure, interval, spread, plain, focused)} from the timed rounds; plain and
    focused are (median ratio or None, rounds)."""
    base = results['no hook'][0][warmup:]
    out = {}
    for arm, (times, flags) in results.items():
        times, flags = times[warmup:], flags[warmup:]
        ratios = [t / b for t, b in zip(times, base)]
        draw = random.Random(0)  # the same resamples in every run: the interval is a function of the data
        resampled = sorted(weighted_median([ratios[i] for i in picks], [flags[i] for i in picks])
                           for picks in ([draw.randrange(len(ratios)) for _ in ratios] for _ in range(bootstrap)))
        plain, focused = ((statistics.median(g) if g else None, len(g)) for g in by_focus(ratios, flags))
        out[arm] = dict(seconds=statistics.median(times), figure=weighted_median(ratios, flags),
                        interval=(resampled[int(0.025 * bootstrap)], resampled[int(0.975 * bootstrap) - 1]),
                        spread=spread(ratios), plain=plain, focused=focused)
    return out


def table(summary, batch, size, rounds, warmup, device) -> list:
    lines = [f'ResNet-50 ImageClassifier, {device}, batch {batch} at {size}×{size}, SGD; the three arms take turns '
             f'iteration by iteration, {rounds} rounds ({warmup} warm-up rounds not timed), the order rotating. '
             '× no hook = median of the per-round ratios arm / no hook over the plain and over the focused '
             f'iterations, weighted by their counts, with a bootstrap 95% interval ({BOOTSTRAP} resamples of the '
             'rounds); the IQR and range are those '
             'of the per-round ratios.', '',
             '| arm | s/iter | images/s | × no hook (95% interval) | per-round ratios | plain / focused: median (rounds) | target |',
             '|---|---|---|---|---|---|---|']
    for arm, s in summary.items():
        target = TARGETS.get(ARMS[arm])
        mark = '' if target is None else f'≤ {target}: **{"met" if s["figure"] <= target else "missed"}**'
        groups = ' / '.join('–' if median is None else f'{median:.3f} ({count})'
                            for median, count in (s['plain'], s['focused']))
        lines.append(f'| {arm} | {s["seconds"]:.3f} | {batch / s["seconds"]:.1f} | {s["figure"]:.3f} '
                     f'({s["interval"][0]:.3f}–{s["interval"][1]:.3f}) | {fmt_quartiles(s["spread"], 3)} | {groups} '
                     f'| {mark} |')
    return lines + ['']


def step_section(rounds, warmup, batch, size, threads, amp=False) -> tuple:
    """(heading, lines) of one training-step section of bench/results.md, its provenance first."""
    record = Provenance()
    summary = summarise(run_rounds(rounds, warmup, batch, size, threads, amp), warmup)
    lines = table(summary, batch, size, rounds, warmup, device_name(threads, amp)) + [pin_malloc() + '.']
    lines = record.lines() + lines
    return f'Training step, {"CUDA" if torch.cuda.is_available() else "CPU"}{", AMP" if amp else ""}', lines


def device_name(threads: int, amp: bool) -> str:
    if torch.cuda.is_available():
        return f'CUDA {torch.cuda.get_device_name()}, {"bfloat16 AMP" if amp else "float32"}'
    return f'CPU, {threads} thread{"s" if threads > 1 else ""}{", bfloat16 AMP" if amp else ""}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=300, help='timed rounds (each runs one iteration of every arm)')
    parser.add_argument('--warmup', type=int, default=3, help='rounds run first and not timed')
    parser.add_argument('--device', choices=['auto', 'cuda'], default='auto',
                        help="the Runners' device (a GPU when there is one); cuda: fail where there is none")
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
    if args.rounds < 4:
        parser.error(f'--rounds must be at least 4 (the spread of the per-round ratios), got {args.rounds}')
    if args.warmup < 0:
        parser.error(f'--warmup must not be negative, got {args.warmup}')
    heading, lines = step_section(args.rounds, args.warmup, args.batch, args.size, args.threads, args.amp)
    heading = f'{heading}: run {args.run}'
    print('\n'.join([f'## {heading}', '', *lines]))
    if args.results != '-':
        write_section(heading, lines, **({'path': args.results} if args.results else {}))
        print(f'wrote section "{heading}" of {args.results or "bench/results.md"}', file=sys.stderr)


if __name__ == '__main__':
    main()
