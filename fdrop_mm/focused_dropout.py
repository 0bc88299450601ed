"""FocusedDropout (Liu et al., arXiv 2103.15425), pure torch: no OpenMMLab import.

The operator keeps the spatial positions where the channel with the highest mean
activation (the "reference channel") is strong, and zeroes every channel
elsewhere (§4, Fig. 3). Which batches use it and the magnified weight decay on
those batches (§4, §5.2) are decided by the training loop, see
``fdrop_mm.hooks.FocusedDropoutHook``; this module only holds the mask.
"""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ['focused_mask', 'FocusedDropout']


def _check_input(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'FocusedDropout expects x of shape (N, C, H, W), got {shape}')
    if not x.is_floating_point():
        raise TypeError(f'FocusedDropout expects a floating-point x, got dtype {x.dtype}')


def _check_gamma_range(low: float, high: float, field: str = 'gamma_range') -> None:
    if not (0.0 < low <= 1.0 and 0.0 < high <= 1.0):
        raise ValueError(f'{field} must lie in (0, 1], got ({low}, {high})')
    if low > high:
        raise ValueError(f'{field} must have low <= high, got ({low}, {high})')


@torch.no_grad()
def _mask(x: Tensor, gamma: Tensor) -> Tensor:
    """The (N, 1, H, W) mask for validated inputs; ``gamma`` is a (N,) tensor on x's device.

    One pass over x for the channel means (Eq. 1), a gather of the reference
    channel (Eq. 2), its spatial max (Eq. 3) and the threshold (Eq. 4). The
    means and the comparison run in float32 (float64 for float64 input), so
    half-precision input gives the float32 mask up to the rounding of x itself.
    """
    n = x.shape[0]
    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    channel_means = x.mean(dim=(2, 3), dtype=compute_dtype)  # (N, C)
    reference = x[torch.arange(n, device=x.device), channel_means.argmax(dim=1)]  # (N, H, W)
    reference = reference.to(compute_dtype)
    peak = reference.amax(dim=(1, 2), keepdim=True)  # (N, 1, 1)
    keep = reference > gamma.to(compute_dtype).view(n, 1, 1) * peak
    # A reference channel with max <= 0 has no "focused area" (Eq. 4's threshold
    # would be >= its max, or flip sign); keep the sample whole instead of
    # dropping every unit, which would zero its signal and its gradient.
    keep |= peak <= 0
    return keep.unsqueeze(1).to(x.dtype)


def focused_mask(x: Tensor, gamma: Union[float, Tensor]) -> Tensor:
    """FocusedDropout's binary spatial mask (§4, Eqs. 1-4).

    For each sample n: k = argmax_c mean_{i,j} x[n, c] (first index on ties);
    mask[n, 0, i, j] = 1 where x[n, k, i, j] > gamma[n] * max_{i,j} x[n, k], else 0.
    A sample whose reference channel has max <= 0 keeps every position.

    Args:
        x: (N, C, H, W) floating tensor, any memory format.
        gamma: a float or a (N,) tensor of threshold ratios in (0, 1].

    Returns:
        (N, 1, H, W) tensor of zeros and ones, x's dtype and device, no autograd.
    """
    _check_input(x)
    n = x.shape[0]
    if isinstance(gamma, Tensor):
        if gamma.shape != (n,):
            raise ValueError(f'gamma must be a float or a tensor of shape ({n},), got {tuple(gamma.shape)}')
        if not bool(((gamma > 0) & (gamma <= 1)).all()):  # explicit API: validation may sync
            raise ValueError('gamma must lie in (0, 1]')
        gamma = gamma.to(x.device)
    else:
        _check_gamma_range(float(gamma), float(gamma), field='gamma')
        gamma = torch.full((n,), float(gamma), device=x.device)
    return _mask(x, gamma)


class FocusedDropout(nn.Module):
    """Keep the units in the reference channel's focused area, zero the rest (§4).

    Args:
        gamma_range: γ is drawn per sample, uniformly from this range, at every
            forward; low == high fixes it (the §5.2.2 ablation). Default (0.3, 0.6)
            follows the text (§4, §5.1.1), which is what the experiments used;
            Algorithm 1 writes random(0.6, 0.9), pass that range to follow it.
        opposite: keep the complement of the focused area instead (the
            "opposite approach" ablation, §5.2.4).
        in_channels: accepted and ignored, because mmcv's ``build_plugin_layer``
            (mmdet ResNet's ``plugins=``) always passes it.

    Kept units are not rescaled: the paper multiplies by the mask only. The module
    is the identity in eval mode and while ``active`` is False; used alone it is
    always active, and ``FocusedDropoutHook`` switches it per iteration (the
    participation rate, §4). ``last_keep_ratio`` holds, as a 0-dim tensor (no
    device sync), the fraction of positions the latest active forward kept.
    """

    def __init__(self,
                 gamma_range: Tuple[float, float] = (0.3, 0.6),
                 opposite: bool = False,
                 in_channels: Optional[int] = None) -> None:
        super().__init__()
        low, high = (float(v) for v in gamma_range)
        _check_gamma_range(low, high)
        self.gamma_range = (low, high)
        self.opposite = bool(opposite)
        self.active = True
        self.last_keep_ratio: Optional[Tensor] = None

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.active):
            return x
        _check_input(x)
        low, high = self.gamma_range
        gamma = torch.empty(x.shape[0], device=x.device).uniform_(low, high)
        mask = _mask(x, gamma)
        if self.opposite:
            mask = 1 - mask
        self.last_keep_ratio = mask.detach().float().mean()
        return x * mask

    def extra_repr(self) -> str:
        return f'gamma_range={self.gamma_range}, opposite={self.opposite}'
