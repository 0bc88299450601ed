"""Class activation maps of several checkpoints side by side (paper Fig. 4), with grad-cam.

Usage (the details: fdrop_mm.visualization.cam, below)::

    python tools/visualization/vis_cam.py IMAGE_OR_FOLDER [...] \\
        --model CONFIG CHECKPOINT --model CONFIG CHECKPOINT [--labels baseline fd] \\
        [--method gradcam|gradcam++] [--target-layer backbone.layer4] [--out work_dirs/vis_cam/cam.png]
"""
import argparse
from pathlib import Path

from fdrop_mm.cli import exit_on_bad_input, quiet_known_warnings
from fdrop_mm.visualization import cam


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1] + '\n\n'
                                     + cam.__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', help='image files and/or folders of images')
    parser.add_argument('--model', nargs=2, action='append', required=True, metavar=('CONFIG', 'CHECKPOINT'),
                        help='a checkpoint and its config; repeat for each column')
    parser.add_argument('--labels', nargs='+', help='column labels (default: the checkpoint folder names)')
    parser.add_argument('--method', choices=sorted(cam.METHODS), default='gradcam')
    parser.add_argument('--target-layer', default='backbone.layer4',
                        help='module whose output the CAM is computed on (default backbone.layer4, '
                             'the last ResNet stage)')
    parser.add_argument('--target-category', type=int, default=None,
                        help='classifiers: class index to explain (default: each model\'s prediction)')
    parser.add_argument('--det-topk', type=int, default=10,
                        help='detectors: how many of the highest classification logits to sum (default 10)')
    parser.add_argument('--cell-size', type=int, default=cam.PANEL_PX,
                        help=f'side of an image panel in pixels (default {cam.PANEL_PX}, at least {cam.MIN_PANEL_PX})')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', type=Path, default=None,
                        help='output PNG (default work_dirs/vis_cam/cam_<method>.png)')
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.model):
        parser.error(f'--labels: {len(args.labels)} labels for {len(args.model)} --model entries')
    if args.det_topk < 1 or args.cell_size < cam.MIN_PANEL_PX:
        parser.error(f'--det-topk must be >= 1 and --cell-size >= {cam.MIN_PANEL_PX}')
    args.labels = args.labels or [Path(ckpt).parent.name for _, ckpt in args.model]
    args.out = args.out or Path('work_dirs/vis_cam') / f'cam_{args.method.replace("+", "p")}.png'
    return args


def main(argv=None):
    quiet_known_warnings()
    args = parse_args(argv)
    exit_on_bad_input(cam.cam_grid, args.images, args.model, args.labels, args.out, method=args.method,
                      target_layer=args.target_layer, target_category=args.target_category,
                      det_topk=args.det_topk, cell_size=args.cell_size, device=args.device)


if __name__ == '__main__':
    main()
