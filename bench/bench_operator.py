"""Forward + backward time of FocusedDropout against the memory floor and other dropouts.

Every row is a ratio to the floor measured in the same run (``x * m`` with a precomputed
(N, 1, H, W) mask, forward + backward, on the same tensor), since absolute times on shared
machines are noise. Runs are interleaved (A/B/A/B..., the order rotating) and the median is
taken. On CUDA the timings synchronise the device and cover float32 and bfloat16, contiguous
and channels_last.

    python bench/bench_operator.py [--threads 2] [--repeats 15] [--out FILE]

bench/run_benchmarks.py runs it with the other benchmarks into bench/results.md.
"""
import argparse
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import torch
from torch import nn

from fdrop_mm import FocusedDropout, focused_mask

SHAPES = [(32, 1024, 14, 14), (64, 256, 56, 56)]
FLOOR = 'floor: x * precomputed mask'
# (dtype, channels_last) variants timed on CUDA; the CPU runs float32 contiguous only
CUDA_VARIANTS = [(torch.float32, False), (torch.bfloat16, False), (torch.float32, True), (torch.bfloat16, True)]
TARGET = 1.2  # FocusedDropout <= 1.2x the floor and <= 1.2x nn.Dropout2d (issue #7)


def machine() -> str:
    """Date, CPU model, cores, torch version and GPU, for the header of a results file."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
    return (f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} cores, '
            f'torch {torch.__version__}, {gpu}')


def fwd_bwd(fn, x, grad):
    x.grad = None
    fn(x).backward(grad)


def candidates(x):
    floor_mask = focused_mask(x.detach(), 0.45)
    out = {
        FLOOR: lambda t: t * floor_mask,
        'FocusedDropout': FocusedDropout().train(),
        'nn.Dropout2d(0.1)': nn.Dropout2d(0.1).train(),
    }
    try:
        from timm.layers import DropBlock2d
        out['timm DropBlock2d(0.1, 7)'] = DropBlock2d(drop_prob=0.1, block_size=7).train()
    except ImportError:
        pass
    try:
        from mmdet.models.layers import DropBlock
        out['mmdet DropBlock(0.1, 7)'] = DropBlock(drop_prob=0.1, block_size=7, warmup_iters=0).train()
    except ImportError:
        pass
    return out


def measure(shape, repeats, device='cpu', dtype=torch.float32, channels_last=False):
    """{name: (median ms, median / floor median)} for forward + backward on one tensor."""
    x = torch.randn(*shape, device=device).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad = torch.randn_like(x)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    fns = candidates(x)
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fwd_bwd(fn, x, grad)
    names = list(fns)
    for r in range(repeats):  # rotate the order, so that no candidate always runs first
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            sync()
            start = time.perf_counter()
            fwd_bwd(fn, x, grad)
            sync()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor = medians[FLOOR]
    return {name: (m * 1e3, m / floor) for name, m in medians.items()}


def verdict(results) -> str:
    """Whether FocusedDropout meets the targets against the floor and nn.Dropout2d."""
    fd = results['FocusedDropout'][1]
    vs_dropout = fd / results['nn.Dropout2d(0.1)'][1]
    met = fd <= TARGET and vs_dropout <= TARGET
    return (f'FocusedDropout: {fd:.2f}× the floor, {vs_dropout:.2f}× nn.Dropout2d '
            f'(targets ≤ {TARGET}× both): **{"met" if met else "missed"}**')


def table(shape, results, variant='') -> list:
    lines = [f'### {"x".join(map(str, shape))}{variant}', '', '| operator | ms | × floor |', '|---|---|---|']
    lines += [f'| {name} | {ms:.2f} | {ratio:.2f} |' for name, (ms, ratio) in results.items()]
    return lines + ['', verdict(results), '']


def cpu_section(repeats) -> list:
    lines = [f'CPU, float32, contiguous, {torch.get_num_threads()} threads, median of {repeats} '
             'interleaved runs.', '']
    for shape in SHAPES:
        lines += table(shape, measure(shape, repeats))
    return lines


def cuda_section(repeats) -> list:
    lines = [f'CUDA ({torch.cuda.get_device_name()}), median of {repeats} interleaved runs, '
             'device synchronised around each run.', '']
    for shape in SHAPES:
        for dtype, channels_last in CUDA_VARIANTS:
            variant = f', {str(dtype).split(".")[1]}{", channels_last" if channels_last else ""}'
            lines += table(shape, measure(shape, repeats, 'cuda', dtype, channels_last), variant)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--out', help='also write the table to this file')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = ['# FocusedDropout operator, forward + backward', '', machine() + '.', ''] + cpu_section(args.repeats)
    if torch.cuda.is_available():
        lines += cuda_section(args.repeats)
    text = '\n'.join(lines)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
        print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
