"""Pictures of what FocusedDropout does (paper §4, Fig. 2-4): the drawing shared by the hook and
the CAM, reference-channel and curve modules of this package.

- ``reference_channel`` (the operator's, re-exported): the channel with the highest mean
  activation (§4, Eqs. 1-2), for the reference-channel statistics (Fig. 2) and the live pictures.
- ``network_input_to_rgb``: undo a data preprocessor's normalisation, so that overlays sit on
  exactly the tensor the network saw (after resizing, padding and batch augmentation).
- ``load_model``: a checkpoint and its config as an eval-mode model;
  ``subplot_grid`` and ``save_figure``: the matplotlib figures.
- ``MaskSnapshot``: captures one training iteration's input and a FocusedDropout module's input
  and output, and draws, per sample, the image, the reference channel and the kept positions;
  ``FocusedDropoutVisualizationHook(interval=N)`` sends it to mmengine's visualizer.
"""
import math
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import Tensor, nn

from ..focused_dropout import reference_channel

__all__ = ['reference_channel', 'network_input_to_rgb', 'heatmap_overlay', 'kept_positions',
           'load_model', 'subplot_grid', 'save_figure', 'FIGURE_DPI', 'MaskSnapshot']

MIN_PANEL_SIDE = 128  # small inputs (tiny runs, CIFAR) are upscaled so the panels stay readable
LABEL_HEIGHT = 18
SCOPES = ('mmpretrain', 'mmdet')
FIGURE_DPI = 100  # figures are sized in pixels / FIGURE_DPI inches


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


def subplot_grid(count: int, max_columns: int, subplot_px):
    """A pyplot figure of ``count`` subplots, up to ``max_columns`` per row, each ``subplot_px``
    (width, height) pixels, and the list of its ``count`` axes (spare cells hidden): the PNG
    ``save_figure`` writes is (columns * width) x (rows * height) pixels."""
    import matplotlib.pyplot as plt  # the pictures' dependency, not the training path's
    ncols = min(max_columns, count)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, dpi=FIGURE_DPI,
                             figsize=(ncols * subplot_px[0] / FIGURE_DPI, nrows * subplot_px[1] / FIGURE_DPI))
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return fig, list(axes.flat[:count])


def save_figure(fig, path: Path) -> None:
    """Write a pyplot figure as PNG at ``FIGURE_DPI`` (creating the folder) and close it."""
    import matplotlib.pyplot as plt
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)


def _resize(values: Tensor, size, mode: str) -> np.ndarray:
    """(h, w) map -> (H, W) float numpy array at the image resolution."""
    kwargs = {} if mode == 'nearest' else dict(align_corners=False)
    return F.interpolate(values[None, None].float(), size=size, mode=mode, **kwargs)[0, 0].numpy()


def heatmap_overlay(image: np.ndarray, values: Tensor, alpha: float = 0.5) -> np.ndarray:
    """Blend a (h, w) map, min-max scaled and jet-coloured, onto a (H, W, 3) uint8 RGB image."""
    heat = _resize(values, image.shape[:2], 'bilinear')
    heat = (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-12)
    colour = cv2.cvtColor(cv2.applyColorMap(np.uint8(heat * 255), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return (alpha * colour + (1 - alpha) * image).round().astype(np.uint8)


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


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((LABEL_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (3, LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def render_mask_panels(images: np.ndarray, fd_input: Tensor, fd_output: Tensor) -> np.ndarray:
    """One row per sample: the input image | its reference channel as a heatmap | the image with
    the dropped positions darkened. Returns an RGB uint8 image."""
    mask = kept_positions(fd_input, fd_output)
    channels = reference_channel(fd_input)
    scale = max(1, math.ceil(MIN_PANEL_SIDE / min(images.shape[1:3])))
    rows = []
    for image, features, keep, k in zip(images, fd_input, mask, channels.tolist()):
        image = np.ascontiguousarray(image.repeat(scale, axis=0).repeat(scale, axis=1))
        keep_full = _resize(keep, image.shape[:2], 'nearest')[..., None]
        kept = (image * (0.25 + 0.75 * keep_full)).round().astype(np.uint8)
        rows.append(np.concatenate([
            _label(image, 'input'),
            _label(heatmap_overlay(image, features[k]), f'reference channel {k}'),
            _label(kept, f'kept {keep.float().mean().item():.0%}'),
        ], axis=1))
    return np.concatenate(rows, axis=0)


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

    def render(self) -> np.ndarray:
        """The picture of the recorded iteration (RGB uint8), see ``render_mask_panels``."""
        if self.inputs is None or self.fd_input is None:
            raise RuntimeError('MaskSnapshot: the data preprocessor or the FocusedDropout module did '
                               'not run during this iteration; nothing to draw')
        return render_mask_panels(network_input_to_rgb(self.data_preprocessor, self.inputs),
                                  self.fd_input, self.fd_output)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
