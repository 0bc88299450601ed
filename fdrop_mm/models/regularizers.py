"""The regularisers the paper compares (§5), in mmengine's root MODELS so that every scope and
mmcv's ``build_plugin_layer`` find them: ``FocusedDropout`` (the operator), ``SpatialDropout``
(``nn.Dropout2d``: whole channels, Tompson et al.) and ``DropBlock2d`` (timm's, strict).
mmcv registers ``Dropout`` (``dict(type='Dropout', drop_prob=p)``: element-wise) itself."""
from mmengine.registry import MODELS as ROOT_MODELS
from timm.layers import DropBlock2d as TimmDropBlock2d
from torch import nn

from ..focused_dropout import FocusedDropout

__all__ = ['DropBlock2d', 'check_positive_int']

ROOT_MODELS.register_module(module=FocusedDropout)
ROOT_MODELS.register_module(name='SpatialDropout', module=nn.Dropout2d)


@ROOT_MODELS.register_module()
class DropBlock2d(TimmDropBlock2d):
    """timm's DropBlock (Ghiasi et al. 2018) with a strict signature and a rate that is never 0.

    timm's class only warns on an unknown argument and keeps its defaults, so a typo such as
    ``keep_prob=0.9`` would train with drop_prob 0.1 unnoticed; here both settings are required
    and anything else is a TypeError. The rate is constant: timm has no ramp, unlike the DropBlock
    paper's linear schedule, and so there is no scheduler to forget to step (the public
    reproduction of FocusedDropout shipped a DropBlock whose schedule never left 0).

    Args:
        drop_prob: fraction of units to drop, in (0, 1]. DropBlock's ImageNet setting is 0.1
            (keep_prob 0.9).
        block_size: side of the square blocks. DropBlock's ImageNet setting is 7.
        couple_channels: one mask shared by all channels. Default False: the DropBlock paper's
            Algorithm 1 draws a mask per channel, which it found to work better (timm defaults to
            True).
        scale_by_keep: rescale kept units by numel / kept, as the DropBlock paper does.
    """

    def __init__(self, drop_prob: float, block_size: int, couple_channels: bool = False,
                 scale_by_keep: bool = True) -> None:
        if isinstance(drop_prob, bool) or not isinstance(drop_prob, (int, float)) \
                or not 0.0 < drop_prob <= 1.0:
            raise ValueError(f'DropBlock2d: drop_prob must lie in (0, 1], got {drop_prob!r}')
        check_positive_int('DropBlock2d', 'block_size', block_size)
        super().__init__(drop_prob=float(drop_prob), block_size=block_size,
                         couple_channels=couple_channels, scale_by_keep=scale_by_keep)


def check_positive_int(owner: str, field: str, value) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f'{owner}: {field} must be a positive integer, got {value!r}')
