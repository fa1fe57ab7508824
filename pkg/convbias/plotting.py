"""The book's house style and figure helpers shared by the chapters.

Call :func:`set_style` once at the top of a chapter; then :func:`subplots`,
:func:`band` (mean and spread over seeds), :func:`heatmap` and
:func:`image_row` give every chapter the same look.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

PALETTE = "colorblind"


def set_style(context: str = "notebook") -> None:
    """Seaborn whitegrid, colorblind palette, compact fonts, 110 dpi figures."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE, font_scale=0.9)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "figure.autolayout": False,
            "figure.constrained_layout.use": True,
            "axes.titlesize": "medium",
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )


def colors(n: int) -> list:
    """``n`` colours of the house palette."""
    return sns.color_palette(PALETTE, n)


def subplots(ncols: int = 1, nrows: int = 1, width: float = 4.0, height: float = 3.2, **kw):
    """A grid of axes, each ``width x height`` inches; returns ``(fig, axes)`` with axes squeezed."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    return fig, (axes[0, 0] if axes.size == 1 else axes.squeeze())


def band(ax, x: Sequence[float], Y: np.ndarray, label: str | None = None, color=None, marker: str = "o", **kw):
    """Plot the mean of ``Y`` (shape ``(n_seeds, len(x))``) with a min-max band over seeds."""
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    x = np.asarray(x, dtype=float)
    if Y.shape[1] != len(x):
        raise ValueError(f"Y must have shape (n_seeds, {len(x)}), got {Y.shape}")
    (line,) = ax.plot(x, Y.mean(0), marker=marker, label=label, color=color, **kw)
    if len(Y) > 1:
        ax.fill_between(x, Y.min(0), Y.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def heatmap(ax, values: np.ndarray, xticklabels: Sequence, yticklabels: Sequence, xlabel: str = "",
            ylabel: str = "", fmt: str = ".0f", cmap: str = "rocket_r", cbar_label: str = "", **kw):
    """Annotated heatmap of a 2-D array with labelled rows (y) and columns (x)."""
    sns.heatmap(np.asarray(values, dtype=float), ax=ax, annot=True, fmt=fmt, cmap=cmap,
                xticklabels=list(xticklabels), yticklabels=list(yticklabels),
                cbar_kws={"label": cbar_label} if cbar_label else None, **kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def image_row(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, size: float = 2.6, cmap: str = "gray"):
    """Show images side by side (gray ``(H, W)`` or colour ``(H, W, 3)`` arrays in [0, 1])."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size), squeeze=False)
    for i, (ax, img) in enumerate(zip(axes[0], images)):
        img = np.asarray(img)
        ax.imshow(np.clip(img, 0, 1), cmap=cmap if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i])
    return fig, axes[0]


def spectrum(ax, matrix, label: str | None = None, n: int | None = None, normalize: bool = True, **kw):
    """Plot the singular values ``s_1 >= s_2 >= ...`` of a matrix (divided by ``s_1`` when ``normalize``).

    ``n`` keeps the first ``n`` values. A low-rank matrix shows a cliff after its rank.
    """
    import torch

    s = torch.linalg.svdvals(torch.as_tensor(matrix).detach().double().cpu()).numpy()
    if normalize and s[0] > 0:
        s = s / s[0]
    s = s[:n] if n else s
    (line,) = ax.plot(np.arange(1, len(s) + 1), s, marker=".", label=label, **kw)
    ax.set_xlabel("index i")
    ax.set_ylabel("s_i / s_1" if normalize else "s_i")
    return line
