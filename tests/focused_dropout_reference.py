"""The operator's independent oracle, shared by tests/test_focused_dropout.py and
tests/test_focused_dropout_nd.py: a literal per-sample transcription of §4 and the checks built on it."""
import itertools

import torch

from fdrop_mm import FocusedDropout

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def reference_mask(x, gammas):
    """Literal per-sample transcription of §4 (Eqs. 1-4) with Python loops, over every position
    of x's positional dims (H×W; L or T×H×W for (N, C, L) and (N, C, T, H, W))."""
    n, c, *positional = x.shape
    out = torch.zeros(n, 1, *positional, dtype=x.dtype)
    xd = x.double()
    for s in range(n):
        means = [xd[s, ch].mean().item() for ch in range(c)]
        k = max(range(c), key=lambda ch: (means[ch], -ch))  # first index on ties
        ref = xd[s, k]
        peak = ref.max().item()
        for position in itertools.product(*map(range, positional)):
            if peak <= 0 or ref[position].item() > gammas[s] * peak or ref[position].item() == peak:
                out[(s, 0) + position] = 1
    return out


def exact_in(dtype, n=4, c=6, positional=(5, 7), seed=0):
    """Random input whose values are exact in ``dtype`` (so the reference sees the same numbers)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, *positional, generator=g).to(dtype)


def masks_forward_and_backward_as_the_reference(x, upstream):
    """FocusedDropout at γ = 0.5 of the leaf ``x``, backward ``upstream``: output and gradient
    are x and upstream times the reference mask, in x's dtype. Returns the output."""
    out = FocusedDropout(gamma_range=(0.5, 0.5)).train()(x)
    out.backward(upstream)
    mask = reference_mask(x.detach().float(), [0.5] * x.shape[0]).to(x.dtype)
    assert 0 < mask.sum() < mask.numel()
    assert out.dtype == x.dtype and torch.equal(out, x.detach() * mask)
    assert x.grad.dtype == x.dtype and torch.equal(x.grad, upstream * mask)
    return out
