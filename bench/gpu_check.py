"""The GPU check in one go (issue 13 part 4): what a first GPU lease must show, in at most 10 minutes.

1. ``operator``: FocusedDropout on CUDA gives the CPU's mask, output and gradient, bit for bit,
   in float32, float16 and bfloat16, contiguous and channels_last.
2. ``benchmark``: forward + backward against the x·mask floor and nn.Dropout2d at 14×14 and
   56×56 (and 7×7) in float32, bfloat16 and float16, contiguous and channels_last, device
   synchronised (kernel-launch overhead included); images/s of a ResNet-50 training step with and
   without the hook, float32 and bfloat16 AMP: ``bench/bench_operator.py --device cuda`` and
   ``bench/bench_train_step.py --device cuda [--amp]``, run as their CLIs.
3. ``amp-float16``, ``amp-bfloat16``: the committed ResNet-20 + FocusedDropout CIFAR-100 config
   trained a few steps on generated data under ``AmpOptimWrapper``: finite losses, weight decay
   x2 inside focused steps' ``optimizer.step()`` and restored after.
4. ``with_cp``: mmpretrain's ResNet-50 with ``with_cp=True`` and a target inside a checkpointed
   block trains to the weights of ``with_cp=False`` (the recomputed forward reuses the γ).

On a machine without CUDA it runs what it can (channels_last against contiguous, a float32
stand-in of the training check, the with_cp check on the CPU) and the report names each skipped
check with its reason. mmdet is hidden from the whole run: the GPU machine has mmcv-lite (no
compiled ops) and no mmdet, and the CPU run must import what the GPU run imports.

    bash bench/gpu_check.sh [--report work_dirs/gpu_check/report.md] [--quick] [--device auto]

Exit status 1 when a check failed. The report is rewritten after every check, so a run stopped
by its time limit leaves the checks it finished.
"""
import argparse
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import List

import torch

REPO = Path(__file__).resolve().parents[1]
FD_CONFIG = 'configs/cifar/table2/resnet20_fd_1xb128_cifar100.py'
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BENCH_TIMEOUT = 150  # seconds per benchmark CLI run
WITH_CP_TOLERANCE = 1e-4  # max relative weight difference; a γ redrawn in the recomputation gives O(1)


class Skipped(Exception):
    """A check that cannot run here; the message says why."""


@dataclass
class Result:
    name: str
    status: str  # passed, failed or skipped
    detail: str
    seconds: float
    body: List[str] = field(default_factory=list)


# ------------------------------------------------------------------ 1. operator
def check_operator(device: str, quick: bool):
    """CUDA against the CPU (on the CPU: channels_last against contiguous)."""
    generator = torch.Generator().manual_seed(0)
    n, c, size = (4, 32, 14) if quick else (16, 256, 28)
    rows, bad, compared = ['| dtype | layout | mask | output | gradient |', '|---|---|---|---|---|'], [], 0
    for dtype in DTYPES:
        x = torch.randn(n, c, size, size, generator=generator).to(dtype)
        gamma = torch.empty(n).uniform_(0.3, 0.6, generator=generator)
        grad = torch.randn(n, c, size, size, generator=generator).to(dtype)
        reference = run_operator(x, gamma, grad)
        for channels_last in (False, True):
            layout = 'channels_last' if channels_last else 'contiguous'
            if device == 'cpu' and not channels_last:
                rows.append(f'| {dtype} | {layout} | skipped: the CPU reference itself | | |')
                continue
            got = run_operator(x.to(device), gamma.to(device), grad.to(device), channels_last)
            same = [torch.equal(a.cpu(), b) for a, b in zip(got, reference)]
            if channels_last and not got[1].is_contiguous(memory_format=torch.channels_last):
                same[1] = False
            compared += 1
            rows.append(f'| {dtype} | {layout} | ' + ' | '.join('equal' if s else '**differs**' for s in same) + ' |')
            if not all(same):
                bad.append(f'{dtype} {layout}')
    against = 'the CPU' if device == 'cuda' else 'contiguous on the CPU'
    detail = (f'{compared} variants on {device} bitwise equal to {against} (mask, output, gradient), '
              f'x {n}x{c}x{size}x{size}' if not bad else f'differs from {against}: {", ".join(bad)}')
    if device == 'cpu':
        detail += '; CUDA against CPU skipped: no CUDA device'
    return not bad, detail, rows


def run_operator(x, gamma, grad, channels_last=False):
    """(mask, output, input gradient) of focused_dropout on ``x``."""
    from fdrop_mm import focused_dropout
    if channels_last:
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    x = x.detach().clone().requires_grad_()
    out, keep = focused_dropout(x, gamma, return_keep=True)
    out.backward(grad)
    return keep, out.detach(), x.grad


# ------------------------------------------------------------------ 2. benchmark
def check_benchmark(device: str, quick: bool, work: Path):
    """The benchmark CLIs on CUDA, their sections written to ``work``/benchmarks.md."""
    if device != 'cuda':
        raise Skipped('no CUDA device (the CPU rows are bench/results.md\'s, from bench/run_benchmarks.py)')
    results = work / 'benchmarks.md'
    results.unlink(missing_ok=True)
    runs = [('bench/bench_operator.py', '--rounds', '5' if quick else '21'),
            ('bench/bench_train_step.py', '--rounds', '8' if quick else '40', '--run', 'fp32'),
            ('bench/bench_train_step.py', '--rounds', '8' if quick else '40', '--run', 'bf16-amp', '--amp')]
    failed, body = [], []
    for script, *args in runs:
        command = [sys.executable, script, '--device', 'cuda', *args, '--results', str(results)]
        try:
            proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BENCH_TIMEOUT)
            code, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as expired:
            code, output = f'timed out after {BENCH_TIMEOUT} s', str(expired.stdout or '')
        if code != 0:
            failed.append(f'`{" ".join(command[1:])}`: {code}')
            body += [f'`{" ".join(command[1:])}` failed ({code}):', '', '```', output[-3000:], '```', '']
    if results.exists():
        body += [('##' + line if line.startswith('#') else line) for line in results.read_text().splitlines()]
    detail = '; '.join(failed) if failed else f'{len(runs)} runs, their sections in {results}, copied below'
    return not failed, detail, body


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
    from fdrop_mm.testing.tiny_data import generate
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


# ------------------------------------------------------------------ report
def environment(device: str) -> List[str]:
    versions = [f'torch {torch.__version__}']
    for package in ('mmengine', 'mmcv', 'mmpretrain'):  # a missing one fails the checks that need it
        try:
            versions.append(f'{package} {__import__(package).__version__}')
        except ImportError:
            versions.append(f'{package} missing')
    gpu = (f'{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}' if device == 'cuda'
           else 'no CUDA device: CPU mode')
    return [f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, python '
            f'{platform.python_version()}, {", ".join(versions)}, mmdet hidden; {gpu}.']


def write_report(path: Path, header: List[str], results: List[Result]) -> None:
    lines = header + ['', '| check | result | seconds | detail |', '|---|---|---|---|']
    lines += [f'| {r.name} | {r.status} | {r.seconds:.1f} | {r.detail} |' for r in results]
    skipped = [r for r in results if r.status == 'skipped']
    lines += ['', 'Skipped: ' + ('none' if not skipped else '; '.join(f'{r.name} ({r.detail})' for r in skipped)), '']
    for r in results:
        if r.body:
            lines += [f'## {r.name}', ''] + r.body + ['']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(lines) + '\n')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--report', type=Path, default=Path('work_dirs/gpu_check/report.md'),
                        help='the markdown report to write (default: %(default)s)')
    parser.add_argument('--device', choices=('auto', 'cuda', 'cpu'), default='auto',
                        help='auto: cuda when torch sees a GPU, else cpu')
    parser.add_argument('--quick', action='store_true', help='smaller tensors and fewer benchmark repeats')
    args = parser.parse_args(argv)
    # before fdrop_mm is imported: find_spec('mmdet') is None, so no mmdet adapter loads, as on
    # the GPU machine (mmcv-lite, no mmdet)
    sys.modules.setdefault('mmdet', None)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device')
    device = args.device if args.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    work = args.report.resolve().parent
    command = 'bash bench/gpu_check.sh ' + ' '.join(argv if argv is not None else sys.argv[1:])
    header = ['# GPU check', '', *environment(device), '',
              f'Run: `{command.strip()}` on {device}{", quick" if args.quick else ""}.']
    checks = [('operator', lambda: check_operator(device, args.quick)),
              ('benchmark', lambda: check_benchmark(device, args.quick, work)),
              ('amp-float16', lambda: check_amp(device, work, 'float16')),
              ('amp-bfloat16', lambda: check_amp(device, work, 'bfloat16'))]
    if device == 'cpu':
        checks.append(('train-float32 (CPU stand-in)', lambda: check_amp(device, work, None)))
    checks.append(('with_cp', lambda: check_with_cp(device, work)))
    results: List[Result] = []
    for name, check in checks:
        start = time.perf_counter()
        try:
            ok, detail, body = check()
            result = Result(name, 'passed' if ok else 'failed', detail, 0.0, body)
        except Skipped as reason:
            result = Result(name, 'skipped', str(reason), 0.0)
        except Exception as error:  # a check that breaks is a failed check; the others still run
            result = Result(name, 'failed', f'{type(error).__name__}: {error}'.replace('\n', ' ')[:300], 0.0,
                            ['```', traceback.format_exc()[-4000:], '```'])
        result.seconds = time.perf_counter() - start
        results.append(result)
        print(f'{name}: {result.status} ({result.seconds:.1f} s): {result.detail}', flush=True)
        write_report(args.report, header, results)
    print(f'wrote {args.report}')
    return 1 if any(r.status == 'failed' for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
