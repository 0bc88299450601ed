"""Class activation maps of several checkpoints side by side (paper Fig. 4), with grad-cam.

One row per image, one column for the network input and one per checkpoint, saved as one PNG::

    python tools/vis_cam.py IMAGE_OR_FOLDER [...] \\
        --model CONFIG CHECKPOINT --model CONFIG CHECKPOINT [--labels baseline fd] \\
        [--method gradcam|gradcam++] [--target-layer backbone.layer4] [--out work_dirs/vis_cam/cam.png]

Works for mmpretrain classifiers (``default_scope='mmpretrain'``) and for single-stage mmdet
detectors (``default_scope='mmdet'``, e.g. RetinaNet), whose ResNet backbone is the usual
target. Each image goes through the config's test pipeline and data preprocessor, and the map is
drawn on exactly that network input.

The score whose gradient makes the map: a classifier's logit of ``--target-category``, default
its own predicted class. A detector has no class score, so it is the sum of the ``--det-topk``
highest classification logits over all FPN levels, anchors and classes: the scores of its most
confident candidate boxes before NMS, so the map shows what drives its strongest detections.
"""
import argparse
import copy
import difflib
import os.path as osp
import sys
import textwrap
from pathlib import Path
from typing import List, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # the repo, when not installed

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import mmcv  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import Compose, pseudo_collate  # noqa: E402
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from torch import Tensor, nn  # noqa: E402

# importing fdrop_mm registers its modules and allows weights-only loading of mmengine checkpoints
from fdrop_mm.visualization import FIGURE_DPI, load_model, network_input_to_rgb, save_figure  # noqa: E402

METHODS = {'gradcam': GradCAM, 'gradcam++': GradCAMPlusPlus}
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
TITLE_PX = 24  # height of the title (two lines) above each cell


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

    def __init__(self, config: str, checkpoint: str, label: str, args) -> None:
        self.model, cfg, scope, self.classes = load_model(config, checkpoint, args.device)
        self.pipeline = inference_pipeline(cfg, scope)
        self.label = label
        self.layer = find_layer(self.model, args.target_layer, config)
        self.is_detector = scope == 'mmdet'
        self.scored = DetectionScore(self.model, args.det_topk) if self.is_detector else self.model
        self.method, self.target_category, self.device = METHODS[args.method], args.target_category, args.device

    def network_input(self, image: Path) -> Tensor:
        data = self.pipeline(dict(img_path=str(image), img_id=0))
        return self.model.data_preprocessor(pseudo_collate([data]), False)['inputs'].to(self.device)

    def overlay(self, image: Path):
        """(network input as RGB uint8, CAM overlay, caption)."""
        inputs = self.network_input(image)
        with torch.no_grad():
            scores = self.scored(inputs)[0]
        if self.is_detector:
            target, caption = 0, f'{self.label}: top-{self.scored.topk} logits {scores[0]:.1f}'
        else:
            if scores.dim() != 1:
                raise ValueError(f'{self.label}: expected class logits of shape (N, classes) from '
                                 f'{type(self.model).__name__}, got {tuple(scores.shape)}')
            target = int(scores.argmax()) if self.target_category is None else self.target_category
            if not 0 <= target < scores.numel():
                raise ValueError(f'--target-category {target} is outside the {scores.numel()} classes')
            name = self.classes[target] if self.classes else str(target)
            caption = f'{self.label}: {name} {scores.softmax(0)[target]:.0%}'
        with self.method(model=self.scored, target_layers=[self.layer]) as cam:
            heat = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(target)])[0]
        rgb = network_input_to_rgb(self.model.data_preprocessor, inputs)[0]
        return rgb, show_cam_on_image(rgb / 255.0, heat, use_rgb=True), caption


def save_grid(rows: List[List[tuple]], out: Path, cell: int) -> None:
    """Cells of ``cell`` x ``cell`` pixels under a ``TITLE_PX`` title: the PNG is
    (columns * cell) x (rows * (cell + TITLE_PX)) pixels."""
    nrows, ncols = len(rows), len(rows[0])
    height = cell + TITLE_PX
    fig = plt.figure(figsize=(ncols * cell / FIGURE_DPI, nrows * height / FIGURE_DPI), dpi=FIGURE_DPI)
    for r, row in enumerate(rows):
        for c, (image, title) in enumerate(row):
            total = nrows * height  # axes rectangles in figure fractions: left, bottom, width, height
            ax = fig.add_axes([c / ncols, 1 - (r + 1) * height / total, 1 / ncols, cell / total])
            ax.imshow(image)
            ax.set_axis_off()
            lines = textwrap.wrap(title, width=max(10, cell // 5), max_lines=2, placeholder='...')
            ax.set_title('\n'.join(lines), fontsize=6, pad=2)
    save_figure(fig, out)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', help='image files and/or folders of images')
    parser.add_argument('--model', nargs=2, action='append', required=True, metavar=('CONFIG', 'CHECKPOINT'),
                        help='a checkpoint and its config; repeat for each column')
    parser.add_argument('--labels', nargs='+', help='column labels (default: the checkpoint folder names)')
    parser.add_argument('--method', choices=sorted(METHODS), default='gradcam')
    parser.add_argument('--target-layer', default='backbone.layer4',
                        help='module whose output the CAM is computed on (default backbone.layer4, '
                             'the last ResNet stage)')
    parser.add_argument('--target-category', type=int, default=None,
                        help='classifiers: class index to explain (default: each model\'s prediction)')
    parser.add_argument('--det-topk', type=int, default=10,
                        help='detectors: how many of the highest classification logits to sum (default 10)')
    parser.add_argument('--cell-size', type=int, default=160, help='pixels per grid cell (default 160)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', type=Path, default=None,
                        help='output PNG (default work_dirs/vis_cam/cam_<method>.png)')
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.model):
        parser.error(f'--labels: {len(args.labels)} labels for {len(args.model)} --model entries')
    if args.det_topk < 1 or args.cell_size < 16:
        parser.error('--det-topk must be >= 1 and --cell-size >= 16')
    args.labels = args.labels or [Path(ckpt).parent.name for _, ckpt in args.model]
    args.out = args.out or Path('work_dirs/vis_cam') / f'cam_{args.method.replace("+", "p")}.png'
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        images = list_images(args.images)
        columns = [CamColumn(config, ckpt, label, args) for (config, ckpt), label in zip(args.model, args.labels)]
        rows = []
        for image in images:
            overlays = [column.overlay(image) for column in columns]
            rows.append([(overlays[0][0], image.name)] + [(cam, caption) for _, cam, caption in overlays])
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    save_grid(rows, args.out, args.cell_size)
    print(f'wrote {args.out} ({len(images)} images x {len(columns)} checkpoints, {args.method} on {args.target_layer})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
