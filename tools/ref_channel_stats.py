"""Reference-channel statistics of a trained classifier (paper §2, Fig. 2).

For every correctly classified image of a dataset, the index of the channel of the last stage
with the highest mean activation (FocusedDropout's "reference channel"); per class, how often
each channel is it. The paper finds one or two fixed channels per class::

    python tools/ref_channel_stats.py CONFIG CHECKPOINT [--split val|test] [--data-root DIR] \\
        [--layer backbone] [--classes 0 3 7] [--max-classes 16] [--out-dir DIR]

writes ``ref_channels.csv`` (class_index, class, channel, count: all classes, rows with a
non-zero count; the counts add up to the number of correctly classified images) and
``ref_channels.png`` (a small histogram per plotted class) into ``--out-dir`` (default
``work_dirs/ref_channel_stats/<checkpoint folder>``). The dataset is the config's
``<split>_dataloader``; ``--data-root`` replaces its dataset's ``data_root``.
"""
import argparse
import copy
import csv
import os.path as osp
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # the repo, when not installed

from matplotlib.ticker import MaxNLocator  # noqa: E402
import torch  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from torch import Tensor  # noqa: E402

# importing fdrop_mm registers its modules and allows weights-only loading of mmengine checkpoints
from fdrop_mm.visualization import load_model, reference_channel, save_figure, subplot_grid  # noqa: E402

SUBPLOT_PX = (300, 220)  # width, height of one class's histogram


def last_stage_output(output) -> Tensor:
    """A backbone returns a tuple of stage outputs: the last one is the last stage."""
    return output[-1] if isinstance(output, (tuple, list)) else output


def count_reference_channels(model, dataloader, layer_name: str):
    """(counts: {class index: Counter(channel -> images)}, images seen, channels) over the
    correctly classified images; the features are ``layer_name``'s output (its last element
    if it returns several)."""
    modules = dict(model.named_modules())
    if layer_name not in modules:
        raise ValueError(f'--layer {layer_name!r}: no such module in {type(model).__name__}; '
                         f'top-level modules: {[n for n, _ in model.named_children()]}')
    captured = []
    handle = modules[layer_name].register_forward_hook(
        lambda module, args, output: captured.append(last_stage_output(output).detach()))
    counts, seen, channels = defaultdict(Counter), 0, None
    try:
        with torch.no_grad():
            for batch in dataloader:
                captured.clear()
                samples = model.test_step(batch)
                if not captured:
                    raise ValueError(f'--layer {layer_name!r} did not run in the forward pass')
                features = captured[0]
                if features.dim() != 4:
                    raise ValueError(f'--layer {layer_name!r} gives features of shape {tuple(features.shape)}, '
                                     'expected (N, C, H, W)')
                channels = features.shape[1]
                for sample, channel in zip(samples, reference_channel(features).tolist()):
                    seen += 1
                    label = int(sample.gt_label[0])
                    if int(sample.pred_label[0]) == label:
                        counts[label][channel] += 1
    finally:
        handle.remove()
    return counts, seen, channels


def write_csv(path: Path, counts, classes) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['class_index', 'class', 'channel', 'count'])
        for label in sorted(counts):
            for channel, count in counts[label].most_common():
                writer.writerow([label, classes[label], channel, count])


def plot_histograms(path: Path, counts, classes, plotted, channels: int, title: str) -> None:
    """A grid of per-class bar charts (count per channel); the PNG is
    (columns * 300) x (rows * 220) pixels, with up to 4 columns."""
    fig, axes = subplot_grid(len(plotted), 4, SUBPLOT_PX)
    for ax, label in zip(axes, plotted):
        histogram = counts.get(label, Counter())
        ax.bar(list(histogram), list(histogram.values()), width=max(1.0, channels / 100), color='tab:blue')
        ax.set_xlim(-0.5, channels - 0.5)
        top = f', top ch {histogram.most_common(1)[0][0]}' if histogram else ''
        ax.set_title(f'{classes[label]} (n={sum(histogram.values())}{top})', fontsize=8)
        ax.tick_params(labelsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel('channel', fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='classifier config (mmpretrain)')
    parser.add_argument('checkpoint', help='its trained checkpoint')
    parser.add_argument('--split', choices=['val', 'test'], default='val',
                        help="which of the config's dataloaders to use (default val)")
    parser.add_argument('--data-root', help="replace the dataset's data_root")
    parser.add_argument('--layer', default='backbone',
                        help='module whose output (last element of a tuple) is the last stage (default backbone)')
    parser.add_argument('--classes', type=int, nargs='+',
                        help='class indices to plot (default the first --max-classes)')
    parser.add_argument('--max-classes', type=int, default=16, help='classes to plot without --classes (default 16)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out-dir', type=Path, help='default work_dirs/ref_channel_stats/<checkpoint folder>')
    args = parser.parse_args(argv)
    if args.max_classes < 1:
        parser.error('--max-classes must be >= 1')
    args.out_dir = args.out_dir or Path('work_dirs/ref_channel_stats') / Path(args.checkpoint).resolve().parent.name
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        model, cfg, scope, _ = load_model(args.config, args.checkpoint, args.device)
        if scope != 'mmpretrain':
            raise ValueError(f'{args.config}: ref_channel_stats needs an mmpretrain classifier, got scope {scope!r}')
        loader_cfg = copy.deepcopy(cfg.get(f'{args.split}_dataloader'))
        if not loader_cfg:
            raise ValueError(f'{args.config} has no {args.split}_dataloader')
        if args.data_root:
            if not Path(args.data_root).is_dir():
                raise FileNotFoundError(f'--data-root {args.data_root} is not a folder')
            loader_cfg.dataset.data_root = args.data_root
        loader = Runner.build_dataloader(loader_cfg)
        classes = list(loader.dataset.metainfo['classes'])
        plotted = args.classes if args.classes is not None else list(range(min(args.max_classes, len(classes))))
        bad = [c for c in plotted if not 0 <= c < len(classes)]
        if bad:
            raise ValueError(f'--classes {bad} outside the {len(classes)} classes of the dataset')
        counts, seen, channels = count_reference_channels(model, loader, args.layer)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    correct = sum(sum(c.values()) for c in counts.values())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = args.out_dir / 'ref_channels.csv', args.out_dir / 'ref_channels.png'
    write_csv(csv_path, counts, classes)
    plot_histograms(png_path, counts, classes, plotted, channels,
                    f'reference channel of {args.layer} ({channels} channels), '
                    f'{correct}/{seen} correctly classified images')
    print(f'{seen} images, {correct} correctly classified, {channels} channels; '
          f'plotted classes {plotted} of {len(classes)}')
    print(f'wrote {csv_path}')
    print(f'wrote {png_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
