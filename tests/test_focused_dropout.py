"""The operator against a plain per-sample reference, in every dtype and layout
(tests/test_focused_dropout_nd.py: the same for 1-D and 3-D positional dims)."""
import pytest
import torch

from fdrop_mm import FocusedDropout, focused_mask
from tests.focused_dropout_reference import (DTYPES, exact_in, masks_forward_and_backward_as_the_reference,
                                            reference_mask)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('seed', range(10))
def test_mask_matches_reference(dtype, seed):
    x = exact_in(dtype, seed=seed)
    gammas = [0.3, 0.45, 0.6, 0.9]
    mask = focused_mask(x, torch.tensor(gammas))
    assert mask.shape == (4, 1, 5, 7) and mask.dtype == dtype
    # float32 compute can differ from the float64 reference only at exact threshold ties
    assert torch.equal(mask.float(), reference_mask(x.float(), gammas))


@pytest.mark.parametrize('shape', [(1, 3, 4, 4), (2, 8, 3, 9), (3, 1, 1, 1), (2, 5, 11, 2)])
def test_mask_shapes_batch_one_and_non_square(shape):
    x = torch.randn(*shape)
    assert torch.equal(focused_mask(x, 0.5), reference_mask(x, [0.5] * shape[0]))


def test_scalar_gamma_equals_per_sample_gamma():
    x = torch.randn(3, 4, 6, 6)
    assert torch.equal(focused_mask(x, 0.4), focused_mask(x, torch.full((3,), 0.4)))


def test_channels_last_gives_same_mask_and_keeps_layout():
    x = torch.randn(4, 16, 9, 7)
    xcl = x.to(memory_format=torch.channels_last)
    assert torch.equal(focused_mask(x, 0.5), focused_mask(xcl, 0.5))
    module = FocusedDropout(gamma_range=(0.5, 0.5)).train()
    out = module(xcl)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, module(x))


def test_reference_channel_is_first_maximal_mean_and_peak_always_kept():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 1] = torch.tensor([[4.0, 0.0], [0.0, 0.0]])  # mean 1
    x[0, 2] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # mean 1 too: tie, channel 1 wins
    mask = focused_mask(x, 0.9)
    assert mask[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_threshold_is_strict():
    x = torch.tensor([[[[1.0, 0.5], [0.25, 0.0]]]])
    assert focused_mask(x, 0.5)[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_gamma_one_keeps_the_peak_positions():
    x = torch.tensor([[[[2.0, 1.0], [2.0, 0.5]]]])
    assert focused_mask(x, 1.0)[0, 0].tolist() == [[1.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize('fill', [0.0, -1.0])
def test_non_positive_reference_keeps_whole_sample(fill):
    x = torch.randn(2, 3, 4, 4)
    x[1] = fill
    mask = focused_mask(x, 0.5)
    assert torch.all(mask[1] == 1)
    assert torch.equal(mask, reference_mask(x, [0.5, 0.5]))


def test_mask_has_no_autograd():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert not focused_mask(x, 0.5).requires_grad


def test_module_multiplies_by_mask_without_rescaling():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 6)
    out = FocusedDropout(gamma_range=(0.5, 0.5)).train()(x)
    assert torch.equal(out, x * focused_mask(x, 0.5))


def test_opposite_keeps_the_complement():
    x = torch.randn(4, 8, 6, 6)
    out = FocusedDropout(gamma_range=(0.4, 0.4), opposite=True).train()(x)
    assert torch.equal(out, x * (1 - focused_mask(x, 0.4)))


def test_gamma_is_drawn_per_sample_within_range():
    # Sample 0's reference channel holds 0..99 / 99: the kept count reveals its γ.
    torch.manual_seed(0)
    ramp = torch.arange(100.0).view(10, 10) / 99
    x = ramp.expand(64, 1, 10, 10).clone()
    module = FocusedDropout(gamma_range=(0.3, 0.6)).train()
    kept = module(x).ne(0).flatten(1).sum(1)  # > γ·1 of 0..99/99 keeps 99 - floor(99γ) values
    assert kept.min() >= 99 - int(99 * 0.6) and kept.max() <= 99 - int(99 * 0.3)
    assert len(set(kept.tolist())) > 5, 'γ must differ between samples'
    assert module.last_keep_ratio == pytest.approx(kept.float().mean().item() / 100)


def test_identity_in_eval_and_when_inactive():
    x = torch.randn(2, 4, 5, 5)
    module = FocusedDropout()
    assert module.eval()(x) is x
    module.train()
    module.active = False
    assert module(x) is x


def test_gradient_is_zero_on_dropped_and_upstream_on_kept():
    x = torch.randn(3, 5, 6, 4, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 5, 6, 4, dtype=torch.float64)
    FocusedDropout(gamma_range=(0.5, 0.5)).train()(x).backward(upstream)
    mask = focused_mask(x.detach(), 0.5).expand_as(x).bool()
    assert torch.all(x.grad[~mask] == 0)
    assert torch.equal(x.grad[mask], upstream[mask])


@pytest.mark.parametrize('dtype', DTYPES)
def test_gradient_of_channels_last_and_broadcast_upstream(dtype):
    x = torch.randn(2, 3, 4, 5).to(dtype).to(memory_format=torch.channels_last).requires_grad_()
    out = FocusedDropout(gamma_range=(0.5, 0.5)).train()(x)
    out.sum().backward()  # the upstream gradient is an expanded (stride 0) tensor
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.grad, focused_mask(x.detach(), 0.5).expand_as(x))


def test_seeded_gamma_repeats_and_continues():
    x = torch.rand(8, 3, 6, 6)
    module = FocusedDropout().train()
    module.seed_gamma(7)
    first, second = module(x), module(x)
    assert not torch.equal(first, second), 'the generator continues over forwards'
    torch.manual_seed(0)  # the global RNG plays no part
    module.seed_gamma(7)
    assert torch.equal(module(x), first) and torch.equal(module(x), second)
    module.seed_gamma(None)
    torch.manual_seed(1)
    global_rng = module(x)
    torch.manual_seed(1)
    assert torch.equal(module(x), global_rng)


@pytest.mark.parametrize('dtype', DTYPES)
def test_module_forward_backward_every_dtype(dtype):
    masks_forward_and_backward_as_the_reference(exact_in(dtype, seed=3).requires_grad_(), exact_in(dtype, seed=4))


@pytest.mark.parametrize('bad, error, words', [
    (torch.randn(2, 3), ValueError, 'got a 2-D tensor of shape (2, 3)'),
    (torch.randn(1, 2, 3, 4, 5, 6), ValueError, 'got a 6-D tensor of shape (1, 2, 3, 4, 5, 6)'),
    (torch.ones(2, 3, 4, 4, dtype=torch.int64), TypeError, 'floating-point'),
    (torch.ones(2, 3, 4, 4, 4, dtype=torch.int32), TypeError, 'got dtype torch.int32 (x of shape (2, 3, 4, 4, 4))'),
])
def test_bad_input_is_rejected(bad, error, words):
    with pytest.raises(error, match=words.replace('(', r'\(').replace(')', r'\)')):
        focused_mask(bad, 0.5)
    with pytest.raises(error):
        FocusedDropout().train()(bad)


@pytest.mark.parametrize('gamma', [0.0, -0.1, 1.5])
def test_gamma_outside_unit_interval_is_rejected(gamma):
    with pytest.raises(ValueError, match='gamma'):
        focused_mask(torch.randn(1, 2, 3, 3), gamma)
    with pytest.raises(ValueError, match='gamma'):
        focused_mask(torch.randn(2, 2, 3, 3), torch.tensor([0.5, gamma]))


@pytest.mark.parametrize('gamma_range', [(0.6, 0.3), (0.0, 0.5), (0.5, 1.2)])
def test_bad_gamma_range_is_rejected(gamma_range):
    with pytest.raises(ValueError, match='gamma_range'):
        FocusedDropout(gamma_range=gamma_range)


def test_gamma_tensor_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r'shape \(2,\)'):
        focused_mask(torch.randn(2, 2, 3, 3), torch.tensor([0.5]))


@pytest.mark.parametrize('use_reentrant', [True, False])
def test_held_gamma_gives_a_recomputed_forward_the_original_mask(use_reentrant):
    """Activation checkpointing recomputes the forward in the backward: with a seeded γ held
    after the forward (what FocusedDropoutHook does), the recomputation masks as the forward did;
    without the hold the seeded generator would continue and mask elsewhere."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(6, 3, 10, 10, requires_grad=True)
    gradients = {}
    for case in ('plain', 'checkpointed', 'checkpointed, not held'):
        module = FocusedDropout().train()
        module.seed_gamma(11)
        block = torch.nn.Sequential(conv, module)
        out = block(x) if case == 'plain' else \
            torch.utils.checkpoint.checkpoint(block, x, use_reentrant=use_reentrant)
        if case != 'checkpointed, not held':
            module.hold_gamma()
        conv.zero_grad()
        out.square().sum().backward()
        gradients[case] = conv.weight.grad.clone()
    assert torch.equal(gradients['checkpointed'], gradients['plain'])
    assert not torch.allclose(gradients['checkpointed, not held'], gradients['plain'])


def test_hold_ends_at_the_next_seed():
    x = torch.rand(8, 3, 6, 6)
    module = FocusedDropout().train()
    module.seed_gamma(7)
    first = module(x)
    module.hold_gamma()
    assert torch.equal(module(x), first)
    module.seed_gamma(7)
    assert torch.equal(module(x), first) and not torch.equal(module(x), first)


@pytest.mark.parametrize('opposite', [False, True])
def test_functional_is_what_the_module_computes(opposite):
    from fdrop_mm.focused_dropout import focused_dropout
    x = exact_in(torch.float32, n=5)
    module = FocusedDropout(gamma_range=(0.4, 0.4), opposite=opposite).train()
    mask = focused_mask(x, 0.4)
    expected = x * (1 - mask if opposite else mask)
    assert torch.equal(focused_dropout(x, 0.4, opposite=opposite), expected)
    assert torch.equal(focused_dropout(x, torch.full((5, ), 0.4), opposite=opposite), expected)
    assert torch.equal(module(x), expected)
    with pytest.raises(TypeError, match='gamma'):
        focused_dropout(x, '0.4')


# Beyond first-order eager autograd (docs/operator.md, "Beyond eager autograd")

def _grid_input(n=3, c=4, h=5, w=6, seed=0):
    """float64 x on a grid of 1/8 with channel 0 the clear reference: finite differences of a
    few 1e-6 move no value across the threshold at γ = 0.4321 and change no argmax."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-16, 17, (n, c, h, w), generator=g).double() / 8
    x[:, 0] += 2
    return x


@pytest.mark.parametrize('opposite', [False, True])
def test_gradgradcheck_float64(opposite):
    from fdrop_mm.focused_dropout import focused_dropout
    x = _grid_input().requires_grad_()
    mask = reference_mask(x.detach(), [0.4321] * 3)
    assert 0 < mask.sum() < mask.numel()

    def masked_tanh(t):  # non-linear, so the second derivative with respect to x is not 0
        return focused_dropout(t, 0.4321, opposite=opposite).tanh()
    assert torch.autograd.gradcheck(masked_tanh, (x,))
    assert torch.autograd.gradgradcheck(masked_tanh, (x,))


def test_forward_mode_jvp_and_hessian():
    from fdrop_mm.focused_dropout import focused_dropout
    x = _grid_input(n=2, c=3, h=3, w=3)
    m = reference_mask(x, [0.4321] * 2)
    tangent = torch.randn_like(x)
    out, out_tangent = torch.func.jvp(lambda t: focused_dropout(t, 0.4321), (x,), (tangent,))
    assert torch.equal(out, x * m) and torch.equal(out_tangent, tangent * m)
    hessian = torch.func.hessian(lambda t: focused_dropout(t, 0.4321).tanh().sum())(x)
    torch.testing.assert_close(hessian, torch.func.hessian(lambda t: (t * m).tanh().sum())(x))


class _Discriminator(torch.nn.Module):
    """conv, softplus, ``regularizer``, conv, mean: a small D for gradient penalties."""

    def __init__(self, regularizer):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.Conv2d(6, 4, 3)
        self.regularizer = regularizer

    def features(self, x):
        return torch.nn.functional.softplus(self.conv1(x))

    def forward(self, x):
        return self.conv2(self.regularizer(self.features(x)).tanh()).mean(dim=(1, 2, 3))


def _r1_gradients(discriminator, x):
    """R1 penalty ||dD(x)/dx||^2 and its gradient with respect to D's parameters."""
    x = x.clone().requires_grad_()
    score_gradient, = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
    penalty = score_gradient.square().sum()
    # conv2's bias does not enter dD/dx: its gradient is 0
    return penalty.detach(), torch.autograd.grad(penalty, list(discriminator.parameters()), materialize_grads=True)


def test_r1_gradient_penalty_through_focused_dropout():
    """The oracle: the same D with the mask as an explicit constant ``h * m``, m from the
    per-sample reference transcription of §4 on D's own activations."""
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fd = _Discriminator(FocusedDropout(gamma_range=(0.5, 0.5)).train()).double()
    with torch.no_grad():
        m = reference_mask(fd.features(x), [0.5] * 4)
    assert 0 < m.sum() < m.numel(), 'the mask must drop some positions and keep others'
    oracle = _Discriminator(lambda h: h * m).double()
    unmasked = _Discriminator(torch.nn.Identity()).double()
    penalty, gradients = _r1_gradients(fd, x)
    oracle_penalty, oracle_gradients = _r1_gradients(oracle, x)
    torch.testing.assert_close(penalty, oracle_penalty)
    for gradient, expected in zip(gradients, oracle_gradients):
        torch.testing.assert_close(gradient, expected)
    conv1_weight_gradient = gradients[0]
    assert not torch.allclose(conv1_weight_gradient, _r1_gradients(unmasked, x)[1][0]), 'the mask must matter'


def test_vmap_masks_each_call_as_a_batch_does_and_records_nothing():
    from fdrop_mm.focused_dropout import focused_dropout
    x = exact_in(torch.float32, n=5)
    expected = x * reference_mask(x, [0.4] * 5)
    per_call = torch.func.vmap(lambda sample: focused_dropout(sample[None], 0.4)[0])
    assert torch.equal(per_call(x), expected)
    assert torch.equal(per_call(x.to(memory_format=torch.channels_last)), expected)
    module = FocusedDropout(gamma_range=(0.4, 0.4)).train()
    assert torch.equal(torch.func.vmap(lambda sample: module(sample[None])[0], randomness='same')(x), expected)
    assert module.last_keep_ratio is None, "a transform's tensors must not outlive it"


@pytest.mark.parametrize('randomness', ['different', 'same'])
def test_vmap_randomness_decides_whether_calls_share_gamma(randomness):
    # every call sees the ramp 0..99 / 99, so its kept count reveals its γ
    ramp = (torch.arange(100.0).view(10, 10) / 99).expand(64, 1, 1, 10, 10)
    module = FocusedDropout(gamma_range=(0.3, 0.6)).train()
    out = torch.func.vmap(module, randomness=randomness)(ramp)
    kept = out.ne(0).flatten(1).sum(1)
    assert kept.min() >= 99 - int(99 * 0.6) and kept.max() <= 99 - int(99 * 0.3)
    assert len(set(kept.tolist())) > 5 if randomness == 'different' else len(set(kept.tolist())) == 1


def test_vmap_without_randomness_names_focused_dropout():
    module = FocusedDropout().train()
    with pytest.raises(RuntimeError, match=r"FocusedDropout\(.*randomness='different'"):
        torch.func.vmap(module)(torch.rand(4, 1, 3, 5, 5))


def test_per_sample_gradients_with_func_grad_and_vmap():
    """torch.func.grad under vmap: each sample's parameter gradient equals the gradient of
    that sample alone through the explicit ``h * m`` network."""
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fd = _Discriminator(FocusedDropout(gamma_range=(0.5, 0.5)).train()).double()
    params = {name: p.detach() for name, p in fd.named_parameters()}

    def score(p, sample):
        return torch.func.functional_call(fd, p, (sample[None],)).sum()
    per_sample = torch.func.vmap(torch.func.grad(score), in_dims=(None, 0), randomness='same')(params, x)
    with torch.no_grad():
        m = reference_mask(fd.features(x), [0.5] * 4)
    for n in range(4):
        oracle = _Discriminator(lambda h: h * m[n:n + 1]).double()
        expected = torch.autograd.grad(oracle(x[n:n + 1]).sum(), list(oracle.parameters()))
        for name, gradient in zip(params, expected):
            torch.testing.assert_close(per_sample[name][n], gradient)


def _net(gamma_range=(0.5, 0.5)):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), FocusedDropout(gamma_range))


@pytest.mark.parametrize('capture', ['jit.script', 'jit.trace', 'export', 'export non-strict'])
def test_capture_in_eval_mode_is_the_identity_and_in_training_names_focused_dropout(capture):
    x = torch.randn(2, 3, 6, 6)
    build = {'jit.script': lambda net: torch.jit.script(net),
             'jit.trace': lambda net: torch.jit.trace(net, x),
             'export': lambda net: torch.export.export(net, (x,)).module(),
             'export non-strict': lambda net: torch.export.export(net, (x,), strict=False).module()}[capture]
    net = _net().eval()
    assert torch.equal(build(net)(x), net[0](x))
    net.train()
    with pytest.raises((RuntimeError, torch.jit.Error), match='FocusedDropout cannot .* eval mode'):
        build(net)(x)  # jit.script compiles, and its training forward raises
    if capture == 'jit.script':
        with pytest.raises(torch.jit.Error, match='FocusedDropout cannot mask under torch.jit.script'):
            torch.jit.script(net.eval()).train()(x)


def test_torch_compile_trains_like_eager():
    """aot_eager: the graphs and the backward that inductor would compile, without its C++ build
    (tests/test_compile.py runs inductor through mmengine's Runner)."""
    x = torch.randn(4, 3, 6, 6, requires_grad=True)
    eager, compiled = _net(), _net()
    out, expected = torch.compile(compiled, backend='aot_eager')(x), eager(x)
    upstream = torch.randn_like(out)
    assert torch.equal(out, expected)
    torch.autograd.backward(out, upstream)
    eager_x_grad = x.grad.clone()
    x.grad = None
    torch.autograd.backward(expected, upstream)
    assert torch.equal(eager_x_grad, x.grad)
    assert torch.equal(compiled[0].weight.grad, eager[0].weight.grad)



def test_torch_compile_traces_the_mask_without_a_graph_break():
    """With parameters upstream (so autograd records the mask), the functional between two ops
    compiles to one graph: the mask's custom jvp, which dynamo cannot trace, stays out of it."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from fdrop_mm.focused_dropout import focused_dropout
    conv = _net()[0]
    torch._dynamo.reset()
    counters.clear()
    torch.compile(lambda t: focused_dropout(conv(t), 0.5).relu(), backend='eager')(torch.randn(2, 3, 6, 6))
    assert not counters['graph_break'], list(counters['graph_break'])
    assert counters['stats']['unique_graphs'] == 1


def test_operator_imports_without_any_mm_package(tmp_path):
    """``from fdrop_mm import FocusedDropout`` in an environment where no OpenMMLab package,
    timm or cv2 can be imported: site-packages seen through an overlay without them."""
    import subprocess
    import sys
    from pathlib import Path
    site = Path(torch.__file__).resolve().parents[1]
    overlay = tmp_path / 'site-packages'
    overlay.mkdir()
    blocked = ('mm', 'timm', 'cv2', 'opencv', '__editable__', 'fdrop_mm')
    for entry in site.iterdir():
        if not entry.name.lower().startswith(blocked):
            (overlay / entry.name).symlink_to(entry)
    code = '\n'.join([
        'import sys',
        'from fdrop_mm import FocusedDropout, focused_dropout, focused_mask',
        'import torch',
        'x = torch.rand(2, 3, 5, 5)',
        'assert torch.equal(focused_dropout(x, 0.5), x * focused_mask(x, 0.5))',
        'FocusedDropout().train()(x)',
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mmengine', 'mmcv', 'mmdet', 'mmpretrain', 'timm', 'cv2'))",
        "assert not loaded, loaded",
        "print('ok')"])
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, '-S', '-W', 'ignore', '-c', code], capture_output=True, text=True,
                          env={'PYTHONPATH': f'{overlay}:{repo}', 'PATH': '/usr/bin:/bin'}, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == 'ok', proc.stderr[-2000:]
    blocked_import = subprocess.run([sys.executable, '-S', '-c', 'import mmengine'], capture_output=True,
                                    env={'PYTHONPATH': f'{overlay}:{repo}'}, timeout=60)
    assert blocked_import.returncode != 0, 'the overlay must hide mmengine'
