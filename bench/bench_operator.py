"""Forward + backward time of FocusedDropout against the memory floor and other dropouts.

Every row is a ratio to the floor measured in the same run (``x * m`` with a precomputed
(N, 1, H, W) mask, forward + backward, on the same tensor), since absolute times on shared
machines are noise. Runs are interleaved (A/B/A/B...) and the median is taken.

    python bench/bench_operator.py [--threads 2] [--repeats 15] [--out bench/operator.md]
"""
import argparse
import platform
import statistics
import time
from datetime import date

import torch
from torch import nn

from fdrop_mm import FocusedDropout, focused_mask

SHAPES = [(32, 1024, 14, 14), (64, 256, 56, 56)]


def fwd_bwd(fn, x, grad):
    x.grad = None
    fn(x).backward(grad)


def candidates(x):
    floor_mask = focused_mask(x.detach(), 0.45)
    fd = FocusedDropout().train()
    dropout2d = nn.Dropout2d(0.1).train()
    out = {
        'floor: x * precomputed mask': lambda t: t * floor_mask,
        'FocusedDropout': fd,
        'nn.Dropout2d(0.1)': dropout2d,
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


def measure(shape, repeats):
    x = torch.randn(*shape, requires_grad=True)
    grad = torch.randn(*shape)
    fns = candidates(x)
    times = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up
        fwd_bwd(fn, x, grad)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fwd_bwd(fn, x, grad)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor = medians['floor: x * precomputed mask']
    return {name: (m * 1e3, m / floor) for name, m in medians.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--out', default='bench/operator.md')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [f'# FocusedDropout operator, CPU, float32, forward + backward',
             '', f'{date.today()}, {platform.processor() or platform.machine()}, '
             f'{args.threads} threads, torch {torch.__version__}, median of {args.repeats} '
             'interleaved runs.', '']
    for shape in SHAPES:
        lines += [f'## {"x".join(map(str, shape))}', '', '| operator | ms | × floor |', '|---|---|---|']
        for name, (ms, ratio) in measure(shape, args.repeats).items():
            lines.append(f'| {name} | {ms:.1f} | {ratio:.2f} |')
        lines.append('')
    text = '\n'.join(lines)
    print(text)
    with open(args.out, 'w') as f:
        f.write(text)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
