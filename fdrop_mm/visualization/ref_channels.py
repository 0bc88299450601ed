"""Reference-channel statistics of a trained classifier (paper §2, Fig. 2).

For every correctly classified image of a dataset, the index of the channel of the last stage
with the highest mean activation (FocusedDropout's "reference channel"); per class, how often
each channel is it. The paper finds one or two fixed channels per class.
:func:`reference_channel_stats` writes ``ref_channels.csv`` (class_index, class, channel, count:
all classes, rows with a non-zero count; the counts add up to the number of correctly classified
images) and ``ref_channels.png`` (a histogram per plotted class). The dataset is the
config's ``<split>_dataloader``; ``data_root`` replaces its dataset's ``data_root``.
"""
import copy
import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional, Sequence

import torch
from matplotlib.ticker import MaxNLocator
from mmengine.runner import Runner
from torch import Tensor

from .drawing import load_model, reference_channel
from .style import FigureLayout, fitted_title, plot_grid, save_figure, styled

MAX_COLUMNS = 3
SPLITS = ('val', 'test')


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


def most_often(histogram: Counter) -> str:
    """', most often channel k', or how many channels tie for it; '' without images."""
    if not histogram:
        return ''
    top = max(histogram.values())
    leaders = [channel for channel, count in histogram.items() if count == top]
    return f', most often channel {leaders[0]}' if len(leaders) == 1 else f', {len(leaders)} channels tie at {top}'


def plot_histograms(path: Path, counts, classes, plotted, channels: int, title: str) -> FigureLayout:
    """A grid of per-class bar charts (images per channel, ``style.plot_grid``, up to 3 a row),
    each titled with its class name, its images and its most frequent channel."""
    with styled():
        fig, axes = plot_grid(len(plotted), MAX_COLUMNS, title=title)
        for ax, label in zip(axes, plotted):
            histogram = counts.get(label, Counter())
            ax.bar(list(histogram), list(histogram.values()), width=max(1.0, channels / 100))
            ax.set_xlim(-0.5, channels - 0.5)
            fitted_title(ax, f'{classes[label]}\n{sum(histogram.values())} images{most_often(histogram)}')
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel('reference channel')
            ax.set_ylabel('images')
        return save_figure(fig, path)


def reference_channel_stats(config: str, checkpoint: str, out_dir: Path, split: str = 'val',
                            data_root: Optional[str] = None, layer: str = 'backbone',
                            classes: Optional[Sequence[int]] = None, max_classes: int = 16,
                            device: str = 'cpu') -> FigureLayout:
    """Count the reference channels of ``layer`` over the ``split`` dataloader of ``config`` with
    ``checkpoint``; write ``ref_channels.csv`` and ``ref_channels.png`` (the histograms of
    ``classes``, default the first ``max_classes``) into ``out_dir``, print a summary and return
    the PNG's layout."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if max_classes < 1:
        raise ValueError(f'max_classes must be >= 1, got {max_classes}')
    model, cfg, scope, _ = load_model(config, checkpoint, device)
    if scope != 'mmpretrain':
        raise ValueError(f'{config}: ref_channel_stats needs an mmpretrain classifier, got scope {scope!r}')
    loader_cfg = copy.deepcopy(cfg.get(f'{split}_dataloader'))
    if not loader_cfg:
        raise ValueError(f'{config} has no {split}_dataloader')
    if data_root:
        if not Path(data_root).is_dir():
            raise FileNotFoundError(f'--data-root {data_root} is not a folder')
        loader_cfg.dataset.data_root = data_root
    loader = Runner.build_dataloader(loader_cfg)
    names = list(loader.dataset.metainfo['classes'])
    plotted = list(classes) if classes is not None else list(range(min(max_classes, len(names))))
    bad = [c for c in plotted if not 0 <= c < len(names)]
    if bad:
        raise ValueError(f'--classes {bad} outside the {len(names)} classes of the dataset')
    counts, seen, channels = count_reference_channels(model, loader, layer)
    correct = sum(sum(c.values()) for c in counts.values())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / 'ref_channels.csv', out_dir / 'ref_channels.png'
    write_csv(csv_path, counts, names)
    layout = plot_histograms(png_path, counts, names, plotted, channels,
                    f'reference channel of {layer} ({channels} channels), '
                    f'{correct}/{seen} correctly classified images')
    print(f'{seen} images, {correct} correctly classified, {channels} channels; '
          f'plotted classes {plotted} of {len(names)}')
    print(f'wrote {csv_path}')
    print(f'wrote {png_path}')
    return layout
