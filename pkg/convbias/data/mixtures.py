"""Synthetic classification data: a Gaussian mixture and linearly separable points.

- :func:`gaussian_mixture`: ``C`` classes in ``R^d``, class means
  ``mu_c ~ N(0, (separation^2 / d) I)`` and ``x = mu_y + noise * z``, ``z ~ N(0, I)``.
- :func:`separable`: two classes ``y = sign(<w*, x>)`` in ``{-1, +1}`` with a
  margin ``|<w*, x>| >= margin`` (``w*`` a random unit vector).
Both return a :class:`~convbias.data.real.Split` (train and test drawn from
the same distribution) and repeat exactly for the same ``seed``. Used by chapter 2.
"""

from __future__ import annotations

import torch

from .real import Split


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_mixture(
    n_train: int = 512,
    n_test: int = 512,
    d: int = 64,
    n_classes: int = 10,
    *,
    separation: float = 3.0,
    noise: float = 1.0,
    seed: int = 0,
) -> Split:
    """Balanced ``n_classes``-class Gaussian mixture in ``R^d`` (features ``(N, d)``, labels ``(N,)``)."""
    if min(n_train, n_test, d) < 1 or n_classes < 2:
        raise ValueError(
            f"need n_train, n_test, d >= 1 and n_classes >= 2, got {n_train}, {n_test}, {d}, {n_classes}"
        )
    if separation <= 0 or noise < 0:
        raise ValueError(
            f"separation must be > 0 and noise >= 0, got {separation}, {noise}"
        )
    g = _generator(seed)
    means = torch.randn(n_classes, d, generator=g) * separation / d**0.5

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % n_classes
        y = y[torch.randperm(n, generator=g)]
        return means[y] + noise * torch.randn(n, d, generator=g), y

    X_train, y_train = draw(n_train)
    X_test, y_test = draw(n_test)
    return Split(
        X_train, y_train, X_test, y_test, f"gaussian-mixture(d={d}, C={n_classes})"
    )


def separable(
    n_train: int = 100,
    n_test: int = 500,
    d: int = 20,
    *,
    margin: float = 0.5,
    negative_margin: float | None = None,
    seed: int = 0,
) -> Split:
    """Linearly separable two-class data: ``x ~ N(0, I_d)`` pushed to ``<w*, x> >= margin`` for the
    positive class and ``<w*, x> <= -negative_margin`` (default: ``margin``) for the negative one;
    labels ``y = sign(<w*, x>)`` as floats in ``{-1, +1}`` (for the logistic loss)."""
    negative_margin = margin if negative_margin is None else negative_margin
    if min(n_train, n_test, d) < 1 or margin < 0 or negative_margin < 0:
        raise ValueError(
            f"need n_train, n_test, d >= 1 and margins >= 0, got {n_train}, {n_test}, {d}, "
            f"{margin}, {negative_margin}"
        )
    g = _generator(seed)
    w_star = torch.randn(d, generator=g)
    w_star = w_star / w_star.norm()

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randn(n, d, generator=g)
        proj = X @ w_star
        y = torch.where(proj >= 0, 1.0, -1.0)
        push = torch.where(y > 0, margin, negative_margin)
        X = (
            X + (y * push)[:, None] * w_star
        )  # every point at least its class's margin from the hyperplane
        return X, y

    X_train, y_train = draw(n_train)
    X_test, y_test = draw(n_test)
    return Split(X_train, y_train, X_test, y_test, f"separable(d={d}, margin={margin})")
