"""The one look of every picture this package draws: the CAM grids, the live mask pictures,
the reference-channel histograms and the curves share sizes, fonts, colour map, text rule and
layouts, so that they read alike side by side in the docs.

- Sizes are pixels at ``DPI``: an image panel is ``PANEL_PX`` square (never under
  ``MIN_PANEL_PX``), a plot's cell ``PLOT_PX``; font sizes are ``FONT_PT``.
- Text never leaves its panel: a line too wide is shortened by :func:`shorten` (whole parts
  kept, cut only after a separator, an ellipsis in place of the middle), and
  :func:`check_layout` refuses a figure with a text outside it.
- ``CMAP`` colours every heat map (CAM, reference channel), and each such picture has a colour
  bar; a colour that stands for a run or a state has a legend entry.
- :func:`image_grid` lays out rows of image panels with column titles, captions under each
  panel and a legend strip (fixed pixel geometry, matplotlib text); :func:`plot_grid` a grid
  of plots (matplotlib's constrained layout).
"""
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch
from matplotlib.text import Text

DPI = 100  # figures are sized in pixels / DPI inches
PANEL_PX = 256  # side of an image panel: 64- and 32-pixel inputs are drawn at an integer scale
MIN_PANEL_PX = 200
PLOT_PX = (380, 300)  # width, height of one plot's cell
FONT_PT = dict(figure=11, title=10, caption=9, label=9, tick=8, legend=9)
MIN_FONT_PT = 6
CMAP = 'jet'  # the heat maps' colours (as grad-cam's and the paper's Fig. 4)
ELLIPSIS = '\u2026'
SEPARATORS = ' _-./:,'  # a line may be cut only after one of these
MARGIN_PX = 8  # around the figure and between panels
COLORBAR_PX = 12  # height of an image grid's colour bar
LINE_SPACING = 1.35  # a text line is this many font sizes high
PANEL_LABEL = 'panel'  # matplotlib label of the axes that hold an image or a plot
RC_PARAMS = {
    'figure.dpi': DPI, 'savefig.dpi': DPI, 'font.size': FONT_PT['label'],
    'axes.titlesize': FONT_PT['title'], 'axes.labelsize': FONT_PT['label'],
    'xtick.labelsize': FONT_PT['tick'], 'ytick.labelsize': FONT_PT['tick'],
    'legend.fontsize': FONT_PT['legend'], 'figure.titlesize': FONT_PT['figure'],
    'image.cmap': CMAP, 'grid.alpha': 0.3, 'axes.titlepad': 4,
}

Box = Tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels, origin top left


@contextmanager
def styled():
    """matplotlib settings of every picture: create and save figures inside this context."""
    with matplotlib.rc_context(RC_PARAMS):
        yield


def line_px(fontsize: float) -> int:
    """Height in pixels of one text line of ``fontsize`` points."""
    return math.ceil(fontsize * DPI / 72 * LINE_SPACING)


_MEASURE = RendererAgg(1, 1, DPI)


def text_width_px(text: str, fontsize: float, weight: str = 'normal') -> float:
    """Width in pixels of ``text`` drawn at ``fontsize`` points (the style's font, at ``DPI``)."""
    width, _, _ = _MEASURE.get_text_width_height_descent(
        text, FontProperties(size=fontsize, weight=weight), ismath=False)
    return width


def split_after_separators(text: str) -> List[str]:
    """``text`` cut after each separator: 'a_b.png' -> ['a_', 'b.', 'png']."""
    return [part for part in re.split(f'(?<=[{re.escape(SEPARATORS)}])', text) if part]


def shorten(text: str, fits: Callable[[str], bool]) -> Optional[str]:
    """``text`` if it fits; else the longest ``head + ELLIPSIS + tail`` that fits, where head and
    tail are whole parts of :func:`split_after_separators` (at least one part dropped), so that no
    word is ever cut. Both ends are kept where they can be (a class's common name, a file's number
    and extension, a run's folder), else the end alone; of equally long ones the one with the
    longer tail. None if not even the last part fits."""
    if fits(text):
        return text
    parts = split_after_separators(text)
    count = len(parts)
    candidates = []
    for tail in range(1, count):
        for head in range(count - tail):
            kept = ''.join(parts[:head]) + ELLIPSIS + ''.join(parts[count - tail:])
            candidates.append((head == 0, -len(kept), -tail, kept))
    for *_, kept in sorted(candidates):
        if fits(kept):
            return kept
    return None


def fit_line(text: str, width_px: float, fontsize: float, weight: str = 'normal') -> Tuple[str, float]:
    """(line, font size): ``text`` at ``fontsize``, shortened by :func:`shorten` to ``width_px``;
    only a text with a single word wider than that is drawn smaller (down to ``MIN_FONT_PT``)."""
    size = fontsize
    while size >= MIN_FONT_PT:
        line = shorten(text, lambda t: text_width_px(t, size, weight) <= width_px)
        if line is not None:
            return line, size
        size -= 1
    raise ValueError(f'text {text!r}: a word of it is wider than {width_px:.0f} px even at {MIN_FONT_PT} pt')


def new_figure(width_px: float, height_px: float, **kwargs) -> Figure:
    """A figure of ``width_px`` x ``height_px`` pixels on an Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, **kwargs)
    FigureCanvasAgg(fig)
    return fig


@dataclass
class FigureLayout:
    """Where things landed in a drawn figure, in image pixels (origin top left)."""
    size: Tuple[int, int]  # width, height
    panels: List[Box]  # the axes that hold an image or a plot, in creation order
    texts: List[Tuple[str, Box]] = field(default_factory=list)  # every visible text
    legends: int = 0  # figure and axes legends
    colorbars: int = 0


def _image_box(bbox, height: float) -> Box:
    return (float(bbox.x0), float(height - bbox.y1), float(bbox.x1), float(height - bbox.y0))


def _texts(fig: Figure) -> List[Text]:
    """The figure's titles, captions, axis and legend texts (not tick labels)."""
    texts = list(fig.texts) + ([fig._suptitle] if fig._suptitle else [])
    for ax in fig.axes:
        if ax.get_visible():
            texts += [ax.title, ax._left_title, ax._right_title] + list(ax.texts)
            if ax.axison:
                texts += [ax.xaxis.label, ax.yaxis.label]
    for legend in list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        texts += legend.get_texts() + [legend.get_title()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def check_layout(fig: Figure) -> FigureLayout:
    """Draw ``fig`` and measure it: a ValueError if anything drawn (text, tick label, legend)
    reaches outside the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    texts = [(t.get_text(), _image_box(t.get_window_extent(renderer), height)) for t in _texts(fig)]
    def outside(x0, y0, x1, y1) -> bool:
        return x0 < -0.5 or y0 < -0.5 or x1 > width + 0.5 or y1 > height + 0.5

    drawn = [v * DPI for v in fig.get_tightbbox(renderer).extents]  # inches -> pixels
    if outside(*drawn):
        raise ValueError(f'the {width}x{height} figure draws outside itself (to {tuple(round(v) for v in drawn)} '
                         f'px); texts outside: {[s for s, box in texts if outside(*box)]}')
    panels = [_image_box(ax.get_window_extent(renderer), height) for ax in fig.axes
              if ax.get_label() == PANEL_LABEL and ax.get_visible()]
    legends = len(fig.legends) + sum(ax.get_legend() is not None for ax in fig.axes)
    colorbars = sum(getattr(ax, '_colorbar', None) is not None for ax in fig.axes)
    return FigureLayout(size=(width, height), panels=panels, texts=texts, legends=legends, colorbars=colorbars)


def save_figure(fig: Figure, path: Path) -> FigureLayout:
    """Check (:func:`check_layout`) and write ``fig`` as a PNG (creating the folder)."""
    layout = check_layout(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return layout


def figure_rgb(fig: Figure) -> Tuple[np.ndarray, FigureLayout]:
    """(H, W, 3) uint8 RGB pixels of the checked figure, and its layout."""
    layout = check_layout(fig)
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy(), layout


def plot_grid(count: int, max_columns: int, title: Optional[str] = None, legend_rows: int = 0):
    """(figure, ``count`` axes): up to ``max_columns`` plots a row, each ``PLOT_PX`` (spare cells
    hidden), in matplotlib's constrained layout; the figure is taller by the optional title (fitted
    to the width) and ``legend_rows`` lines of a figure legend under the plots."""
    ncols = min(max_columns, count)
    nrows = math.ceil(count / ncols)
    width = ncols * PLOT_PX[0]
    extra = (line_px(FONT_PT['figure']) if title else 0) + (
        legend_rows * line_px(FONT_PT['legend']) + 2 * MARGIN_PX if legend_rows else 0)
    fig = new_figure(width, nrows * PLOT_PX[1] + extra, layout='constrained')
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    for ax in axes[count:]:
        ax.set_visible(False)
    for ax in axes[:count]:
        ax.set_label(PANEL_LABEL)
    if title:
        line, size = fit_line(title, width - 2 * MARGIN_PX, FONT_PT['figure'])
        fig.suptitle(line, fontsize=size)
    return fig, list(axes[:count])


def fitted_title(ax, text: str, width_px: float = PLOT_PX[0] - 4 * MARGIN_PX) -> None:
    """An axes title of one or more lines (``\\n``), each fitted to ``width_px``."""
    lines = [fit_line(line, width_px, FONT_PT['title']) for line in text.split('\n')]
    ax.set_title('\n'.join(line for line, _ in lines), fontsize=min(size for _, size in lines))


@dataclass
class Legend:
    """What a colour means, drawn under ``columns`` of an image grid: a colour bar of ``CMAP``
    from 'low' to 'high' (``color`` None) or a patch of ``color``."""
    label: str
    columns: Sequence[int]
    color: Optional[tuple] = None


def image_grid(cells: Sequence[Sequence[Tuple[np.ndarray, Sequence[str]]]], column_titles: Sequence[str],
               title: Sequence[str], legends: Sequence[Legend] = (), panel_px: int = PANEL_PX) -> Figure:
    """A figure of rows of (image, caption lines) cells: ``title`` lines on top, a bold title
    over each column, each image in a ``panel_px`` square (aspect kept, nearest-neighbour
    scaling), its caption lines under it, and the ``legends`` in a strip at the bottom. Every
    line is fitted to its width by :func:`fit_line`; nothing is cut mid-word."""
    if panel_px < MIN_PANEL_PX:
        raise ValueError(f'panel size must be >= {MIN_PANEL_PX} px, got {panel_px}')
    nrows, ncols = len(cells), len(column_titles)
    if any(len(row) != ncols for row in cells):
        raise ValueError(f'every row needs {ncols} cells (one per column title)')
    caption_lines = max(len(caption) for row in cells for _, caption in row)
    title_h, head_h, caption_h = line_px(FONT_PT['figure']), line_px(FONT_PT['title']), line_px(FONT_PT['caption'])
    row_h = panel_px + caption_lines * caption_h + MARGIN_PX
    legend_h = 2 * MARGIN_PX + COLORBAR_PX + line_px(FONT_PT['tick']) + line_px(FONT_PT['legend']) if legends else 0
    top = MARGIN_PX + len(title) * title_h + head_h
    width = 2 * MARGIN_PX + ncols * panel_px + (ncols - 1) * MARGIN_PX
    height = top + nrows * row_h + legend_h + MARGIN_PX
    fig = new_figure(width, height)

    def x_of(column: int) -> int:
        return MARGIN_PX + column * (panel_px + MARGIN_PX)

    def text(x: float, y: float, line: str, fit_px: float, fontsize: float, **kwargs) -> None:
        fitted, size = fit_line(line, fit_px, fontsize, kwargs.get('weight', 'normal'))
        fig.text(x / width, 1 - y / height, fitted, fontsize=size, ha='center', va='top', parse_math=False,
                 **kwargs)

    for i, line in enumerate(title):
        text(width / 2, MARGIN_PX + i * title_h, line, width - 2 * MARGIN_PX, FONT_PT['figure'])
    for c, name in enumerate(column_titles):
        text(x_of(c) + panel_px / 2, top - head_h, name, panel_px, FONT_PT['title'], weight='bold')
    for r, row in enumerate(cells):
        y = top + r * row_h
        for c, (image, caption) in enumerate(row):
            ax = fig.add_axes((x_of(c) / width, 1 - (y + panel_px) / height, panel_px / width, panel_px / height),
                              label=PANEL_LABEL)
            ax.imshow(image, interpolation='nearest')
            ax.set_axis_off()
            for i, line in enumerate(caption):
                text(x_of(c) + panel_px / 2, y + panel_px + 2 + i * caption_h, line, panel_px, FONT_PT['caption'])
    y = height - legend_h
    for legend in legends:
        x0, x1 = x_of(min(legend.columns)), x_of(max(legend.columns)) + panel_px
        if legend.color is None:
            bar_w = min(x1 - x0, 2 * panel_px) - 2 * MARGIN_PX
            cax = fig.add_axes(((x0 + x1 - bar_w) / 2 / width, 1 - (y + MARGIN_PX + COLORBAR_PX) / height,
                                bar_w / width, COLORBAR_PX / height))
            bar = fig.colorbar(ScalarMappable(cmap=CMAP), cax=cax, orientation='horizontal',
                               ticks=[0, 1])
            bar.ax.set_xticklabels(['low', 'high'])
            line, size = fit_line(legend.label, bar_w, FONT_PT['legend'])
            bar.set_label(line, fontsize=size, labelpad=1)
        else:
            line, size = fit_line(legend.label, x1 - x0 - 4 * MARGIN_PX, FONT_PT['legend'])
            fig.legend(handles=[Patch(facecolor=legend.color, edgecolor='black', label=line)],
                       loc='upper center', bbox_to_anchor=((x0 + x1) / 2 / width, 1 - (y + MARGIN_PX) / height),
                       frameon=False, fontsize=size, borderaxespad=0, borderpad=0)
    return fig
