"""Small digit images placed on a larger blank canvas (the chapter-5 data).

A digit of size ``s x s`` is pasted at a random position of a ``canvas x
canvas`` black image: the label does not depend on where, which is the
translation structure a CNN's weight sharing is built for and an FCN must learn
from examples. Used by chapter 5.
"""

from __future__ import annotations

import torch

from .real import Split, load_digits, load_mnist

Tensor = torch.Tensor
SOURCES = ("digits", "mnist")


def place_on_canvas(
    X: Tensor, canvas: int, random_position: bool = True, seed: int = 0
) -> Tensor:
    """Paste images ``X`` of shape ``(N, C, h, w)`` onto ``(N, C, canvas, canvas)`` zeros.

    Each image goes to a uniformly random top-left corner (seeded) or to the
    centre when ``random_position`` is False.
    """
    if X.ndim != 4:
        raise ValueError(f"X must have shape (N, C, h, w), got {tuple(X.shape)}")
    N, C, h, w = X.shape
    if canvas < max(h, w):
        raise ValueError(
            f"canvas={canvas} is smaller than the images ({h}x{w}): use canvas >= {max(h, w)}"
        )
    out = X.new_zeros(N, C, canvas, canvas)
    if random_position:
        gen = torch.Generator().manual_seed(seed)
        top = torch.randint(0, canvas - h + 1, (N,), generator=gen)
        left = torch.randint(0, canvas - w + 1, (N,), generator=gen)
    else:
        top = torch.full((N,), (canvas - h) // 2)
        left = torch.full((N,), (canvas - w) // 2)
    rows = (top[:, None] + torch.arange(h))[:, None, :, None].expand(N, C, h, w)
    cols = (left[:, None] + torch.arange(w))[:, None, None, :].expand(N, C, h, w)
    n_idx = torch.arange(N)[:, None, None, None].expand(N, C, h, w)
    c_idx = torch.arange(C)[None, :, None, None].expand(N, C, h, w)
    out[n_idx, c_idx, rows, cols] = X
    return out


def load_canvas(
    source: str = "digits",
    canvas: int = 16,
    n_train: int = 500,
    n_test: int = 350,
    random_position: bool = True,
    seed: int = 0,
) -> Split:
    """Digits (8x8, ``source="digits"``) or offline MNIST (28x28, ``"mnist"``) on a ``canvas``-sized image.

    Takes the first ``n_train``/``n_test`` examples of the loader's seeded split
    and places each on the canvas (train and test with different position seeds).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    split = (
        load_digits(seed=seed)
        if source == "digits"
        else load_mnist("offline", seed=seed)
    )
    if n_train > len(split.X_train) or n_test > len(split.X_test):
        raise ValueError(
            f"{source} has {len(split.X_train)} train / {len(split.X_test)} test examples; "
            f"asked for {n_train} / {n_test}"
        )
    X_tr = place_on_canvas(
        split.X_train[:n_train], canvas, random_position, seed=2 * seed
    )
    X_te = place_on_canvas(
        split.X_test[:n_test], canvas, random_position, seed=2 * seed + 1
    )
    return Split(
        X_tr,
        split.y_train[:n_train],
        X_te,
        split.y_test[:n_test],
        f"{split.source}-on-{canvas}x{canvas}",
    )


def standardize(split: Split) -> Split:
    """Per-channel input normalization with the training set's mean and standard deviation (as in the paper)."""
    dims = (0, 2, 3) if split.X_train.ndim == 4 else (0, 2)
    mean = split.X_train.mean(dims, keepdim=True)
    std = split.X_train.std(dims, keepdim=True).clamp_min(1e-8)
    return Split(
        (split.X_train - mean) / std,
        split.y_train,
        (split.X_test - mean) / std,
        split.y_test,
        split.source,
    )
