"""FocusedDropout on (N, C, L) and (N, C, T, H, W) input: one reference channel and one mask over
all positions of a sample (§4), against the per-sample reference of tests/focused_dropout_reference.py
and hand computations, in every dtype and layout; and (N, C, H, W) results bit for bit those of
the operator before it took N-d input."""
import importlib
import importlib.util
import subprocess
import warnings
from pathlib import Path

import pytest
import torch

from fdrop_mm import FocusedDropout, focused_dropout, focused_mask, reference_channel
from fdrop_mm.focused_dropout import UndrivenFocusedDropoutWarning
from tests.focused_dropout_reference import DTYPES, exact_in, masks_forward_and_backward_as_the_reference, reference_mask

OPERATOR = importlib.import_module('fdrop_mm.focused_dropout')  # the module: fdrop_mm.focused_dropout is the function
REPO = Path(__file__).resolve().parents[1]
# the last commit of fdrop_mm/focused_dropout.py whose operator took (N, C, H, W) input only
BEFORE_ND = '9321c25f50799bcc98679f9020f107d0efc1c4f6'
POSITIONAL = {'1-D': (11,), '3-D': (3, 5, 6)}
LAYOUTS = ['contiguous', 'channels innermost']


def in_layout(x, layout):
    """x in ``layout``: for 'channels innermost', channels_last_3d (5-D), channels_last (4-D),
    or for 3-D the (N, C, L) transpose of a contiguous (N, L, C) tensor."""
    if layout == 'contiguous':
        return x.contiguous()
    if x.dim() == 3:
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


def assert_in_layout(t, layout):
    if layout == 'contiguous':
        assert t.is_contiguous()
    elif t.dim() == 3:
        assert t.transpose(1, 2).is_contiguous()
    else:
        assert t.is_contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('rank', POSITIONAL)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('seed', range(4))
def test_mask_matches_reference(dtype, rank, layout, seed):
    x = in_layout(exact_in(dtype, positional=POSITIONAL[rank], seed=seed), layout)
    gammas = [0.3, 0.45, 0.6, 0.9]
    mask = focused_mask(x, torch.tensor(gammas))
    assert mask.shape == (4, 1, *POSITIONAL[rank]) and mask.dtype == dtype
    assert torch.equal(mask.float(), reference_mask(x.float(), gammas))
    assert torch.equal(reference_channel(x), reference_channel(x.contiguous()))


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('shape', [(2, 256, 4, 14, 14), (4, 512, 640)], ids=['3-D', '1-D'])
@pytest.mark.parametrize('dtype', DTYPES)
def test_large_input_matches_reference(dtype, shape, layout):
    """Over 2^20 elements: a channels-innermost x is summed as one matrix-vector product per
    sample, a half-precision one in float32 a few samples at a time."""
    x = in_layout(exact_in(dtype, n=shape[0], c=shape[1], positional=shape[2:], seed=5), layout)
    gammas = [0.3, 0.45, 0.6, 0.9][:shape[0]]
    assert torch.equal(focused_mask(x, torch.tensor(gammas)).float(), reference_mask(x.float(), gammas))


def test_one_reference_channel_and_one_mask_per_clip():
    """(N, C, T, H, W): the reference channel has the highest mean over the clip's T×H×W, its peak
    is the clip's; the same frames as a batch of (N·T, C, H, W) maps get one mask per frame."""
    clip = torch.tensor([[[[[6.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]],   # channel 0: mean 1
                          [[[1.0, 1.0, 1.0]], [[2.0, 0.5, 3.0]]]]])  # channel 1: mean 8.5 / 6
    assert clip.shape == (1, 2, 2, 1, 3)
    # channel 1, peak 3 in frame 1, kept above 0.5 · 3: nothing in frame 0
    assert focused_mask(clip, 0.5).tolist() == [[[[[0.0, 0.0, 0.0]], [[1.0, 0.0, 1.0]]]]]
    assert reference_channel(clip).tolist() == [1]
    frames = clip.transpose(1, 2).flatten(0, 1)  # (N·T, C, H, W)
    # frame 0: channel 0 (mean 2), kept above 3; frame 1: channel 1 (mean 5.5 / 3), kept above 1.5
    assert reference_channel(frames).tolist() == [0, 1]
    assert focused_mask(frames, 0.5)[:, 0].tolist() == [[[1.0, 0.0, 0.0]], [[1.0, 0.0, 1.0]]]


def test_one_mask_over_a_signal():
    signal = torch.tensor([[[0.0, 4.0, 0.0, 0.0, 0.0],     # mean 0.8
                            [1.0, 1.0, 1.0, 2.0, 0.0]]])   # mean 1.0: the reference, peak 2
    assert focused_mask(signal, 0.5).tolist() == [[[0.0, 0.0, 0.0, 1.0, 0.0]]]
    assert focused_mask(signal, 0.4).tolist() == [[[1.0, 1.0, 1.0, 1.0, 0.0]]]


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('rank', POSITIONAL)
@pytest.mark.parametrize('dtype', DTYPES)
def test_module_forward_backward(dtype, rank, layout):
    x = in_layout(exact_in(dtype, positional=POSITIONAL[rank], seed=3), layout).requires_grad_()
    upstream = in_layout(exact_in(dtype, positional=POSITIONAL[rank], seed=4), layout)
    assert_in_layout(masks_forward_and_backward_as_the_reference(x, upstream), layout)
    assert_in_layout(x.grad, layout)


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('dtype', DTYPES)
def test_non_finite_and_degenerate_clips(dtype, layout):
    """Dropped units are exactly +0.0, also where x is negative, -inf or NaN; a channel with a
    NaN or -inf mean is not the reference; a clip without a positive peak is kept whole; a +inf
    peak keeps only its +inf positions."""
    x = exact_in(dtype, n=3, c=3, positional=(2, 3, 3), seed=6)
    x[:, 0] += 2  # channel 0: the reference (its mean is about 2, the others' about 0)
    focused = reference_mask(x[0:1, :1].float(), [0.5])[0, 0].bool()  # of sample 0, before the non-finite units
    dropped_at, kept_at = (~focused).nonzero()[:2].tolist(), focused.nonzero()[0].tolist()
    x[(0, 1, *dropped_at[0])] = -float('inf')
    x[(0, 2, *dropped_at[1])] = x[(0, 2, *kept_at)] = float('nan')
    x[1] = -x[1].abs() - 1
    x[2, 0, 1, 0, 0] = x[2, 0, 0, 2, 1] = float('inf')
    x = in_layout(x, layout)
    out = focused_dropout(x, 0.5)
    kept = focused_mask(x, 0.5).bool()
    assert torch.equal(kept[0, 0], focused)
    assert kept[1].all()
    assert kept[2, 0].sum() == 2 and kept[2, 0, 1, 0, 0] and kept[2, 0, 0, 2, 1]
    kept = kept.expand_as(x)
    bits = torch.int64 if dtype == torch.float64 else torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(out.view(bits)[~kept], torch.zeros_like(out.view(bits)[~kept]))
    assert torch.equal(out.view(bits)[kept], x.view(bits)[kept])
    assert out[(0, 2, *kept_at)].isnan(), 'a kept NaN stays NaN'


@pytest.mark.parametrize('shape', [(2, 3, 7), (2, 3, 4, 5), (2, 3, 2, 4, 5)], ids=['1-D', '2-D', '3-D'])
def test_only_the_mask_is_saved_for_the_backward(shape):
    x = torch.randn(*shape, requires_grad=True)
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.dtype))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = focused_dropout(x, 0.5)
    assert saved == [((shape[0], 1, *shape[2:]), torch.int32)]
    out.sum().backward()
    assert torch.equal(x.grad, focused_mask(x.detach(), 0.5).expand_as(x))


@pytest.mark.parametrize('rank', POSITIONAL)
def test_gamma_is_drawn_per_sample_and_keep_ratio_counts_all_positions(rank):
    # every sample's reference channel holds 0..99 / 99 over its positions: the kept count reveals its γ
    torch.manual_seed(0)
    positional = {'1-D': (100,), '3-D': (4, 5, 5)}[rank]
    x = (torch.arange(100.0) / 99).view(positional).expand(64, 1, *positional).clone()
    module = FocusedDropout(gamma_range=(0.3, 0.6)).train()
    kept = module(x).ne(0).flatten(1).sum(1)  # > γ·1 of 0..99/99 keeps 99 - floor(99γ) values
    assert kept.min() >= 99 - int(99 * 0.6) and kept.max() <= 99 - int(99 * 0.3)
    assert len(set(kept.tolist())) > 5, 'γ must differ between samples'
    assert module.last_keep_ratio == pytest.approx(kept.float().mean().item() / 100)


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('rank', POSITIONAL)
def test_vmap_masks_each_call_as_a_batch_does(rank, layout):
    x = in_layout(exact_in(torch.float32, n=5, positional=POSITIONAL[rank]), layout)
    expected = x * reference_mask(x, [0.4] * 5)
    assert torch.equal(torch.func.vmap(lambda sample: focused_dropout(sample[None], 0.4)[0])(x), expected)
    module = FocusedDropout(gamma_range=(0.4, 0.4)).train()
    assert torch.equal(torch.func.vmap(lambda sample: module(sample[None])[0], randomness='different')(x), expected)
    assert module.last_keep_ratio is None


def _net(rank):
    torch.manual_seed(0)
    conv = {'1-D': torch.nn.Conv1d, '3-D': torch.nn.Conv3d}[rank](3, 4, 3, padding=1)
    return torch.nn.Sequential(conv, FocusedDropout(gamma_range=(0.5, 0.5)))


def _net_input(rank):
    return torch.randn(2, 3, *POSITIONAL[rank], generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize('rank', POSITIONAL)
def test_torch_compile_trains_like_eager_without_a_graph_break(rank):
    """aot_eager values and gradients equal eager; the functional compiles to one graph (no
    data-dependent Python, so no host-device synchronisation)."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    x = _net_input(rank).requires_grad_()
    eager, compiled = _net(rank), _net(rank)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UndrivenFocusedDropoutWarning)
        out, expected = torch.compile(compiled, backend='aot_eager')(x), eager(x)
    assert torch.equal(out, expected)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    compiled_grad, x.grad = x.grad, None
    expected.backward(upstream)
    assert torch.equal(compiled_grad, x.grad) and torch.equal(compiled[0].weight.grad, eager[0].weight.grad)
    conv = eager[0]
    torch._dynamo.reset()
    counters.clear()
    torch.compile(lambda t: focused_dropout(conv(t), 0.5).relu(), backend='eager', fullgraph=True)(x)
    assert counters['stats']['unique_graphs'] == 1


@pytest.mark.parametrize('capture', ['jit.script', 'jit.trace', 'export'])
def test_capture_in_eval_mode_is_the_identity_and_in_training_names_focused_dropout(capture):
    x = _net_input('3-D')
    build = {'jit.script': lambda net: torch.jit.script(net),
             'jit.trace': lambda net: torch.jit.trace(net, x),
             'export': lambda net: torch.export.export(net, (x,)).module()}[capture]
    net = _net('3-D').eval()
    assert torch.equal(build(net)(x), net[0](x))
    net.train()
    with pytest.raises((RuntimeError, torch.jit.Error), match='FocusedDropout cannot .* eval mode'):
        build(net)(x)


# (N, C, H, W): bit for bit the operator before it took N-d input

@pytest.fixture(scope='module')
def before_nd(tmp_path_factory):
    """fdrop_mm/focused_dropout.py as of BEFORE_ND, imported from git."""
    source = subprocess.run(['git', 'show', f'{BEFORE_ND}:fdrop_mm/focused_dropout.py'], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    path = tmp_path_factory.mktemp('before_nd') / 'focused_dropout_before_nd.py'
    path.write_text(source)
    spec = importlib.util.spec_from_file_location('focused_dropout_before_nd', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bits(t):
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _four_d_inputs(dtype, layout):
    """Small, gemv-sized (channels_last) and multi-chunk (half precision) maps, with degenerate
    samples: zero, negative, a NaN channel, a +inf peak."""
    for shape in [(4, 6, 5, 7), (3, 16, 14, 14), (8, 256, 32, 32), (2, 3, 1, 1)]:
        x = exact_in(dtype, n=shape[0], c=shape[1], positional=shape[2:], seed=sum(shape))
        yield in_layout(x, layout)
    x = exact_in(dtype, n=4, c=5, positional=(6, 6), seed=9)
    x[0] = 0
    x[1] = -x[1].abs()
    x[2, 3, 2, 2] = float('nan')
    x[3, x[3].mean((1, 2)).argmax(), 1, 4] = float('inf')
    yield in_layout(x, layout)


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('dtype', DTYPES)
def test_four_d_results_are_bitwise_those_before_nd(before_nd, dtype, layout):
    """Channel sums, reference channel, masks, outputs and gradients, with a float γ, a (N,)
    γ, opposite, and the module's seeded γ draw."""
    compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    new = OPERATOR
    for x in _four_d_inputs(dtype, layout):
        n = x.shape[0]
        assert torch.equal(_bits(new._channel_sums(x, compute_dtype)), _bits(before_nd._channel_sums(x, compute_dtype)))
        assert torch.equal(reference_channel(x), before_nd.reference_channel(x))
        for gamma in (0.45, torch.linspace(0.3, 0.9, n)):
            assert torch.equal(_bits(focused_mask(x, gamma)), _bits(before_nd.focused_mask(x, gamma)))
            for opposite in (False, True):
                outputs = []
                for operator in (new.focused_dropout, before_nd.focused_dropout):
                    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
                    out, keep = operator(leaf, gamma, opposite=opposite, return_keep=True)
                    out.backward(torch.ones_like(out))
                    outputs.append((_bits(out), keep, _bits(leaf.grad), out.stride()))
                for now, before in zip(*outputs):
                    assert now == before if isinstance(now, tuple) else torch.equal(now, before)
        modules = [new.FocusedDropout().train(), before_nd.FocusedDropout().train()]
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            for module in modules:
                module.seed_gamma(3)
            assert torch.equal(*(_bits(module(x)) for module in modules))
