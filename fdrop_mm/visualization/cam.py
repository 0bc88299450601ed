"""Class activation maps of several checkpoints side by side (paper Fig. 4), with grad-cam.

One row per image, one column for the network input and one per checkpoint, saved as one PNG
(:func:`cam_grid`). Works for mmpretrain classifiers (``default_scope='mmpretrain'``) and for
single-stage mmdet detectors (``default_scope='mmdet'``, e.g. RetinaNet), whose ResNet backbone
is the usual target. Each image goes through the config's test pipeline and data preprocessor,
and the map is drawn on exactly that network input.

The score whose gradient makes the map: a classifier's logit of ``target_category``, default
its own predicted class. A detector has no class score, so it is the sum of the ``det_topk``
highest classification logits over all FPN levels, anchors and classes: the scores of its most
confident candidate boxes before NMS, so the map shows what drives its strongest detections.
"""
import copy
import difflib
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import mmcv
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from .drawing import heatmap_overlay, load_model, network_input_to_rgb
from .style import MIN_PANEL_PX, PANEL_PX, FigureLayout, Legend, image_grid, save_figure, styled

METHODS = {'gradcam': GradCAM, 'gradcam++': GradCAMPlusPlus}
METHOD_NAMES = {'gradcam': 'Grad-CAM', 'gradcam++': 'Grad-CAM++'}
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(paths: Sequence[str]) -> List[Path]:
    """Image files from files and folders (a folder's images with a known extension, sorted);
    every one must exist and decode."""
    images = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise FileNotFoundError(f'image folder {path} has no {"/".join(IMAGE_EXTENSIONS)} files')
            images += found
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f'image {path} does not exist')
    for image in images:
        if mmcv.imread(str(image)) is None:
            raise ValueError(f'cannot read image {image}: not a decodable image file')
    return images


def inference_pipeline(cfg: Config, scope: str) -> Compose:
    """The config's test pipeline; for mmdet without LoadAnnotations (as mmdet's DetInferencer)."""
    if scope == 'mmdet':
        from mmdet.utils import get_test_pipeline_cfg
        steps = [s for s in get_test_pipeline_cfg(cfg) if not s['type'].endswith('LoadAnnotations')]
    elif cfg.get('test_dataloader') is None:
        raise ValueError(f'{cfg.filename} has no test_dataloader, whose pipeline would preprocess the images')
    else:
        steps = cfg.test_dataloader.dataset.pipeline
    return Compose(copy.deepcopy(steps))


def find_layer(model: nn.Module, name: str, config: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        near = difflib.get_close_matches(name, list(modules), n=5, cutoff=0.5)
        raise ValueError(f'--target-layer {name!r}: no such module in {type(model).__name__} of {config}; '
                         f'closest: {near}')
    return modules[name]


class DetectionScore(nn.Module):
    """A single-stage detector as a one-output "classifier" for grad-cam: the sum of the ``topk``
    highest classification logits over all levels, anchors and classes (see the module doc)."""

    def __init__(self, detector: nn.Module, topk: int) -> None:
        super().__init__()
        self.detector = detector
        self.topk = topk

    def forward(self, inputs: Tensor) -> Tensor:
        outputs = self.detector(inputs, mode='tensor')
        if not (isinstance(outputs, tuple) and len(outputs) >= 2 and isinstance(outputs[0], (list, tuple))
                and all(isinstance(t, Tensor) and t.dim() == 4 for t in outputs[0])):
            raise ValueError(f'{type(self.detector).__name__}: vis_cam needs a single-stage dense detector '
                             '(forward(mode="tensor") returning per-level (cls_scores, bbox_preds, ...)), '
                             'e.g. RetinaNet, FCOS, ATSS')
        logits = torch.cat([level.flatten(1) for level in outputs[0]], dim=1)
        return logits.topk(min(self.topk, logits.shape[1]), dim=1).values.sum(dim=1, keepdim=True)


class CamColumn:
    """One checkpoint: its model, preprocessing and CAM target."""

    def __init__(self, config: str, checkpoint: str, label: str, method: str, target_layer: str,
                 target_category: Optional[int], det_topk: int, device: str) -> None:
        self.model, cfg, scope, self.classes = load_model(config, checkpoint, device)
        self.pipeline = inference_pipeline(cfg, scope)
        self.label = label
        self.layer = find_layer(self.model, target_layer, config)
        self.is_detector = scope == 'mmdet'
        self.scored = DetectionScore(self.model, det_topk) if self.is_detector else self.model
        self.method, self.target_category, self.device = METHODS[method], target_category, device

    def network_input(self, image: Path) -> Tensor:
        data = self.pipeline(dict(img_path=str(image), img_id=0))
        return self.model.data_preprocessor(pseudo_collate([data]), False)['inputs'].to(self.device)

    def overlay(self, image: Path):
        """(network input as RGB uint8, CAM overlay, caption lines)."""
        inputs = self.network_input(image)
        with torch.no_grad():
            scores = self.scored(inputs)[0]
        if self.is_detector:
            target, caption = 0, [f'top-{self.scored.topk} logits', f'sum {scores[0]:.1f}']
        else:
            if scores.dim() != 1:
                raise ValueError(f'{self.label}: expected class logits of shape (N, classes) from '
                                 f'{type(self.model).__name__}, got {tuple(scores.shape)}')
            target = int(scores.argmax()) if self.target_category is None else self.target_category
            if not 0 <= target < scores.numel():
                raise ValueError(f'--target-category {target} is outside the {scores.numel()} classes')
            name = self.classes[target] if self.classes else str(target)
            caption = [name, f'{scores.softmax(0)[target]:.0%}']
        with self.method(model=self.scored, target_layers=[self.layer]) as cam:
            heat = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(target)])[0]
        rgb = network_input_to_rgb(self.model.data_preprocessor, inputs)[0]
        return rgb, heatmap_overlay(rgb, heat), caption


def cam_grid(images: Sequence[str], models: Sequence[Tuple[str, str]], labels: Sequence[str], out: Path,
             method: str = 'gradcam', target_layer: str = 'backbone.layer4',
             target_category: Optional[int] = None, det_topk: int = 10, cell_size: int = PANEL_PX,
             device: str = 'cpu') -> FigureLayout:
    """Draw the CAM grid of ``images`` (files and/or folders) for ``models`` ((config, checkpoint)
    pairs, one column each, headed by ``labels``) into the PNG ``out``, print what was written and
    return its layout. Each image is a ``cell_size`` square panel with its file name (input
    column) or the explained class and its probability (CAM columns) under it, long names
    shortened by ``style.shorten``; a colour bar reads the maps. Nothing is written if an
    image, config or checkpoint is missing or unusable."""
    if method not in METHODS:
        raise ValueError(f'method must be one of {sorted(METHODS)}, got {method!r}')
    if len(labels) != len(models):
        raise ValueError(f'labels: {len(labels)} labels for {len(models)} models')
    if det_topk < 1 or cell_size < MIN_PANEL_PX:
        raise ValueError(f'det_topk must be >= 1 and cell_size >= {MIN_PANEL_PX}, got {det_topk} and {cell_size}')
    files = list_images(images)
    columns = [CamColumn(config, checkpoint, label, method, target_layer, target_category, det_topk, device)
               for (config, checkpoint), label in zip(models, labels)]
    rows = []
    for image in files:
        overlays = [column.overlay(image) for column in columns]
        rows.append([(overlays[0][0], [image.name])] + [(cam, caption) for _, cam, caption in overlays])
    explained = (f'the sum of the top-{det_topk} classification logits' if columns[0].is_detector
                 else 'the explained class and its softmax probability')
    with styled():
        fig = image_grid(rows, ['input'] + list(labels),
                         [f'{METHOD_NAMES[method]} on {target_layer}', f'under each map: {explained}'],
                         legends=[Legend('CAM, scaled per image', columns=range(1, len(columns) + 1))],
                         panel_px=cell_size)
        layout = save_figure(fig, Path(out))
    print(f'wrote {out} ({len(files)} images x {len(columns)} checkpoints, {method} on {target_layer})')
    return layout
