"""FocusedDropout (Liu et al., arXiv 2103.15425), pure torch: no OpenMMLab import.

The operator keeps the positions where the channel with the highest mean
activation (the "reference channel") is strong, and zeroes every channel
elsewhere (§4, Fig. 3). §4 defines it on a feature map's positions, whatever
their number: x is (N, C, *S) with 1, 2 or 3 positional dims S, i.e. (N, C, L),
(N, C, H, W) or (N, C, T, H, W), and the mean, the maximum and the mask run over
all of S (for a video clip, one focused spatio-temporal volume). Which batches
use it and the magnified weight decay on those batches (§4, §5.2) are decided by
the training loop, see ``fdrop_mm.engine.hooks.FocusedDropoutHook``; this module
only holds the mask.
"""
import math
import numbers
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ['reference_channel', 'focused_mask', 'focused_dropout', 'FocusedDropout',
           'UndrivenFocusedDropoutWarning']

# integer dtype of the same width, to zero dropped units bitwise (see _zero_dropped)
_SAME_WIDTH_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16,
                   torch.float32: torch.int32, torch.float64: torch.int64}


# the memory formats torch names for channels-innermost tensors, by rank
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _check_input(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() not in (3, 4, 5):
        shape = f'a {x.dim()}-D tensor of shape {tuple(x.shape)}' if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'FocusedDropout expects x of shape (N, C, *S) with 1 to 3 positional dims S: '
                         f'(N, C, L), (N, C, H, W) or (N, C, T, H, W), got {shape}')
    if x.dtype not in _SAME_WIDTH_INT:
        raise TypeError(f'FocusedDropout expects a floating-point x (float16, bfloat16, float32 or '
                        f'float64), got dtype {x.dtype} (x of shape {tuple(x.shape)})')


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def as_gamma_range(value: Sequence[float], field: str = 'gamma_range') -> Tuple[float, float]:
    """``value`` as a validated ``(low, high)`` pair of floats in (0, 1]; errors name ``field``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2 \
            or not all(_is_number(v) for v in value):
        raise TypeError(f'{field} must be a pair (low, high) of numbers, got {value!r}')
    low, high = (float(v) for v in value)
    _check_gamma_range(low, high, field)
    return low, high


def _check_gamma_range(low: float, high: float, field: str = 'gamma_range') -> None:
    if not (0.0 < low <= 1.0 and 0.0 < high <= 1.0):
        raise ValueError(f'{field} must lie in (0, 1], got ({low}, {high})')
    if low > high:
        raise ValueError(f'{field} must have low <= high, got ({low}, {high})')


# CPU torch casts all of a half-precision x to float32 before it sums; summing this many
# elements (4 MiB of float32) at a time keeps each cast in cache instead of writing a
# float32 copy of x (2x its size, page-faulted where large); 2^19-2^20 measured best
_CAST_CHUNK_ELEMENTS = 2 ** 20
# A channels-innermost x (channels_last, channels_last_3d, a transposed (N, L, C)) is summed
# faster as ones(P) @ x(N, P, C), one BLAS gemv per sample over its P positions, than by torch's
# reduction over the positional dims: for 4-D up to this H·W (~2x at 14x14 and 7x7 on CPU) ...
_GEMV_MAX_POSITIONS = 256
# ... and for 3-D and 5-D from this many elements (~1.5x at 2^20-2^23 on CPU, C >= 16; a smaller
# x stays in cache, where the reduction is faster)
_GEMV_MIN_ELEMENTS = 2 ** 20


def _positional_dims(x: Tensor) -> Tuple[int, ...]:
    return tuple(range(2, x.dim()))


def _channels_innermost(x: Tensor) -> bool:
    """Whether x is (N, *S, C) in memory: channels_last (4-D), channels_last_3d (5-D), or for
    3-D a (N, L, C) tensor transposed to (N, C, L)."""
    if x.dim() in _CHANNELS_LAST:
        return x.is_contiguous(memory_format=_CHANNELS_LAST[x.dim()])
    return x.transpose(1, 2).is_contiguous()


def _spatial_sums(x: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """(N, C) sums over all positions of a float32/float64 CPU x, written to ``out`` if given."""
    n, c = x.shape[:2]
    positions = math.prod(x.shape[2:])
    gemv = positions <= _GEMV_MAX_POSITIONS if x.dim() == 4 else x.numel() >= _GEMV_MIN_ELEMENTS
    if gemv and c > 1 and _channels_innermost(x):
        ones = torch.ones(positions, dtype=x.dtype, device=x.device)
        return torch.matmul(ones, x.permute(0, *_positional_dims(x), 1).reshape(n, positions, c), out=out)
    return torch.sum(x, dim=_positional_dims(x), out=out)


def _under_torch_func() -> bool:
    """True inside a torch.func transform (vmap, grad, ...), whose tensors must not outlive it."""
    return not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active()


def _channel_sums(x: Tensor, compute_dtype: torch.dtype) -> Tensor:
    """(N, C) sums over all positions of x in ``compute_dtype``: one read of x, no copy of it."""
    if x.device.type != 'cpu' or torch.compiler.is_compiling() or _under_torch_func():
        # CUDA and inductor cast inside the reduction; vmap has no out= or channels_last query
        return x.sum(dim=_positional_dims(x), dtype=compute_dtype)
    if x.dtype == compute_dtype:
        return _spatial_sums(x)
    n, c = x.shape[:2]
    samples = max(1, _CAST_CHUNK_ELEMENTS // math.prod(x.shape[1:]))
    sums = torch.empty(n, c, dtype=compute_dtype, device=x.device)
    for start in range(0, n, samples):
        _spatial_sums(x[start:start + samples].to(compute_dtype), out=sums[start:start + samples])
    return sums


def _reference_channel(x: Tensor, compute_dtype: torch.dtype) -> Tensor:
    """(N,) argmax of the channel sums (= of the means, Eq. 1), first on ties; a NaN sum
    counts as -inf, so a channel with a NaN mean is not chosen unless all are."""
    sums = _channel_sums(x, compute_dtype)
    return sums.nan_to_num_(nan=-float('inf'), posinf=float('inf'), neginf=-float('inf')).argmax(dim=1)


@torch.no_grad()
def reference_channel(x: Tensor) -> Tensor:
    """FocusedDropout's reference channel per sample (§4, Eqs. 1-2): the (N,) index of the
    channel of ``x`` (N, C, *S) with the highest mean over all positions S, exactly as the mask
    chooses it (float32 means, float64 for float64 input; first on ties; NaN means are not chosen)."""
    _check_input(x)
    return _reference_channel(x, torch.float64 if x.dtype == torch.float64 else torch.float32)


@torch.no_grad()
def _dropped(x: Tensor, gamma: Tensor) -> Tensor:
    """The (N, 1, *S) bool mask of the positions dropped at the (N,) ``gamma`` (Eqs. 1-4),
    in float32 (float64 for float64 x), the reference channel and its peak taken over all
    positions S. Every per-sample rule is one (N, 1, 1) bound, so the positions see one
    comparison: dropped = reference <= min(γ·peak, the float below peak), and the bound is NaN
    (all kept) where the peak is <= 0 or NaN. docs/operator.md gives the rules.
    """
    n, _, *positional = x.shape
    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    channel = _reference_channel(x, compute_dtype)
    rows = x.flatten(2)  # (N, C, P): each channel's P positions in one row
    reference = rows.gather(1, channel.view(n, 1, 1).expand(n, 1, rows.shape[2])).to(compute_dtype)
    peak = reference.amax(dim=2, keepdim=True)  # (N, 1, 1)
    # A reference channel with max <= 0 has no "focused area" (Eq. 4's threshold
    # would be >= its max, or flip sign); keep the sample whole instead of
    # dropping every unit, which would zero its signal and its gradient.
    below_peak = torch.nextafter(peak, peak.new_full((), -float('inf')))
    bound = torch.fmin(gamma.to(compute_dtype).view(n, 1, 1) * peak, below_peak)
    bound = torch.where(peak > 0, bound, float('nan'))
    return (reference <= bound).view(n, 1, *positional)


def _keep_bits(dropped: Tensor, dtype: torch.dtype, keep_dropped: bool = False) -> Tensor:
    """All ones where kept, 0 where dropped, in the integer dtype as wide as ``dtype``."""
    bits = dropped.to(_SAME_WIDTH_INT[dtype])
    return bits.neg_() if keep_dropped else bits.sub_(1)


def _zero_dropped(t: Tensor, keep_bits: Tensor) -> Tensor:
    """``t`` where ``keep_bits`` is all ones, +0.0 where it is 0: a bitwise AND on the
    float's bits, as fast as a multiply, but a dropped ±inf or NaN becomes 0 (a
    multiply by the mask would turn a dropped inf into NaN)."""
    return (t.view(keep_bits.dtype) & keep_bits).view(t.dtype)


class _ApplyMask(torch.autograd.Function):
    """x masked by a broadcast (N, 1, *S) mask, saving only the mask. The mask is a
    constant, so the backward is the same masking of the gradient, itself differentiable
    (double backward, gradient penalties)."""

    @staticmethod
    def forward(ctx, x: Tensor, keep_bits: Tensor) -> Tensor:
        ctx.save_for_backward(keep_bits)
        return _zero_dropped(x, keep_bits)

    @staticmethod
    def backward(ctx, grad: Tensor):
        keep_bits, = ctx.saved_tensors
        if torch.is_grad_enabled() or _under_torch_func():  # create_graph=True, or a transform
            return _apply_mask(grad, keep_bits), None
        return _zero_dropped(grad, keep_bits), None


class _ApplyMaskUnderTorchFunc(_ApplyMask):
    """_ApplyMask in the form torch.func needs (setup_context, a vmap rule, the forward-mode
    derivative). Eager and compiled code keep _ApplyMask: this form's argument binding costs
    about 0.1 ms a call, and dynamo cannot trace a custom jvp (a graph break)."""

    @staticmethod
    def forward(x: Tensor, keep_bits: Tensor) -> Tensor:
        return _zero_dropped(x, keep_bits)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[1])
        ctx.save_for_forward(inputs[1])

    @staticmethod
    def vmap(info, in_dims, x: Tensor, keep_bits: Tensor):
        # batch dimensions in front: (B, N, C, *S) and (B, N, 1, *S) or (N, 1, *S) broadcast
        x_dim, keep_dim = in_dims
        x = x if x_dim is None else x.movedim(x_dim, 0)
        keep_bits = keep_bits if keep_dim is None else keep_bits.movedim(keep_dim, 0)
        return _apply_mask(x, keep_bits), 0

    @staticmethod
    def jvp(ctx, x_tangent: Tensor, keep_bits_tangent: None) -> Tensor:
        keep_bits, = ctx.saved_tensors
        return _apply_mask(x_tangent, keep_bits)


def _apply_mask(t: Tensor, keep_bits: Tensor) -> Tensor:
    return (_ApplyMaskUnderTorchFunc if _under_torch_func() else _ApplyMask).apply(t, keep_bits)


def focused_mask(x: Tensor, gamma: Union[float, Tensor]) -> Tensor:
    """FocusedDropout's binary mask over the positions (§4, Eqs. 1-4).

    For each sample n, with p running over all positions of x[n, c] (L, H×W or T×H×W):
    k = argmax_c mean_p x[n, c, p] (first index on ties);
    mask[n, 0, p] = 1 where x[n, k, p] > gamma[n] * max_p x[n, k, p], else 0,
    and 1 at the maximum itself (so gamma = 1 keeps the peak rather than nothing).
    A sample whose reference channel has max <= 0 keeps every position.
    Non-finite x: channels with a NaN mean are not chosen as reference (unless
    all are); an +inf peak keeps the +inf positions; a NaN peak keeps everything.

    Args:
        x: (N, C, L), (N, C, H, W) or (N, C, T, H, W) floating tensor, any memory format.
        gamma: a float or a (N,) tensor of threshold ratios in (0, 1].

    Returns:
        (N, 1, *S) tensor of zeros and ones (S: x's positional dims), x's dtype and device,
        no autograd.
    """
    _check_input(x)
    gamma = _gamma_per_sample(x, gamma)
    if not bool(((gamma > 0) & (gamma <= 1)).all()):  # explicit API: validation may sync
        raise ValueError('gamma must lie in (0, 1]')
    return (~_dropped(x, gamma)).to(x.dtype)


def _gamma_per_sample(x: Tensor, gamma: Union[float, Tensor]) -> Tensor:
    """``gamma`` as a (N,) tensor on x's device; a float is checked, a tensor's shape is."""
    n = x.shape[0]
    if isinstance(gamma, Tensor):
        if gamma.shape != (n,):
            raise ValueError(f'gamma must be a float or a tensor of shape ({n},), got {tuple(gamma.shape)}')
        return gamma.to(x.device)
    if not _is_number(gamma):
        raise TypeError(f'gamma must be a float or a (N,) tensor, got {gamma!r}')
    _check_gamma_range(float(gamma), float(gamma), field='gamma')
    return torch.full((n,), float(gamma), device=x.device)


def focused_dropout(x: Tensor, gamma: Union[float, Tensor], opposite: bool = False,
                    return_keep: bool = False):
    """FocusedDropout of ``x`` (§4): x where ``focused_mask(x, gamma)`` keeps, exactly 0 elsewhere.

    The functional form of :class:`FocusedDropout` (the module draws γ and calls this).
    ``opposite`` keeps the complement instead (§5.2.4). Kept units are not rescaled;
    dropped units are 0 even where x is ±inf or NaN; the gradient is the upstream gradient
    at kept units and 0 at dropped ones, and only the mask is saved for the backward. No
    host-device synchronisation: a float ``gamma`` is checked, a (N,) tensor's values are
    the caller's to keep in (0, 1] (checking them would synchronise; ``focused_mask`` does).

    ``x`` is (N, C, *S) with 1 to 3 positional dims S (see ``focused_mask``). Returns the masked
    x (x's dtype and memory format), and with ``return_keep`` also the (N, 1, *S) bool mask of
    kept positions.
    """
    _check_input(x)
    out, dropped = _masked(x, _gamma_per_sample(x, gamma), opposite)
    if not return_keep:
        return out
    return out, (dropped if opposite else ~dropped)


def _masked(x: Tensor, gamma: Tensor, opposite: bool) -> Tuple[Tensor, Tensor]:
    """x masked, and the (N, 1, *S) bool mask of the focused area's complement."""
    _check_capturable()
    dropped = _dropped(x, gamma)
    return _apply_mask(x, _keep_bits(dropped, x.dtype, keep_dropped=opposite)), dropped


def _check_capturable() -> None:
    """torch.export and torch.jit.trace would record a mask that no gradient flows through
    (export) or fail inside torch (trace): refuse both in training mode, naming what works."""
    capture = 'torch.export' if torch.compiler.is_exporting() else \
        'torch.jit.trace' if not torch.compiler.is_compiling() and torch.jit.is_tracing() else None
    if capture is not None:
        raise RuntimeError(f'FocusedDropout cannot be captured by {capture} while it masks (training mode): '
                           f'capture the model in eval mode, where FocusedDropout is the identity, and train '
                           f'eagerly or under torch.compile (docs/operator.md, "Beyond eager autograd")')


class UndrivenFocusedDropoutWarning(UserWarning):
    """A FocusedDropout module masks every training batch because no FocusedDropoutHook drives it."""


class _ScriptedFocusedDropout(nn.Module):
    """FocusedDropout under torch.jit.script: the identity in eval mode, an error in training."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            raise RuntimeError('FocusedDropout cannot mask under torch.jit.script: script the model in eval '
                               'mode (FocusedDropout is the identity there), train eagerly or under '
                               'torch.compile (docs/operator.md, "Beyond eager autograd")')
        return x


class FocusedDropout(nn.Module):
    """Keep the units in the reference channel's focused area, zero the rest (§4):
    ``focused_dropout`` at a γ drawn per sample, on (N, C, L), (N, C, H, W) or (N, C, T, H, W)
    input; the identity in eval mode and while ``active`` is False.

    Args:
        gamma_range: γ is drawn per sample, uniformly from this range, at every forward; the
            default (0.3, 0.6) follows the text (§4, §5.1.1), low == high fixes it (§5.2.2).
        opposite: keep the complement of the focused area instead (§5.2.4).
        in_channels: ignored; mmcv's ``build_plugin_layer`` (mmdet ``plugins=``) passes it.

    Alone it masks every training batch, which is not the paper's method, so its first training
    forward warns unless ``FocusedDropoutHook`` drives it. ``seed_gamma``, ``hold_gamma``
    (activation checkpointing) and ``last_keep_ratio``: docs/operator.md.
    """

    def __init__(self,
                 gamma_range: Tuple[float, float] = (0.3, 0.6),
                 opposite: bool = False,
                 in_channels: Optional[int] = None) -> None:
        super().__init__()
        self.gamma_range = as_gamma_range(gamma_range)
        if not isinstance(opposite, bool):
            raise TypeError(f'opposite must be True or False, got {opposite!r}')
        self.opposite = opposite
        self.active = True
        self.driven = False
        self._latest_dropped: Optional[Tensor] = None
        self._gamma_seed: Optional[int] = None
        self._generator: Optional[torch.Generator] = None
        self._held_gamma: Optional[Tensor] = None
        self._hold = False
        self._warned_undriven = False

    def seed_gamma(self, seed: Optional[int]) -> None:
        """Draw γ from a generator seeded with ``seed`` from the next forward on,
        continuing it over later forwards; ``None``: torch's global RNG. Ends a
        ``hold_gamma()``."""
        self._gamma_seed = seed
        self._generator = None
        self._hold = False
        self._held_gamma = None

    def hold_gamma(self) -> None:
        """Reuse the latest forward's γ in later forwards (a recomputation under
        activation checkpointing) until the next ``seed_gamma``."""
        self._hold = True

    @torch.compiler.disable
    def _draw_gamma(self, x: Tensor) -> Tensor:
        # Eager under torch.compile: a (N,) draw whose generator is a graph break anyway, and whose
        # per-iteration integer seed would otherwise fail dynamo's guards and recompile each time.
        if self._hold and self._held_gamma is not None and self._held_gamma.shape[0] == x.shape[0]:
            return self._held_gamma
        if self._gamma_seed is not None and self._generator is None:
            self._generator = torch.Generator(device=x.device).manual_seed(self._gamma_seed)
        low, high = self.gamma_range
        under_torch_func = _under_torch_func()
        # under vmap, allocated from x so that randomness='different' gives each vmapped call its own γ
        first_units = x[(slice(None),) + (0,) * (x.dim() - 1)]  # (N,)
        gamma = torch.empty_like(first_units, dtype=torch.get_default_dtype(),
                                 memory_format=torch.contiguous_format) if under_torch_func else \
            torch.empty(x.shape[0], device=x.device)
        try:
            gamma.uniform_(low, high, generator=self._generator)
        except RuntimeError as error:  # vmap's default randomness='error'
            if not under_torch_func:
                raise
            raise RuntimeError(f"{self!r} draws γ at random: pass randomness='different' to torch.func.vmap "
                               f"(each vmapped call draws its own γ, as the samples of a batch do) or 'same', "
                               f'or call focused_dropout with a fixed γ') from error
        if not under_torch_func:  # a transform's tensors must not outlive it
            self._held_gamma = gamma
        return gamma

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.active):
            return x
        if not (self.driven or self._warned_undriven):
            self._warned_undriven = True
            warnings.warn(f'{self!r} masks every training batch: no FocusedDropoutHook drives it, so this '
                          f'is FocusedDropout at participation 1 without magnified weight decay, not the '
                          f"paper's method (§4). Add custom_hooks = [dict(type='FocusedDropoutHook')] to "
                          f'drive it.', UndrivenFocusedDropoutWarning, stacklevel=2)
        _check_input(x)
        out, dropped = _masked(x, self._draw_gamma(x), self.opposite)
        self._latest_dropped = None if _under_torch_func() else dropped
        return out

    def __prepare_scriptable__(self) -> nn.Module:
        """What torch.jit.script compiles in place of this module (the mask is not scriptable)."""
        return _ScriptedFocusedDropout().train(self.training)

    @property
    def last_keep_ratio(self) -> Optional[Tensor]:
        """The fraction of positions the latest active forward kept (0-dim tensor), or None."""
        dropped = self._latest_dropped
        if dropped is None:
            return None
        kept = dropped.count_nonzero() if self.opposite else dropped.numel() - dropped.count_nonzero()
        return kept / dropped.numel()

    @last_keep_ratio.setter
    def last_keep_ratio(self, value: None) -> None:
        if value is not None:
            raise TypeError(f'last_keep_ratio can only be reset to None, got {value!r}')
        self._latest_dropped = None

    def extra_repr(self) -> str:
        return f'gamma_range={self.gamma_range}, opposite={self.opposite}'
