"""The GPU check in one go: what a first GPU lease must show, designed for at most 6 minutes.

Correctness first, benchmarks last with the time left (``--budget``, 360 s, 180 s with ``--quick``):

1. ``operator``: FocusedDropout's mask against a float64 reference computed from the paper's
   equations (§4, Eqs. 1-4) on the CPU, in float32, float16 and bfloat16, contiguous and
   channels_last, exact except at positions within one float32 rounding of the threshold and in
   samples whose reference channel is a near-tie (counted and shown); output and gradient exactly
   x and the upstream gradient where kept, 0 elsewhere. On CUDA the operator runs on the GPU.
2. ``amp-float16``, ``amp-bfloat16``: the committed ResNet-20 + FocusedDropout CIFAR-100 config
   trained a few steps on generated data under ``AmpOptimWrapper``: finite losses, weight decay
   x2 inside focused steps' ``optimizer.step()`` and restored after.
3. ``with_cp``: mmpretrain's ResNet-50 with ``with_cp=True`` and a target inside a checkpointed
   block trains to the weights of ``with_cp=False`` (the recomputed forward reuses the γ).
4. ``benchmark``: ``bench/bench_operator.py --device cuda`` and ``bench/bench_train_step.py``
   (float32 and ``--amp``) as their CLIs, each with the time left; passes when every section was
   written, and states the targets (FD ≤ 1.5× the floor at 14×14, launch overhead included;
   training images/s with FD ≥ 0.99× without at participation 0.1) and whether each was met.

Without CUDA it runs what it can (the operator on the CPU, a float32 stand-in of the training
check, with_cp) and the report's "Skipped" line names every check or part that did not run, with
its reason. mmdet and mmcv's compiled ops are hidden from the whole run: the GPU machine has
mmcv-lite and no mmdet, and a CPU run must import what the GPU run imports
(``bash bench/gpu_check.sh --rehearse`` runs it in that machine's environment; docs/benchmarks.md).

    bash bench/gpu_check.sh [--report work_dirs/gpu_check/report.md] [--work-dir work_dirs/gpu_check]
        [--quick] [--device auto] [--budget S]

Exit status 1 when a check failed. The report is rewritten after every check, so a run stopped
by its time limit leaves the checks it finished.
"""
import argparse
import math
import os
import platform
import re
import subprocess
import sys
import time

STARTED = float(os.environ.get('GPU_CHECK_STARTED') or time.time())  # gpu_check.sh's start: Python's included

import traceback  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List  # noqa: E402

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FD_CONFIG = 'configs/cifar/table2/resnet20_fd_1xb128_cifar100.py'
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
WITH_CP_TOLERANCE = 1e-4  # max relative weight difference; a γ redrawn in the recomputation gives O(1)
OPERATOR_TARGET = 1.5  # FD forward + backward / the x·m floor on CUDA at 14×14, launch overhead included
TRAIN_TARGET = 0.99  # images/s with FD / without, participation 0.1
BENCH_MIN_SECONDS = 40  # a benchmark CLI is not started with less time left (CUDA start, Runner builds)


class Skipped(Exception):
    """A check that cannot run here; the message says why."""


@dataclass
class Result:
    name: str
    status: str  # passed, failed or skipped
    detail: str
    seconds: float = 0.0
    body: List[str] = field(default_factory=list)
    skipped_parts: List[str] = field(default_factory=list)  # 'what (why)' of the parts that did not run


def remaining(budget: float) -> float:
    return budget - (time.time() - STARTED)


# ------------------------------------------------------------------ 1. operator
def float32_ulp(t: torch.Tensor) -> torch.Tensor:
    """The spacing of float32 at ``t`` (float64)."""
    t32 = t.float().abs()
    return (torch.nextafter(t32, torch.full_like(t32, math.inf)) - t32).double()


def reference_keep(x: torch.Tensor, gamma: torch.Tensor):
    """The float64 mask of §4 on the CPU, and where float32 may rightly decide otherwise.

    k = argmax_c mean(x[n, c]) (Eq. 1, first on ties), kept = x[n, k] > γ·max x[n, k], the peak
    always kept, a sample whose peak is <= 0 kept whole (docs/operator.md). Returns (keep (N, 1,
    H, W); near (N, 1, H, W): |x[n, k] - γ·max| within one float32 spacing, where float32's rounded
    threshold may decide either way; k (N,); tied: {n: the channels whose float64 sums lie within
    float32 summation error of the top one, which two float32 sums may rank differently};
    keep_of: channels (N,) -> (keep, near) with those as reference channels).
    """
    x = x.detach().cpu().double()
    n, c, h, w = x.shape
    sums = x.sum(dim=(2, 3))
    top = sums.argmax(dim=1)
    error = 2 * h * w * torch.finfo(torch.float32).eps * x.abs().sum(dim=(2, 3))  # of two float32 sums
    tied = {}
    for i in range(n):
        close = (sums[i, top[i]] - sums[i] <= error[i] + error[i, top[i]]).nonzero().flatten().tolist()
        if len(close) > 1:
            tied[i] = close

    def keep_of(channels):
        reference = x[torch.arange(n), channels]  # (N, H, W)
        peak = reference.amax(dim=(1, 2), keepdim=True)
        threshold = gamma.cpu().double().view(n, 1, 1) * peak
        keep = (reference > threshold) | (reference == peak) | (peak <= 0)
        return keep.view(n, 1, h, w), ((reference - threshold).abs() <= float32_ulp(threshold)).view(n, 1, h, w)

    keep, near = keep_of(top)
    return keep, near, top, tied, keep_of


def check_operator(device: str, quick: bool):
    """The operator on ``device`` against the float64 CPU reference, every dtype and layout."""
    generator = torch.Generator().manual_seed(0)
    n, c, size = (4, 32, 14) if quick else (16, 256, 28)
    rows = ['| dtype | layout | positions | mask differs | of which near the threshold | near-tie samples '
            '| output, gradient |', '|---|---|---|---|---|---|---|']
    bad, excused, near_total, ties, tied_total = [], 0, 0, 0, 0
    for dtype in DTYPES:
        x = torch.randn(n, c, size, size, generator=generator).to(dtype)
        x[0, 0] += 1  # sample 0's reference channel, and a close second: channel 1 is channel 0
        x[0, 1] = x[0, 0]  # with one position a step or two off
        x[0, 1, 0, 0] = (x[0, 0, 0, 0].double() * (1 + 2 * torch.finfo(dtype).eps)).to(dtype)
        gamma = torch.empty(n).uniform_(0.3, 0.6, generator=generator)
        # and in sample 1 a position at the threshold, rounded to the dtype: float32's rounded
        # threshold may put it on either side
        channel = x[1].double().sum(dim=(1, 2)).argmax()
        x[1, channel, 0, 1] = (gamma[1].double() * x[1, channel].double().max()).to(dtype)
        grad = torch.randn(n, c, size, size, generator=generator).to(dtype)
        keep_ref, near, top, tied, keep_of = reference_keep(x, gamma)
        for layout in ('contiguous', 'channels_last'):
            keep, out, x_grad, x_dev, grad_dev = run_operator(x.to(device), gamma.to(device), grad.to(device),
                                                              layout == 'channels_last')
            keep = keep.cpu()
            differs = keep != keep_ref
            tie_samples = 0
            for i, channels in tied.items():  # a near-tie: whichever of the tied channels the operator took
                if differs[i].any() and any(agrees_with_channel(keep, keep_of, top, i, ch) for ch in channels):
                    differs[i] = False
                    tie_samples += 1
            unexplained = differs & ~near
            mask_ok = not unexplained.any()
            zero = torch.zeros((), dtype=dtype, device=device)
            exact = (torch.equal(out, torch.where(keep.to(device), x_dev, zero)) and
                     torch.equal(x_grad, torch.where(keep.to(device), grad_dev, zero)))
            layout_ok = layout == 'contiguous' or out.is_contiguous(memory_format=torch.channels_last)
            excused, near_total = excused + int((differs & near).sum()), near_total + int(near.sum())
            ties, tied_total = ties + tie_samples, tied_total + len(tied)
            rows.append(f'| {str(dtype).split(".")[1]} | {layout} | {keep.numel()} | {int(differs.sum())} | '
                        f'{int((differs & near).sum())} (of {int(near.sum())} near) | {tie_samples} (of {len(tied)} '
                        f'tied) | {"exact" if exact else "**differs**"}'
                        f'{"" if layout_ok else ", **not channels_last**"} |')
            if not (mask_ok and exact and layout_ok):
                bad.append(f'{dtype} {layout}' + ('' if mask_ok else f': {int(unexplained.sum())} mask positions'))
    where = 'CUDA' if device == 'cuda' else 'the CPU'
    detail = (f'FocusedDropout on {where} against the float64 reference of §4, x {n}x{c}x{size}x{size}, '
              f'{len(DTYPES) * 2} dtype/layout variants: ' +
              (f'masks equal to the reference except at {excused} of the {near_total} positions within one '
               f'float32 rounding of the threshold and in {ties} of the {tied_total} near-tie samples (summed over '
               'the variants); output and gradient exact' if not bad else f'differs: {"; ".join(bad)}'))
    skipped = [] if device == 'cuda' else ['operator on CUDA against the reference (no CUDA device: the CPU '
                                           "operator was compared instead)"]
    return not bad, detail, rows, skipped


def agrees_with_channel(keep, keep_of, top, sample: int, channel: int) -> bool:
    """Whether ``keep[sample]`` is the reference mask with ``channel`` as the reference channel
    (positions near that channel's threshold excepted)."""
    channels = top.clone()
    channels[sample] = channel
    keep_ref, near = keep_of(channels)
    return not ((keep[sample] != keep_ref[sample]) & ~near[sample]).any()


def run_operator(x, gamma, grad, channels_last=False):
    """(keep mask, output, input gradient, x, grad) of focused_dropout on ``x``."""
    from fdrop_mm import focused_dropout
    if channels_last:
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    leaf = x.detach().clone().requires_grad_()
    out, keep = focused_dropout(leaf, gamma, return_keep=True)
    out.backward(grad)
    return keep, out.detach(), leaf.grad, x, grad


# ------------------------------------------------------------------ 3., 4. training
class Recorder:
    """Weight decay inside every optimizer step, and the parameters after training."""

    def __init__(self):
        from mmengine.hooks import Hook

        recorder = self

        class RecordingHook(Hook):
            priority = 'LOWEST'  # before_train after FocusedDropoutHook has wrapped optimizer.step

            def before_train(self, runner):
                optimizer = runner.optim_wrapper.optimizer
                recorder.base = [g['weight_decay'] for g in optimizer.param_groups]
                optimizer.register_step_pre_hook(
                    lambda opt, args, kwargs: recorder.in_step.append(
                        (runner.iter, [g['weight_decay'] for g in opt.param_groups])))

            def after_train(self, runner):
                recorder.after = [g['weight_decay'] for g in runner.optim_wrapper.optimizer.param_groups]
                recorder.params = {k: v.detach().float().cpu().clone() for k, v in runner.model.named_parameters()}

        self.hook = RecordingHook()
        self.in_step, self.base, self.after, self.params = [], None, None, None


def tiny_data(work: Path) -> Path:
    from fdrop_mm.tiny_data import generate
    generate(work / 'data', only=('cifar100', ), seed=0)
    return work / 'data'


def fd_config(work: Path, name: str, data: Path, *options: str):
    """The committed ResNet-20 FD config on the generated CIFAR-100 for a few steps (the sweep's
    smoke schedule), seed 0, plus ``options``."""
    from mmengine.config import Config

    from fdrop_mm.experiments.stages import parse_cfg_options
    from fdrop_mm.experiments.sweep import tiny_options
    from fdrop_mm.experiments.tables import select_cells
    os.environ['CIFAR100_ROOT'] = str(data / 'cifar100')
    cfg = Config.fromfile(str(REPO / FD_CONFIG))
    cell = select_cells(['2'], ['resnet20/fd'])[0]
    cfg.merge_from_dict(parse_cfg_options(tiny_options(cell, data) + ['randomness.seed=0', *options]))
    cfg.work_dir = str(work / name)
    cfg.experiment_name = f'{name}_{uuid.uuid4().hex[:8]}'
    return cfg


def train(cfg):
    from mmengine.runner import Runner
    recorder = Recorder()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(recorder.hook)
    runner.train()
    history = runner.message_hub.get_scalar
    return runner, recorder, dict(loss=[float(v) for v in history('train/loss').data[0]],
                                  active=[float(v) for v in history('train/fd/active').data[0]])


def check_amp(device: str, work: Path, dtype: str):
    """AmpOptimWrapper in ``dtype``; on the CPU (``dtype`` None) plain OptimWrapper in float32,
    which runs the same code (AmpOptimWrapper asserts a CUDA device)."""
    if dtype is not None and device != 'cuda':
        raise Skipped("no CUDA device: mmengine's AmpOptimWrapper asserts one (the float32 stand-in "
                      'ran the same check)')
    options = ['train_dataloader.batch_size=4', 'custom_hooks.0.participation=0.5']
    if dtype is not None:
        options += ['optim_wrapper.type=AmpOptimWrapper', f'optim_wrapper.dtype={dtype}']
    runner, recorder, history = train(fd_config(work, f'amp_{dtype or "float32"}', tiny_data(work), *options))
    hook = next(h for h in runner.hooks if type(h).__name__ == 'FocusedDropoutHook')
    losses, active = history['loss'], history['active']
    problems = []
    if not all(math.isfinite(v) for v in losses):
        problems.append(f'non-finite loss: {losses}')
    if not 0 < sum(active) < len(active):
        problems.append(f'needs focused and plain steps, got fd/active {active}')
    focused_steps = 0
    for iteration, decays in recorder.in_step:  # a step GradScaler skipped (inf gradient) is not here
        factor = hook.weight_decay_multiplier if hook.is_focused_step(iteration) else 1.0
        focused_steps += factor != 1.0
        if decays != [d * factor for d in recorder.base]:
            problems.append(f'iteration {iteration}: weight decay {decays} inside the step, expected x{factor:g}')
    if focused_steps == 0:
        problems.append('no focused step reached optimizer.step()')
    if recorder.after != recorder.base:
        problems.append(f'weight decay after training {recorder.after} != before {recorder.base}')
    wrapper = type(runner.optim_wrapper).__name__
    detail = (f'{wrapper} {dtype or "float32"} on {device}: {len(losses)} steps, losses '
              f'{losses[0]:.3f} -> {losses[-1]:.3f}, {int(sum(active))} focused; weight decay x'
              f'{hook.weight_decay_multiplier:g} inside {focused_steps} focused optimizer steps, restored after')
    return not problems, '; '.join(problems) or detail, [f'losses: {[round(v, 4) for v in losses]}',
                                                          '', f'fd/active: {active}']


def check_with_cp(device: str, work: Path):
    """mmpretrain ResNet-50 (narrow), FocusedDropout on a target inside a checkpointed block."""
    data = tiny_data(work)
    params, keep = {}, {}
    for with_cp in (False, True):
        cfg = fd_config(work, f'with_cp_{with_cp}', data, 'custom_hooks.0.participation=1.0',
                        'custom_hooks.0.weight_decay_multiplier=1.0', 'train_cfg.max_epochs=1')
        cfg.model.backbone = dict(type='ResNet', depth=50, stem_channels=16, base_channels=8,
                                  out_indices=(3, ), with_cp=with_cp, zero_init_residual=False)
        cfg.model.head.in_channels = 8 * 4 * 8
        cfg.custom_hooks[0].targets = ['backbone.layer3.0.conv2']
        cfg.optim_wrapper.optimizer = dict(type='SGD', lr=0.1)
        # mmengine's deterministic=True also calls torch.use_deterministic_algorithms(True), under
        # which CUDA refuses adaptive average pooling's backward: on CUDA only cuDNN's part is set
        cfg.randomness = dict(seed=0, deterministic=device == 'cpu')
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        runner, recorder, _ = train(cfg)
        params[with_cp] = recorder.params
        keep[with_cp] = [float(v) for v in runner.message_hub.get_scalar('train/fd/keep_ratio').data[0]]
    difference = max(((params[True][k] - v).abs().max() / v.abs().max().clamp_min(1e-30)).item()
                     for k, v in params[False].items())
    problems = []
    # equal up to the masks' response to float noise (CUDA's pooling backward is not deterministic)
    if max(abs(a - b) for a, b in zip(keep[True], keep[False])) > 0.01 or not all(k < 1 for k in keep[True]):
        problems.append(f'keep ratios with_cp {keep[True]} vs without {keep[False]} (all must be < 1 and agree)')
    if difference >= WITH_CP_TOLERANCE:
        problems.append(f'weights differ by {difference:.2e} (relative) >= {WITH_CP_TOLERANCE:g}')
    rounded = {k: [round(r, 4) for r in v] for k, v in keep.items()}
    detail = (f'{device}: {len(keep[True])} focused steps, keep ratios {rounded[True]} (with_cp) vs '
              f'{rounded[False]}, weights with_cp=True vs False within {difference:.1e} relative')
    return not problems, '; '.join(problems) or detail, []


# ------------------------------------------------------------------ 4. benchmark
def bench_runs(quick: bool) -> list:
    """(section heading, CLI arguments) of the benchmark runs, in order."""
    operator = ['--shapes', '32x1024x14x14', '--rounds', '9'] if quick else ['--rounds', '21']
    rounds = ['--rounds', '10' if quick else '40']
    return [('Operator, CUDA: run gpu-check', ['bench/bench_operator.py', '--device', 'cuda', *operator]),
            ('Training step, CUDA: run gpu-check', ['bench/bench_train_step.py', '--device', 'cuda', *rounds]),
            ('Training step, CUDA, AMP: run gpu-check',
             ['bench/bench_train_step.py', '--device', 'cuda', *rounds, '--amp'])]


def table_rows(section: str) -> list:
    """The cells of a markdown section's table rows (header and rule excluded)."""
    rows = [[c.strip() for c in line.strip().strip('|').split('|')] for line in section.splitlines()
            if line.startswith('|') and not line.startswith('|---')]
    return rows[1:]


def sections(path: Path) -> dict:
    """{heading: text} of the ``## `` sections of a results file."""
    text = path.read_text() if path.exists() else ''
    return {m[1]: m[2] for m in re.finditer(r'^## ([^\n]+)\n(.*?)(?=^## |\Z)', text, re.S | re.M)}


def operator_targets(section: str) -> list:
    """(line, met) per 14×14 row: FD × floor against OPERATOR_TARGET."""
    out = []
    for cells in table_rows(section):
        if cells[0].endswith('×14×14'):
            ratio = float(cells[5].split()[0])
            out.append((f'operator {cells[0]} {cells[1]} {cells[2]}: FD {ratio:.2f}× the floor '
                        f'(target ≤ {OPERATOR_TARGET}×)', ratio <= OPERATOR_TARGET))
    return out


def train_targets(section: str, label: str) -> list:
    """(line, met) for participation 0.1: images/s with FD / without, against TRAIN_TARGET."""
    for cells in table_rows(section):
        if cells[0] == 'FD, participation 0.1':
            speed = 1 / float(cells[3].split()[0])  # the figure is time with FD / time without
            return [(f'training {label}, participation 0.1: images/s with FD {speed:.3f}× without '
                     f'(target ≥ {TRAIN_TARGET}×)', speed >= TRAIN_TARGET)]
    return []


def check_benchmark(device: str, quick: bool, work: Path, budget: float):
    """The benchmark CLIs on CUDA with the time left, their sections in ``work``/benchmarks.md."""
    runs = bench_runs(quick)
    if device != 'cuda':
        raise Skipped("no CUDA device (the CPU rows are bench/results.md's, from bench/run_benchmarks.py)")
    results = work / 'benchmarks.md'
    results.unlink(missing_ok=True)
    failed, skipped, body, targets = [], [], [], []
    for index, (heading, args) in enumerate(runs):
        left = remaining(budget) - BENCH_MIN_SECONDS * (len(runs) - index - 1)  # keep the later runs' minimum
        command = [sys.executable, *args, '--run', 'gpu-check', '--results', str(results)]
        shown = ' '.join(command[1:])
        if left < BENCH_MIN_SECONDS:
            skipped.append(f'`{shown}` (not started: {max(left, 0):.0f} s of the budget left, '
                           f'{BENCH_MIN_SECONDS} s needed)')
            continue
        try:
            proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=left)
            code, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as expired:
            code, output = f'stopped after {left:.0f} s (the budget)', str(expired.stdout or '')
        section = sections(results).get(heading)
        if code != 0 or section is None:
            failed.append(f'`{shown}`: ' + (f'exit {code}' if code != 0 else f'wrote no section "{heading}"'))
            body += [f'`{shown}` failed ({code}):', '', '```', output[-3000:], '```', '']
            continue
        found = operator_targets(section) if heading.startswith('Operator') else \
            train_targets(section, 'bfloat16 AMP' if 'AMP' in heading else 'float32')
        if not found:
            failed.append(f'`{shown}`: section "{heading}" has no row for its target')
        targets += found
    lines = [f'{line}: **{"met" if met else "missed"}**' for line, met in targets]
    body = lines + [''] + body
    if results.exists():
        body += [('##' + line if line.startswith('#') else line) for line in results.read_text().splitlines()]
    written = len(runs) - len(failed) - len(skipped)
    detail = (f'{written} of {len(runs)} sections written; ' + '; '.join(lines or ['no target measured']) +
              ('; failed: ' + '; '.join(failed) if failed else ''))
    status = 'failed' if failed else ('skipped' if written == 0 else 'passed')
    if status == 'passed' and skipped:
        status, detail = 'failed', detail + f'; {len(skipped)} runs not started (time)'
    return status, detail, body, skipped


# ------------------------------------------------------------------ report
def hide_gpu_machine_absentees() -> str:
    """Hide what the GPU machine lacks, before fdrop_mm is imported: mmdet (find_spec('mmdet') is
    None, so no mmdet adapter loads) and mmcv's compiled ops (``import mmcv.ops`` fails as it does
    with mmcv-lite). Returns what mmcv's ops are here."""
    import importlib.util
    sys.modules.setdefault('mmdet', None)
    try:
        has_ops = importlib.util.find_spec('mmcv._ext') is not None
    except ImportError:  # no mmcv at all: the checks that need it fail and say so
        has_ops = False
    sys.modules.setdefault('mmcv._ext', None)
    return 'ops hidden' if has_ops else 'no compiled ops'


def environment(device: str, mmcv_ops: str) -> List[str]:
    import numpy
    versions = [f'torch {torch.__version__}', f'numpy {numpy.__version__}']
    for package in ('mmengine', 'mmcv', 'mmpretrain'):  # a missing one fails the checks that need it
        try:
            versions.append(f'{package} {__import__(package).__version__}' + (f' ({mmcv_ops})' if package == 'mmcv'
                                                                              else ''))
        except ImportError as error:
            versions.append(f'{package} missing ({error})')
    gpu = (f'{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}' if device == 'cuda'
           else 'no CUDA device: CPU mode')
    return [f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, python '
            f'{platform.python_version()}, {", ".join(versions)}, mmdet hidden; {gpu}.']


def write_report(path: Path, header: List[str], results: List[Result], pending: List[str], budget: float) -> None:
    lines = header + ['', '| check | result | seconds | detail |', '|---|---|---|---|']
    lines += [f'| {r.name} | {r.status} | {r.seconds:.1f} | {r.detail} |' for r in results]
    skipped = [f'{r.name} ({r.detail})' for r in results if r.status == 'skipped']
    skipped += [part for r in results for part in r.skipped_parts]
    skipped += [f'{name} (not reached: the run was stopped before it)' for name in pending]
    lines += ['', 'Skipped: ' + ('none' if not skipped else '; '.join(skipped)),
              '', f'Elapsed: {time.time() - STARTED:.0f} s of the {budget:.0f} s budget, Python\'s start included.', '']
    for r in results:
        if r.body:
            lines += [f'## {r.name}', ''] + r.body + ['']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(lines) + '\n')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--report', type=Path, default=Path('work_dirs/gpu_check/report.md'),
                        help='the markdown report to write (default: %(default)s)')
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/gpu_check'),
                        help="the checks' data, Runners' work dirs and benchmark sections (default: %(default)s)")
    parser.add_argument('--device', choices=('auto', 'cuda', 'cpu'), default='auto',
                        help='auto: cuda when torch sees a GPU, else cpu')
    parser.add_argument('--quick', action='store_true', help='smaller tensors and fewer benchmark rounds')
    parser.add_argument('--budget', type=float, help='seconds for the whole check, Python\'s start included; the '
                        'benchmarks get what the correctness checks leave (default 360, 180 with --quick)')
    args = parser.parse_args(argv)
    budget = args.budget or (180.0 if args.quick else 360.0)
    mmcv_ops = hide_gpu_machine_absentees()
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device')
    device = args.device if args.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    work = args.work_dir.resolve()
    command = 'bash bench/gpu_check.sh ' + ' '.join(argv if argv is not None else sys.argv[1:])
    header = ['# GPU check', '', *environment(device, mmcv_ops), '',
              f'Run: `{command.strip()}` on {device}{", quick" if args.quick else ""}.']
    if os.environ.get('GPU_CHECK_REHEARSAL'):
        header += ['', f'Rehearsal (`bash bench/gpu_check.sh --rehearse`): the GPU machine\'s Python, torch and numpy, '
                       f'and only the wheels of {os.environ["GPU_CHECK_REHEARSAL"]} on PYTHONPATH.']
    checks = [('operator', lambda: check_operator(device, args.quick)),
              ('amp-float16', lambda: check_amp(device, work, 'float16')),
              ('amp-bfloat16', lambda: check_amp(device, work, 'bfloat16'))]
    if device == 'cpu':
        checks.append(('train-float32 (CPU stand-in)', lambda: check_amp(device, work, None)))
    checks += [('with_cp', lambda: check_with_cp(device, work)),
               ('benchmark', lambda: check_benchmark(device, args.quick, work, budget))]
    results: List[Result] = []
    print('\n'.join(header), flush=True)
    write_report(args.report, header, results, [name for name, _ in checks], budget)
    for index, (name, check) in enumerate(checks):
        start = time.perf_counter()
        try:
            ok, detail, body, *parts = check()
            status = ok if isinstance(ok, str) else ('passed' if ok else 'failed')
            result = Result(name, status, detail, body=body, skipped_parts=parts[0] if parts else [])
        except Skipped as reason:
            result = Result(name, 'skipped', str(reason))
        except Exception as error:  # a check that breaks is a failed check; the others still run
            result = Result(name, 'failed', f'{type(error).__name__}: {error}'.replace('\n', ' ')[:300],
                            body=['```', traceback.format_exc()[-4000:], '```'])
        result.seconds = time.perf_counter() - start
        results.append(result)
        print(f'{name}: {result.status} ({result.seconds:.1f} s): {result.detail}', flush=True)
        write_report(args.report, header, results, [n for n, _ in checks[index + 1:]], budget)
    skipped_line = next(line for line in args.report.read_text().splitlines() if line.startswith('Skipped: '))
    print(f'{skipped_line}\nwrote {args.report} ({time.time() - STARTED:.0f} s of the {budget:.0f} s budget)')
    return 1 if any(r.status == 'failed' for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
