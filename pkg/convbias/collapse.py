"""Neural-collapse metrics of last-layer features (Papyan, Han & Donoho 2020).

For features ``h_i`` of ``N`` examples in ``C`` classes with class means
``mu_c`` and global mean ``mu_G``:

$$ S_W = \\frac1N \\sum_i (h_i - \\mu_{y_i})(h_i - \\mu_{y_i})^\\top, \\quad
   S_B = \\frac1C \\sum_c (\\mu_c - \\mu_G)(\\mu_c - \\mu_G)^\\top, \\quad
   \\mathrm{NC1} = \\tfrac1C \\operatorname{tr}(S_W S_B^+). $$

NC1 -> 0 means the features collapse onto their class means. The centred,
normalised means ``M`` form a simplex equiangular tight frame (ETF) when their
Gram matrix is ``C/(C-1) (I - 11^T / C)``; :func:`etf_distance` measures the gap.
Every function accepts a leading batch (ensemble) dimension. Used by chapter 2.
"""

from __future__ import annotations

from typing import Callable

import torch

Tensor = torch.Tensor


def _check(features: Tensor, labels: Tensor, n_classes: int | None) -> int:
    if features.ndim < 2:
        raise ValueError(
            f"features must be (..., N, p), got shape {tuple(features.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != features.shape[-2]:
        raise ValueError(
            f"labels must be (N,) with N={features.shape[-2]}, got shape {tuple(labels.shape)}"
        )
    C = int(labels.max()) + 1 if n_classes is None else n_classes
    counts = torch.bincount(labels, minlength=C)
    if (counts == 0).any():
        raise ValueError(
            f"every class needs at least one example; counts per class: {counts.tolist()}"
        )
    return C


def class_means(
    features: Tensor, labels: Tensor, n_classes: int | None = None
) -> Tensor:
    """Class means ``(..., C, p)`` of features ``(..., N, p)``."""
    C = _check(features, labels, n_classes)
    onehot = torch.nn.functional.one_hot(labels, C).to(features.dtype)  # (N, C)
    return (onehot.T @ features) / onehot.sum(0)[:, None]


def nc1(features: Tensor, labels: Tensor, n_classes: int | None = None) -> Tensor:
    """``tr(S_W S_B^+) / C`` (within-class variability relative to between-class spread)."""
    C = _check(features, labels, n_classes)
    h = features.double()
    means = class_means(h, labels, C)
    centred_means = means - means.mean(-2, keepdim=True)
    S_B = centred_means.transpose(-1, -2) @ centred_means / C
    within = h - means[..., labels, :]
    S_W = within.transpose(-1, -2) @ within / h.shape[-2]
    return (
        torch.diagonal(
            S_W @ torch.linalg.pinv(S_B, hermitian=True), dim1=-2, dim2=-1
        ).sum(-1)
        / C
    ).float()


def simplex_etf_gram(n_classes: int) -> Tensor:
    """Gram matrix ``C/(C-1) (I - 11^T/C)`` of a simplex ETF with unit vectors."""
    if n_classes < 2:
        raise ValueError(f"a simplex needs at least 2 classes, got {n_classes}")
    C = n_classes
    return (torch.eye(C) - torch.ones(C, C) / C) * C / (C - 1)


def etf_distance(means: Tensor) -> Tensor:
    """``|| G / ||G||_F - G_ETF / ||G_ETF||_F ||_F`` for the Gram ``G`` of the centred,
    normalised class means ``(..., C, p)``: 0 for a simplex ETF."""
    M = means.double() - means.double().mean(-2, keepdim=True)
    M = M / M.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    G = M @ M.transpose(-1, -2)
    target = simplex_etf_gram(means.shape[-2]).to(G)
    G = G / torch.linalg.matrix_norm(G, keepdim=True).clamp_min(1e-12)
    return torch.linalg.matrix_norm(
        G - target / torch.linalg.matrix_norm(target)
    ).float()


def equinorm_cv(means: Tensor) -> Tensor:
    """Coefficient of variation of the centred class-mean norms (0 when all are equal)."""
    M = means.double() - means.double().mean(-2, keepdim=True)
    norms = M.norm(dim=-1)
    return (norms.std(-1) / norms.mean(-1)).float()


def collapse_metrics(
    model: torch.nn.Module, X: Tensor, y: Tensor, n_classes: int | None = None
) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """A ``metrics`` function for :func:`convbias.train.fit_ensemble`: NC1, ETF distance and
    equinorm CV of the features ``model(X, return_features=True)`` of every member.

    ``model`` is any instance of the ensemble's architecture whose ``forward``
    accepts ``return_features=True`` (its own weights are not used).
    """
    from torch.func import functional_call, vmap

    buffers = dict(model.named_buffers())

    def metrics(params: dict[str, Tensor]) -> dict[str, Tensor]:
        was_training = model.training
        model.eval()
        feats = vmap(
            lambda p: functional_call(
                model,
                (p, buffers),
                (X.to(p[next(iter(p))].device),),
                {"return_features": True},
            )
        )(params)
        model.train(was_training)
        means = class_means(feats, y.to(feats.device), n_classes)
        return {
            "nc1": nc1(feats, y.to(feats.device), n_classes),
            "etf_distance": etf_distance(means),
            "equinorm_cv": equinorm_cv(means),
        }

    return metrics


def collapse_checks(nc1_start, nc1_end, etf_start, etf_end, decayed) -> list:
    """Neural collapse with and without weight decay, as :class:`convbias.checks.Check` objects.

    Arrays have one entry per run; ``decayed`` marks the runs with weight decay, and
    run ``i`` of the weight-decay arm is paired with run ``i`` of the other arm
    (same seed).

    - ``nc1_drop_wd``: with weight decay NC1 falls at least 10x (lowest run);
    - ``etf_distance_drop_wd``: the class means' distance to a simplex ETF falls at least 1.5x;
    - ``nc1_further_without_wd``: without weight decay NC1 falls at least 1.2x *further* than
      with it, seed by seed (what this build measures; Poggio et al. give weight decay the
      role of driving collapse).
    """
    import numpy as np

    from .checks import at_least

    n0, n1, e0, e1 = (
        np.asarray(v, dtype=float) for v in (nc1_start, nc1_end, etf_start, etf_end)
    )
    wd = np.asarray(decayed, dtype=bool)
    if wd.sum() != (~wd).sum() or not wd.any():
        raise ValueError(
            "need as many runs with weight decay as without, and at least one of each"
        )
    drop = n0 / n1
    return [
        at_least(
            "nc1_drop_wd",
            drop[wd].min(),
            10.0,
            "with weight decay NC1 falls at least 10x",
            scale="ratio",
        ),
        at_least(
            "etf_distance_drop_wd",
            (e0 / e1)[wd].min(),
            1.5,
            "with weight decay the class means move toward a simplex (distance / 1.5)",
            scale="ratio",
        ),
        at_least(
            "nc1_further_without_wd",
            (drop[~wd] / drop[wd]).min(),
            1.2,
            "without weight decay NC1 falls further (same seed, at least 1.2x)",
            scale="ratio",
        ),
    ]
