"""Pictures of what FocusedDropout does (paper §4, Fig. 2-4): the drawing shared by the hook and
the CAM, reference-channel and curve modules of this package.

- ``reference_channel`` (the operator's, re-exported): the channel with the highest mean
  activation (§4, Eqs. 1-2), for the reference-channel statistics (Fig. 2) and the live pictures.
- ``network_input_to_rgb``: undo a data preprocessor's normalisation, so that overlays sit on
  exactly the tensor the network saw (after resizing, padding and batch augmentation).
- ``load_model``: a checkpoint and its config as an eval-mode model.
- ``heatmap_overlay``: a [0, 1] map in the style's colour map over an image (CAM, live pictures).
- ``MaskSnapshot``: captures one training iteration's input and a FocusedDropout module's input
  and output, and draws (``mask_figure``), per sample, the image, the reference channel and the
  kept positions; ``FocusedDropoutVisualizationHook(interval=N)`` sends it to mmengine's
  visualizer. The figures' look is ``style``'s.
"""
from pathlib import Path
from typing import List, Optional

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import Tensor, nn

from ..focused_dropout import reference_channel
from .style import CMAP, Legend, figure_rgb, image_grid, styled

__all__ = ['reference_channel', 'network_input_to_rgb', 'heatmap_overlay', 'kept_positions',
           'load_model', 'mask_figure', 'MaskSnapshot']

SCOPES = ('mmpretrain', 'mmdet')
DROPPED_BRIGHTNESS = 0.25  # the kept-positions panel darkens a dropped position to this


def network_input_to_rgb(data_preprocessor: nn.Module, inputs: Tensor) -> np.ndarray:
    """(N, 3, H, W) preprocessed network input -> (N, H, W, 3) uint8 RGB.

    Undoes ``(x - mean) / std`` of mmengine's ``ImgDataPreprocessor`` (mmdet) and mmpretrain's
    ``ClsDataPreprocessor``. Images are loaded in mmcv's default BGR order, so the channels are
    flipped unless the preprocessor already converted them (``bgr_to_rgb`` / ``to_rgb``).
    """
    if inputs.dim() != 4 or inputs.shape[1] != 3:
        raise ValueError(f'expected a (N, 3, H, W) image batch, got {tuple(inputs.shape)}')
    images = inputs.detach().float().cpu()
    if getattr(data_preprocessor, '_enable_normalize', False):
        images = images * data_preprocessor.std.cpu() + data_preprocessor.mean.cpu()
    converted = getattr(data_preprocessor, '_channel_conversion', getattr(data_preprocessor, 'to_rgb', False))
    if not converted:
        images = images.flip(1)
    return images.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_model(config: str, checkpoint: str, device: str = 'cpu'):
    """(model in eval mode, its Config, its default_scope, the checkpoint's class names or None).

    The checkpoint is loaded strictly: one that does not fit the config is an error, not a
    partly random network. The config's ``custom_imports`` are imported (``Config.fromfile``).
    """
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if not Path(path).is_file():
            raise FileNotFoundError(f'{what} {path} does not exist')
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'{config}: default_scope must be one of {SCOPES}, got {scope!r}')
    init_default_scope(scope)
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner does: mmpretrain sets it at top level
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    meta = load_checkpoint(model, checkpoint, map_location='cpu', strict=True).get('meta', {})
    classes = (meta.get('dataset_meta') or {}).get('classes')
    return model.to(device).eval(), cfg, scope, classes


def _resize(values: Tensor, size, mode: str) -> np.ndarray:
    """(h, w) map -> (H, W) float numpy array at the image resolution."""
    kwargs = {} if mode == 'nearest' else dict(align_corners=False)
    return F.interpolate(values[None, None].float(), size=size, mode=mode, **kwargs)[0, 0].numpy()


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a (H, W) map in [0, 1], coloured by the style's ``CMAP``, onto a (H, W, 3) uint8 RGB
    image of the same size (the colour bar of ``style.Legend`` reads it)."""
    colour = matplotlib.colormaps[CMAP](np.clip(heat, 0, 1))[..., :3] * 255
    return (alpha * colour + (1 - alpha) * image).round().astype(np.uint8)


def scaled_map(values: Tensor, size) -> np.ndarray:
    """A (h, w) map resized (bilinear) to ``size`` (H, W) and min-max scaled to [0, 1]."""
    heat = _resize(values, size, 'bilinear')
    return (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-12)


def kept_positions(fd_input: Tensor, fd_output: Tensor) -> Tensor:
    """(N, h, w) bool: the positions a FocusedDropout forward kept, read from its input and output.

    The output is ``input * mask``. In the focused mode every kept position has its reference
    channel above γ · max > 0 (Eq. 4), so it is exactly where some output channel is non-zero; a
    sample whose reference channel has max <= 0 keeps everything (output == input). In the
    opposite mode a kept position whose input is zero in every channel reads as dropped, which
    changes nothing it contributes.
    """
    nonzero = (fd_output != 0).any(dim=1)
    unchanged = (fd_output == fd_input).flatten(1).all(dim=1)
    return nonzero | unchanged[:, None, None]


def mask_figure(images: np.ndarray, fd_input: Tensor, fd_output: Tensor, title: str):
    """The live picture (a ``style.image_grid``), one row per sample: the network input | its
    reference channel as a heat map | the image with the dropped positions darkened."""
    mask = kept_positions(fd_input, fd_output)
    channels = reference_channel(fd_input)
    rows = []
    for image, features, keep, k in zip(images, fd_input, mask, channels.tolist()):
        size = image.shape[:2]
        kept = (image * (DROPPED_BRIGHTNESS + (1 - DROPPED_BRIGHTNESS) * _resize(keep, size, 'nearest')[..., None]))
        rows.append([(image, [f'{size[1]}\u00d7{size[0]} px']),
                     (heatmap_overlay(image, scaled_map(features[k], size)), [f'channel {k} of {features.shape[0]}']),
                     (kept.round().astype(np.uint8),
                      [f'{keep.float().mean().item():.0%} of {keep.shape[1]}\u00d7{keep.shape[0]} positions kept'])])
    dark = (DROPPED_BRIGHTNESS * 0.5, ) * 3
    with styled():
        return image_grid(rows, ['network input', 'reference channel', 'kept positions'], [title], legends=[
            Legend('activation, scaled per sample', columns=[1]),
            Legend('dropped position (darkened)', columns=[2], color=dark)])


class MaskSnapshot:
    """Records one training forward: the preprocessed input and the input and output of one
    FocusedDropout module, for the first ``num_samples`` samples (detached CPU copies).

    Attach it before the forward (``before_train_iter``), call ``render()`` after it and then
    ``remove()``. The image is read from the data preprocessor's output, so it is what the
    network saw, augmentation and padding included.
    """

    def __init__(self, model: nn.Module, module: nn.Module, num_samples: int) -> None:
        self.num_samples = num_samples
        self.data_preprocessor = model.data_preprocessor
        self.inputs: Optional[Tensor] = None
        self.fd_input: Optional[Tensor] = None
        self.fd_output: Optional[Tensor] = None
        self._handles: List = [
            self.data_preprocessor.register_forward_hook(self._keep_network_input),
            module.register_forward_hook(self._keep_fd_tensors),
        ]

    def _first(self, tensor: Tensor) -> Tensor:
        return tensor[:self.num_samples].detach().float().cpu()

    def _keep_network_input(self, module, args, output) -> None:
        if self.inputs is None:
            self.inputs = self._first(output['inputs'])

    def _keep_fd_tensors(self, module, args, output) -> None:
        if self.fd_input is None:
            self.fd_input, self.fd_output = self._first(args[0]), self._first(output)

    def render(self, title: str) -> np.ndarray:
        """The picture of the recorded iteration (RGB uint8) under ``title``, see ``mask_figure``."""
        if self.inputs is None or self.fd_input is None:
            raise RuntimeError('MaskSnapshot: the data preprocessor or the FocusedDropout module did '
                               'not run during this iteration; nothing to draw')
        fig = mask_figure(network_input_to_rgb(self.data_preprocessor, self.inputs), self.fd_input,
                          self.fd_output, title)
        with styled():
            return figure_rgb(fig)[0]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
