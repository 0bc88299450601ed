"""Forward + backward time of FocusedDropout against the memory floor and other dropouts.

Every figure is a ratio to the floor (``x * m`` with a precomputed (N, 1, *S) mask,
forward + backward, on the same tensor) measured in the same round: each round times every
candidate back to back (the order rotating), and the table gives the median of the
per-round ratios with their interquartile range and range, since absolute times on a shared
machine are noise. FocusedDropout reads x once more than the floor (for the channel sums):
the floor reads x, writes the output, reads the gradient and writes the input gradient, so
an unfused implementation is bounded by 5/4 = 1.25x the floor. Two references show what
that bound costs on the machine at hand, timed in the same rounds: the floor plus the fastest
read of x torch has (``x.sum()``), the best any unfused FocusedDropout can do there, and the
floor plus FocusedDropout's own channel sums and their argmax (``reference_channel(x)``);
FocusedDropout's time above the latter is its per-sample mask work and call overhead.

    python bench/bench_operator.py [--device cpu|cuda] [--threads 2] [--rounds 41]
        [--shapes 32x1024x14x14,8x1024x4x14x14,...] [--dtypes float32,bfloat16]
        [--layouts contiguous,channels_last]
        [--run 1] [--results bench/results.md | --results FILE | --results -] [--fused]

writes (or replaces) its section ``Operator, <device>: run <run>`` of bench/results.md. A shape
is (N, C, *S) with 1 to 3 positional dims; ``channels_last`` is channels_last_3d for 5-D shapes
and, for 3-D ones, the (N, C, L) transpose of a contiguous (N, L, C) tensor; the channel dropout
peer is nn.Dropout1d/2d/3d by rank, and the DropBlocks (2-D) are timed on 4-D shapes only.
On CPU, glibc's allocator is pinned first (see ``results_md.pin_malloc``). On CUDA every
timed sample is ``--cuda-calls`` full calls between two ``torch.cuda.synchronize()``, so the
ratios include kernel-launch overhead; float16 is added to the dtypes. ``--fused`` measures,
instead of the table, torch.compile of a BN + ReLU producer followed by FocusedDropout against
the same producer followed by ``x * m`` (section ``Operator fused with its producer
(torch.compile), CPU: run <run>``; see docs/benchmarks.md).
"""
import argparse
import statistics
import sys
import time
import warnings

import torch
from torch import nn

from fdrop_mm import FocusedDropout, focused_mask, reference_channel
from fdrop_mm.focused_dropout import UndrivenFocusedDropoutWarning

from results_md import Provenance, fmt_spread, pin_malloc, spread, write_section  # bench/ is this script's folder

# ResNet-50 layer3, layer1, layer4; a ResNet3d (I3D-R50) layer3-sized clip, as many elements as the first
SHAPES = [(32, 1024, 14, 14), (16, 256, 56, 56), (64, 2048, 7, 7), (8, 1024, 4, 14, 14)]
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
LAYOUTS = ['contiguous', 'channels_last']
CHANNEL_DROPOUT = {3: nn.Dropout1d, 4: nn.Dropout2d, 5: nn.Dropout3d}  # by rank of x
FLOOR = 'floor: x * precomputed mask'
FD = 'FocusedDropout'
READ = 'floor + x.sum()'
SUMS = 'floor + reference_channel(x)'
BOUND = 1.25  # the unfused bound, 5/4 of the floor's memory traffic
GAMMA = 0.45  # the floor's mask: the middle of the default γ range


def fwd_bwd(fn, x, grad):
    x.grad = None
    fn(x).backward(grad)


def channel_dropout_name(rank: int) -> str:
    return f'{CHANNEL_DROPOUT[rank].__name__}(0.1)'


def layout_name(rank: int, layout: str) -> str:
    """The layout as the table prints it for x of ``rank`` dims."""
    if layout == 'contiguous':
        return layout
    return {3: 'channels innermost', 4: 'channels_last', 5: 'channels_last_3d'}[rank]


def make_input(shape, dtype, layout: str, device: str):
    """A random x of ``shape`` in ``layout`` (see the module docstring), requiring grad."""
    if layout == 'contiguous':
        x = torch.randn(*shape, device=device)
    elif len(shape) == 3:
        x = torch.randn(shape[0], shape[2], shape[1], device=device).transpose(1, 2)
    else:
        x = torch.randn(*shape, device=device).contiguous(
            memory_format=torch.channels_last if len(shape) == 4 else torch.channels_last_3d)
    return x.to(dtype).requires_grad_()  # .to keeps the strides


def candidates(x, with_mmdet: bool) -> dict:
    """{name: callable} for the floor, FocusedDropout and the dropouts it is compared with."""
    floor_mask = focused_mask(x.detach(), GAMMA)
    out = {FLOOR: lambda t: t * floor_mask, FD: FocusedDropout().train(),
           READ: lambda t: (t.detach().sum(), t * floor_mask)[1],
           SUMS: lambda t: (reference_channel(t.detach()), t * floor_mask)[1],
           channel_dropout_name(x.dim()): CHANNEL_DROPOUT[x.dim()](0.1).train()}
    if x.dim() != 4:  # the DropBlocks are 2-D
        return out
    try:
        from timm.layers import DropBlock2d
        out['timm DropBlock2d(0.1, 7)'] = DropBlock2d(drop_prob=0.1, block_size=7).train()
    except ImportError:
        pass
    if with_mmdet:  # 10-40x the floor: timed on float32 contiguous only, it would dominate the run time
        try:
            from mmdet.models.layers import DropBlock
            out['mmdet DropBlock(0.1, 7)'] = DropBlock(drop_prob=0.1, block_size=7, warmup_iters=0).train()
        except ImportError:
            pass
    return out


def interleaved(fns: dict, inputs, rounds: int, calls: int, sync) -> dict:
    """{name: (median seconds per call, [per-round ratio to the first entry])}; every round
    times each entry once (``calls`` calls between two syncs), the order rotating."""
    names = list(fns)
    for name in names:  # warm-up
        fns[name](*inputs)
    sync()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                fn(*inputs)
            sync()
            times[name].append((time.perf_counter() - start) / calls)
    base = times[names[0]]
    return {name: (statistics.median(t), [a / b for a, b in zip(t, base)]) for name, t in times.items()}


def measure(shape, dtype, layout, rounds, device='cpu', calls=1) -> dict:
    """{name: (median ms, spread of per-round ratios to the floor)} for forward + backward."""
    x = make_input(shape, dtype, layout, device)
    grad = torch.randn_like(x)  # x's strides
    with_mmdet = device == 'cpu' and dtype == torch.float32 and layout == 'contiguous'
    fns = {name: (lambda fn: lambda: fwd_bwd(fn, x, grad))(fn) for name, fn in candidates(x, with_mmdet).items()}
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UndrivenFocusedDropoutWarning)
        results = interleaved(fns, (), rounds, calls, sync)
    return {name: (seconds * 1e3, spread(ratios)) for name, (seconds, ratios) in results.items()}


PEERS = ['nn.Dropout2d(0.1)', 'timm DropBlock2d(0.1, 7)', 'mmdet DropBlock(0.1, 7)']  # the first by rank


def variant_rows(shape, dtype_name, layout, results) -> list:
    ms, fd = results[FD]
    peers = ' / '.join(f'{results[n][1]["median"]:.2f}' if n in results else '–'
                       for n in [channel_dropout_name(len(shape)), *PEERS[1:]])
    met = '**met**' if fd['median'] <= BOUND else '**missed**'
    return [f'| {"×".join(map(str, shape))} | {dtype_name} | {layout_name(len(shape), layout)} | '
            f'{results[FLOOR][0]:.2f} | '
            f'{ms:.2f} | {fmt_spread(fd)} | {results[READ][1]["median"]:.2f} | {results[SUMS][1]["median"]:.2f} | '
            f'{peers} | {met} |']


def operator_section(device, rounds, shapes, dtypes, layouts, calls=1, allocator='') -> list:
    """The section's lines: its provenance, one row per shape × dtype × layout, then the peers' names."""
    record = Provenance()
    threads = torch.get_num_threads()
    where = (f'CPU, {threads} thread{"s" if threads > 1 else ""}' if device == 'cpu' else
             f'CUDA {torch.cuda.get_device_name()}, {calls} calls between two synchronisations per sample')
    lines = [f'{where}; {rounds} interleaved rounds (each times every operator back to back, the order '
             f'rotating); × floor = median of the per-round ratios (IQR, range). Bound: ≤ {BOUND}× the floor.', '']
    rows = []
    for shape in shapes:
        for dtype_name in dtypes:
            for layout in layouts:
                results = measure(shape, DTYPES[dtype_name], layout, rounds, device, calls)
                rows += variant_rows(shape, dtype_name, layout, results)
                print(rows[-1], flush=True)
    lines += [f'| shape | dtype | layout | floor ms | FD ms | FD × floor (IQR, range) | `{READ}` × floor | '
              f'`{SUMS}` × floor | {" / ".join(PEERS)} × floor (nn.Dropout1d/3d on 3-D/5-D x) | ≤ {BOUND}× |',
              '|---|---|---|---|---|---|---|---|---|---|', *rows, '',
              f'`{READ}`: the floor and one read of x, the least any unfused FocusedDropout can cost here; '
              f'`{SUMS}`: the floor and FocusedDropout\'s channel sums and their argmax; the rest of FD × floor is its '
              'per-sample mask work and call overhead.', '']
    if device == 'cpu' and not torch.cuda.is_available():
        lines += ['CUDA rows: not taken here (torch.cuda.is_available() is False); `bench/bench_operator.py '
                  '--device cuda` takes them where there is a GPU (bench/gpu_check.sh runs it).', '']
    return record.lines() + lines + ([allocator + '.', ''] if allocator else [])


def fused_section(rounds, shape=(32, 1024, 14, 14), bn='train') -> list:
    """torch.compile of a BN + ReLU producer followed by FD, against the producer followed by
    x * m (the floor's block) and the producer alone, and the same blocks eager (CPU, float32):
    whether inductor takes the channel sums in the kernel that writes x. (A conv before BN is
    a separate oneDNN call in every block: it adds the same time to each and only noise to
    the differences.) ``bn='eval'`` puts BN in eval mode with non-trivial running statistics
    (``norm_eval``, frozen BN): BN + ReLU is then pointwise, so inductor may fold it into the
    loop of FD's channel sums. The lines start with the section's provenance."""
    record = Provenance()
    torch.manual_seed(0)
    x = torch.randn(*shape).requires_grad_()
    grad = torch.randn(*shape)
    producer = nn.Sequential(nn.BatchNorm2d(shape[1]), nn.ReLU()).train(bn == 'train')
    if bn == 'eval':
        producer[0].running_mean.uniform_(-0.5, 0.5)
        producer[0].running_var.uniform_(0.5, 2.0)
    floor_mask = focused_mask(producer(x).detach(), GAMMA)
    fd = FocusedDropout().train()
    blocks = {'BN+ReLU + x * m': lambda t: producer(t) * floor_mask,  # first: the ratios' denominator
              'BN+ReLU + FocusedDropout': lambda t: fd(producer(t)),
              'BN+ReLU': producer}
    fns = {}
    for kind in ('compiled', 'eager'):
        for name, block in blocks.items():
            fns[f'{kind} {name}'] = (lambda fn: lambda: fwd_bwd(fn, x, grad))(
                torch.compile(block) if kind == 'compiled' else block)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UndrivenFocusedDropoutWarning)
        results = interleaved(fns, (), rounds, 1, lambda: None)
    floor = 'compiled BN+ReLU + x * m'

    def vs_floor(kind):  # FD block / floor block of the same kind, per round
        return spread([b / f for b, f in zip(results[f'{kind} BN+ReLU + FocusedDropout'][1],
                                             results[f'{kind} BN+ReLU + x * m'][1])])

    def added_ms(kind):
        return (results[f'{kind} BN+ReLU + FocusedDropout'][0] - results[f'{kind} BN+ReLU + x * m'][0]) * 1e3

    lines = [f'CPU, {torch.get_num_threads()} thread(s), float32 {"×".join(map(str, shape))}, '
             f'BN ({"training" if bn == "train" else "eval mode"}) + ReLU '
             f'producer, forward + backward; {rounds} interleaved rounds; ratios to `{floor}` in the same round.', '',
             '| block | ms | × compiled floor block (IQR, range) |', '|---|---|---|']
    lines += [f'| {name} | {seconds * 1e3:.2f} | {fmt_spread(spread(ratios))} |'
              for name, (seconds, ratios) in results.items()]
    compiled, eager = vs_floor('compiled'), vs_floor('eager')
    lines += ['', f'Compiled, the FocusedDropout block costs {fmt_spread(compiled)}× the x·m block (bound ≤ {BOUND}×: '
                  f'**{"met" if compiled["median"] <= BOUND else "missed"}**); FD adds {added_ms("compiled"):.2f} ms '
                  f'to the block. Eager: {fmt_spread(eager)}×, FD adds {added_ms("eager"):.2f} ms.', '']
    return record.lines() + lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (torch.set_num_threads)')
    parser.add_argument('--rounds', '--repeats', type=int, default=41, help='interleaved rounds per configuration')
    parser.add_argument('--shapes', default=','.join('x'.join(map(str, s)) for s in SHAPES),
                        help='comma-separated NxCxL, NxCxHxW or NxCxTxHxW')
    parser.add_argument('--dtypes', default='float32,bfloat16', help=f'comma-separated, of {", ".join(DTYPES)}'
                        '; on CUDA float16 is added')
    parser.add_argument('--layouts', default='contiguous,channels_last', help=f'comma-separated, of {", ".join(LAYOUTS)}')
    parser.add_argument('--cuda-calls', type=int, default=20, help='CUDA: calls between two synchronisations')
    parser.add_argument('--run', default='1', help='label of this run: its section is "Operator, <device>: run <run>"')
    parser.add_argument('--results', '--out', default=None, help='results file to write the section into '
                        '(default bench/results.md); "-" only prints')
    parser.add_argument('--fused', action='store_true', help='instead of the table: torch.compile of a BN + ReLU '
                        'producer with FocusedDropout against it with x * m (CPU, float32, the first --shapes entry)')
    parser.add_argument('--bn', choices=['train', 'eval'], default='train',
                        help="--fused: the producer's BN in training mode or in eval mode (norm_eval)")
    args = parser.parse_args()
    try:
        shapes = [tuple(int(v) for v in s.split('x')) for s in args.shapes.split(',')]
        assert all(len(s) in CHANNEL_DROPOUT and min(s) > 0 for s in shapes)
    except (ValueError, AssertionError):
        parser.error(f'--shapes must be comma-separated NxCxL, NxCxHxW or NxCxTxHxW with positive sizes, '
                     f'got {args.shapes!r}')
    dtypes, layouts = args.dtypes.split(','), args.layouts.split(',')
    for field, values, known in (('--dtypes', dtypes, DTYPES), ('--layouts', layouts, LAYOUTS)):
        if not set(values) <= set(known):
            parser.error(f'{field}: unknown {sorted(set(values) - set(known))}, choose from {", ".join(known)}')
    if args.rounds < 2:
        parser.error('--rounds must be at least 2 (the spread of the per-round ratios)')
    if args.device == 'cuda':
        if not torch.cuda.is_available():
            sys.exit(f'bench_operator.py --device cuda: no CUDA device here (torch {torch.__version__}, '
                     f'built for CUDA {torch.version.cuda}, torch.cuda.is_available() is False); '
                     'run it on a machine with a GPU, or use --device cpu')
        if 'float16' not in dtypes:
            dtypes.append('float16')
    allocator = pin_malloc() if args.device == 'cpu' else ''
    torch.set_num_threads(args.threads)
    calls = args.cuda_calls if args.device == 'cuda' else 1
    if args.fused:
        if args.device != 'cpu':
            parser.error('--fused measures inductor\'s CPU kernels: use it with --device cpu')
        if len(shapes[0]) != 4:
            parser.error(f'--fused times a BatchNorm2d producer: its shape (the first --shapes entry) must be '
                         f'NxCxHxW, got {args.shapes.split(",")[0]}')
        lines = fused_section(args.rounds, shapes[0], args.bn) + [allocator + '.', '']
        heading = (f'Operator fused with its producer (torch.compile{", BN eval" if args.bn == "eval" else ""}), '
                   f'CPU: run {args.run}')
    else:
        lines = operator_section(args.device, args.rounds, shapes, dtypes, layouts, calls, allocator)
        heading = f'Operator, {args.device.upper() if args.device == "cuda" else "CPU"}: run {args.run}'
    print('\n'.join([f'## {heading}', '', *lines]))
    if args.results != '-':
        write_section(heading, lines, **({'path': args.results} if args.results else {}))
        print(f'wrote section "{heading}" of {args.results or "bench/results.md"}')


if __name__ == '__main__':
    main()
