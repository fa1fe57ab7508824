"""The book's house style and figure helpers shared by the chapters. Used by every chapter.

Call :func:`set_style` once at the top of a chapter (``start_chapter`` does); then
:func:`subplots`, :func:`band` (mean and spread over seeds), :func:`heatmap` and
:func:`image_row` give every chapter the same look. Figures are drawn at the page
column's width (:data:`COLUMN_WIDTH` inches, at most two panels a row), so the page
shows them at their size and no text falls below :data:`MIN_FONT_PT` points;
:func:`figure_problems` says when a figure breaks that, and after :func:`set_style`
every figure that is drawn wider or with smaller text raises a
:class:`FigureLayoutWarning`.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

PALETTE = "colorblind"
#: inches: a figure's width on the page. Figures are SVG (vector: sharp when a reader
#: zooms) shown at :data:`DPI` px an inch: 671 px in the page's 720-px column, 9-pt text
#: 14 px on a laptop; on a phone the figure shrinks with the column and zooms back sharp
COLUMN_WIDTH = 6.1
#: smallest font size (points) of any text in a figure
MIN_FONT_PT = 9.0
#: px per inch of a figure on the page (and of a PNG figure)
DPI = 110
MAX_PANELS_PER_ROW = 2


class FigureLayoutWarning(UserWarning):
    """A figure is wider than the page column or has text smaller than 9 pt."""


def figure_problems(fig, renderer=None) -> list[str]:
    """What keeps ``fig`` from showing at its size on the page: too wide, or text too small.

    Measures the figure as it is saved (tight bounding box, so legends and labels that
    stick out count) and every visible, non-empty text in it. Returns one sentence per
    problem; an empty list means the figure fits.
    """
    from matplotlib.text import Text

    if renderer is None:
        renderer = fig.canvas.get_renderer()
    problems = []
    width = fig.get_tightbbox(renderer).width  # inches
    if width > COLUMN_WIDTH + 0.15:
        problems.append(
            f"figure is {width:.1f} in wide, the page column {COLUMN_WIDTH} in: the page "
            f"would shrink its text below its size"
        )
    small = sorted(
        {
            round(t.get_fontsize(), 1)
            for t in fig.findobj(Text)
            if t.get_visible()
            and t.get_text().strip()
            and t.get_fontsize() < MIN_FONT_PT - 1e-6
        }
    )
    if small:
        problems.append(
            f"text at {', '.join(map(str, small))} pt, below {MIN_FONT_PT:g} pt"
        )
    return problems


def _warn_on_draw(event) -> None:
    for problem in figure_problems(event.canvas.figure, event.renderer):
        warnings.warn(problem, FigureLayoutWarning, stacklevel=2)


def _watch(fig) -> None:
    """``figure.hooks`` entry: check every figure each time it is drawn."""
    fig.canvas.mpl_connect("draw_event", _warn_on_draw)


def set_style(context: str = "notebook") -> None:
    """Seaborn whitegrid, colorblind palette, 9-10 pt fonts, column-wide SVG figures."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE, font_scale=0.9)
    plt.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": 150,
            "figure.figsize": (COLUMN_WIDTH, 0.62 * COLUMN_WIDTH),
            "figure.autolayout": False,
            "figure.constrained_layout.use": True,
            "axes.titlesize": "medium",
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "image.cmap": "viridis",
            "font.size": 10,
        }
    )
    for key in (
        "xtick.labelsize",
        "ytick.labelsize",
        "legend.fontsize",
        "legend.title_fontsize",
    ):
        plt.rcParams[key] = max(MIN_FONT_PT, _points(plt.rcParams[key]))
    hooks = list(plt.rcParams.get("figure.hooks", []))
    if f"{__name__}:_watch" not in hooks:
        plt.rcParams["figure.hooks"] = [*hooks, f"{__name__}:_watch"]
    plt.rcParams["svg.hashsalt"] = "convbias"  # the same figure, the same SVG text
    vector_figures()


#: how a notebook shows its figures: SVG (the page's image), not a 110-dpi PNG
FIGURE_FORMATS = ("svg",)


def vector_figures() -> bool:
    """In a Jupyter kernel, show figures as SVG (:data:`FIGURE_FORMATS`); True if it did.

    The book's pages then carry vector figures whose text stays sharp at any zoom; outside
    a kernel (a script, the tests) nothing changes.
    """
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    set_matplotlib_formats(*FIGURE_FORMATS)
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    kwargs = {"bbox_inches": "tight"}
    shell.display_formatter.formatters["image/svg+xml"].for_type(
        Figure, lambda fig: svg_at_dpi(print_figure(fig, "svg", **kwargs))
    )
    return True


def svg_at_dpi(svg: str, dpi: float = DPI) -> str:
    """An SVG figure whose size says px at ``dpi`` px an inch, not points.

    Matplotlib writes ``width="439pt"``, which a browser shows at 96 px an inch (586 px
    for the column's 6.1 in); in px at :data:`DPI` the figure fills the page's column as
    the book's figures always have, its text at the size it was drawn at.
    """
    import re

    def scaled(attr: re.Match) -> str:
        return f'{attr.group(1)}="{float(attr.group(2)) * dpi / 72:.2f}px"'

    def tag(match: re.Match) -> str:
        return re.sub(r'\b(width|height)="([\d.]+)pt"', scaled, match.group(0))

    return re.sub(r"<svg\b[^>]*>", tag, svg, count=1)


def _points(size) -> float:
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=size).get_size_in_points()


def colors(n: int) -> list:
    """``n`` colours of the house palette."""
    return sns.color_palette(PALETTE, n)


def subplots(
    ncols: int = 1,
    nrows: int = 1,
    width: float | None = None,
    height: float = 2.6,
    **kw,
):
    """A grid of axes at most :data:`COLUMN_WIDTH` wide; returns ``(fig, axes)`` with axes squeezed.

    ``width`` is one panel's width in inches (default: the column shared by ``ncols``
    panels), ``height`` one panel's height. More than two panels a row, or a row wider
    than the column, is refused: stack them instead (``nrows``).
    """
    if ncols > MAX_PANELS_PER_ROW:
        raise ValueError(
            f"{ncols} panels a row is too many for the page column: use at most "
            f"{MAX_PANELS_PER_ROW} and stack the rest (nrows)"
        )
    width = COLUMN_WIDTH / ncols if width is None else width
    if width * ncols > COLUMN_WIDTH + 1e-9:
        raise ValueError(
            f"{ncols} panels of {width} in make {width * ncols:.1f} in, wider than the "
            f"page column ({COLUMN_WIDTH} in)"
        )
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw
    )
    return fig, (axes[0, 0] if axes.size == 1 else axes.squeeze())


def plain_log(axis) -> None:
    """Label a log ``axis`` 1, 2, 3, 5, 10, 20, ... in plain numbers (no ``10^k``, no minor labels)."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.LogLocator(subs=(1, 2, 3, 5)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def band(
    ax,
    x: Sequence[float],
    Y: np.ndarray,
    label: str | None = None,
    color=None,
    marker: str = "o",
    **kw,
):
    """Plot the mean of ``Y`` (shape ``(n_seeds, len(x))``) with a min-max band over seeds."""
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    x = np.asarray(x, dtype=float)
    if Y.shape[1] != len(x):
        raise ValueError(f"Y must have shape (n_seeds, {len(x)}), got {Y.shape}")
    (line,) = ax.plot(x, Y.mean(0), marker=marker, label=label, color=color, **kw)
    if len(Y) > 1:
        ax.fill_between(
            x, Y.min(0), Y.max(0), color=line.get_color(), alpha=0.2, linewidth=0
        )
    return line


def heatmap(
    ax,
    values: np.ndarray,
    xticklabels: Sequence,
    yticklabels: Sequence,
    xlabel: str = "",
    ylabel: str = "",
    fmt: str = ".0f",
    cmap: str = "rocket_r",
    cbar_label: str = "",
    **kw,
):
    """Annotated heatmap of a 2-D array with labelled rows (y) and columns (x)."""
    sns.heatmap(
        np.asarray(values, dtype=float),
        ax=ax,
        annot=True,
        fmt=fmt,
        cmap=cmap,
        xticklabels=list(xticklabels),
        yticklabels=list(yticklabels),
        cbar_kws={"label": cbar_label} if cbar_label else None,
        **kw,
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def image_row(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    size: float | None = None,
    cmap: str = "gray",
):
    """Show images side by side in one column-wide row (gray ``(H, W)`` or colour ``(H, W, 3)`` in [0, 1]).

    ``size`` is each image's side in inches (default: the column shared by the images;
    a row wider than the column is refused).
    """
    n = len(images)
    size = COLUMN_WIDTH / n if size is None else size
    if size * n > COLUMN_WIDTH + 1e-9:
        raise ValueError(
            f"{n} images of {size} in make {size * n:.1f} in, wider than the page column "
            f"({COLUMN_WIDTH} in): use a smaller size or two rows"
        )
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(size * n, size + (0.35 if titles is not None else 0)),
        squeeze=False,
    )
    for i, (ax, img) in enumerate(zip(axes[0], images)):
        img = np.asarray(img)
        ax.imshow(
            np.clip(img, 0, 1), cmap=cmap if img.ndim == 2 else None, vmin=0, vmax=1
        )
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i])
    return fig, axes[0]


def spectrum(
    ax,
    matrix,
    label: str | None = None,
    n: int | None = None,
    normalize: bool = True,
    **kw,
):
    """Plot the singular values ``s_1 >= s_2 >= ...`` of a matrix (divided by ``s_1`` when ``normalize``).

    ``n`` keeps the first ``n`` values. A low-rank matrix shows a cliff after its rank.
    """
    import torch

    s = torch.linalg.svdvals(torch.as_tensor(matrix).detach().double().cpu()).numpy()
    if normalize and s[0] > 0:
        s = s / s[0]
    s = s[:n] if n else s
    (line,) = ax.plot(np.arange(1, len(s) + 1), s, marker=".", label=label, **kw)
    ax.set_xlabel("index $i$")
    ax.set_ylabel("$s_i / s_1$" if normalize else "$s_i$")
    return line
