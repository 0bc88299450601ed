"""Training and validation curves of several runs on one plot (paper Fig. 5, Fig. 6b), read from
mmengine's scalar logs (``<work_dir>/<timestamp>/vis_data/scalars.json``, see
:func:`~fdrop_mm.visualization.scalars.read_scalars`).

A run is a work dir (all its logs in timestamp order, so a resumed run is one curve) or one
scalars.json. One subplot per key, one line per run; every run must log every key.

A key logged in training records (``loss``, ``lr``, ``fd/keep_ratio``, ...) is averaged per epoch
in epoch-based runs and plotted per logged iteration in iteration-based runs; a validation key
(``accuracy/top1``, ``pascal_voc/mAP``, ...) at its validation step. Whether a run is
epoch-based is read from the ``config.py`` mmengine writes beside scalars.json.
``fd/keep_ratio`` (FocusedDropoutHook) is averaged over the logged iterations that were focused
(``fd/active`` = 1): the paper's keep ratio of an epoch is the mean over the masks of that epoch
(§5.2.2); the other records only repeat the latest focused iteration's value.
"""
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

from matplotlib.ticker import MaxNLocator
from mmengine.config import Config

from .scalars import read_scalars
from .style import DPI, FONT_PT, MARGIN_PX, FigureLayout, fit_line, fitted_title, plot_grid, save_figure, styled

MAX_COLUMNS = 3
LEGEND_COLUMNS = 4
KEEP_RATIO, ACTIVE = 'fd/keep_ratio', 'fd/active'
BOOKKEEPING = {'epoch', 'iter', 'step'}


class ScalarLog:
    """The merged training and validation records of one run, and whether it is epoch-based."""

    def __init__(self, run: Path) -> None:
        records = read_scalars(run)
        self.name = str(run)
        self.files, self.train, self.val = records.files, records.train, records.val
        config = self.files[-1].parent / 'config.py'
        if not config.is_file():
            raise FileNotFoundError(f'{config} is missing: plot_curves reads train_cfg from it to know whether '
                                    f'{self.files[-1]} counts validation steps in epochs or iterations')
        train_cfg = Config.fromfile(str(config), import_custom_modules=False).get('train_cfg') or {}
        self.by_epoch = (train_cfg.get('type') == 'EpochBasedTrainLoop' if 'type' in train_cfg
                         else bool(train_cfg.get('by_epoch', False)))

    def keys(self) -> List[str]:
        return sorted({k for r in self.train + self.val for k in r} - BOOKKEEPING)

    def series(self, key: str):
        """(x, y, x unit, phase) of one key."""
        train = [r for r in self.train if key in r]
        if key == KEEP_RATIO:
            focused = [r for r in train if r.get(ACTIVE, 1.0) == 1.0]
            skipped = sorted({r['epoch'] for r in train} - {r['epoch'] for r in focused})
            if self.by_epoch and focused and skipped:
                print(f'note: {self.name}: no logged focused iteration in epochs {skipped}, no {key} point there')
            train = focused
        if train:
            if not self.by_epoch:
                return [r['iter'] for r in train], [r[key] for r in train], 'iteration', 'train'
            per_epoch: Dict[int, List[float]] = defaultdict(list)
            for r in train:
                per_epoch[r['epoch']].append(r[key])
            epochs = sorted(per_epoch)
            return epochs, [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs], 'epoch', 'train, mean per epoch'
        val = [r for r in self.val if key in r]
        if val:
            return [r['step'] for r in val], [r[key] for r in val], 'epoch' if self.by_epoch else 'iteration', 'val'
        if any(key in r for r in self.train):
            raise ValueError(f'{self.name}: {KEEP_RATIO} is logged only on iterations with {ACTIVE} = 0; '
                             'no logged iteration was a focused one (log more often: logger interval)')
        files = ', '.join(map(str, self.files))
        raise ValueError(f'{files}: no scalar {key!r}; it has {self.keys()}')


def plot(logs: List[ScalarLog], labels: List[str], keys: List[str], out: Path) -> FigureLayout:
    """One plot per key (``style.plot_grid``, up to 3 a row), one colour per run, named in one
    legend under the plots (labels shortened by ``style.shorten``)."""
    series = {key: [log.series(key) for log in logs] for key in keys}  # all errors before drawing
    for key, runs in series.items():
        if len({unit for _, _, unit, _ in runs}) > 1:
            units = ', '.join(f'{log.name}: {unit}' for log, (_, _, unit, _) in zip(logs, runs))
            raise ValueError(f'{key}: the runs do not share an x axis ({units}); plot them separately')
    ncols = min(len(labels), LEGEND_COLUMNS)
    with styled():
        fig, axes = plot_grid(len(keys), MAX_COLUMNS, legend_rows=math.ceil(len(labels) / ncols))
        for ax, key in zip(axes, keys):
            for label, (x, y, unit, phase) in zip(labels, series[key]):
                ax.plot(x, y, marker='o' if len(x) <= 30 else None, markersize=4, label=label)
            fitted_title(ax, f'{key}\n{phase}')
            ax.set_xlabel(unit)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True)
        entries = [fit_line(label, fig.get_figwidth() * DPI / ncols - 8 * MARGIN_PX, FONT_PT['legend'])
                   for label in labels]
        fig.legend(axes[0].get_lines(), [entry for entry, _ in entries], loc='outside lower center', ncols=ncols,
                   fontsize=min(size for _, size in entries))
        return save_figure(fig, out)


def plot_curves(runs: Sequence[Path], keys: Sequence[str], labels: Sequence[str], out: Path) -> FigureLayout:
    """Plot ``keys`` of ``runs`` (work dirs or scalars.json files), one legend ``label`` per run,
    into the PNG ``out``, print what was written and return its layout."""
    if len(labels) != len(runs):
        raise ValueError(f'labels: {len(labels)} labels for {len(runs)} runs')
    if not keys:
        raise ValueError('keys: no scalar to plot')
    logs = [ScalarLog(Path(run)) for run in runs]
    layout = plot(logs, list(labels), list(keys), Path(out))
    print(f'wrote {out} ({", ".join(keys)} of {len(logs)} runs)')
    return layout
