"""Rank summaries of a network's weights, for one model or a stacked ensemble.

Galanti et al. measure the rank of a weight ``W`` (conv weights reshaped to
``(out, in * k * k)``) as the numerical rank of ``W / ||W||_F`` with an
*absolute* tolerance ``eps = 1e-3``:

$$ \\operatorname{rank}_\\epsilon(W) = \\#\\{ i : \\sigma_i(W) > \\epsilon \\, \\|W\\|_F \\}, $$

averaged over the hidden layers (the classifier is left out). This module
computes it, the stable rank and the alignment of consecutive layers, batched
over a leading ensemble dimension (one SVD call per layer).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from .rank import _checked, singular_values, stable_rank_from_singular_values

Tensor = torch.Tensor


def hidden_weight_names(model: torch.nn.Module) -> list[str]:
    """Names of the weights whose rank is reported: every parameter with at least
    2 dimensions except the classifier (the last such parameter), in order."""
    names = [n for n, p in model.named_parameters() if p.ndim >= 2]
    if len(names) < 2:
        raise ValueError("the model needs a hidden weight besides the classifier; name the layers explicitly")
    return names[:-1]


def _as_matrices(W: Tensor, stacked: bool) -> Tensor:
    """``(out, in, *k)`` -> ``(out, in*k)``; with ``stacked`` the leading dimension is kept."""
    lead = 2 if stacked else 1
    if W.ndim < lead + 1:
        raise ValueError(f"expected a weight with at least {lead + 1} dimensions, got shape {tuple(W.shape)}")
    return W.reshape(*W.shape[:lead], -1)


def frobenius_rank(W: Tensor, tol: float = 1e-3) -> Tensor:
    """``#{i : s_i(W) > tol * ||W||_F}`` for a matrix or a batch ``(..., m, n)`` (Galanti et al.'s rank)."""
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    return _frobenius_rank_from_singular_values(singular_values(W), tol)


def _frobenius_rank_from_singular_values(s: Tensor, tol: float) -> Tensor:
    fro = s.square().sum(-1, keepdim=True).sqrt()
    return ((s > tol * fro) & (fro > 0)).sum(-1)


def layer_ranks(params: Mapping[str, Tensor], names: Sequence[str], *, tol: float = 1e-3,
                stacked: bool = True) -> dict[str, Tensor]:
    """Rank and stable rank of each named weight, and their means over the layers.

    Returns ``{"rank": (E,), "srank": (E,), "rank/<name>": (E,), "srank/<name>": (E,)}``
    (scalars when ``stacked=False``), all float tensors.
    """
    if not names:
        raise ValueError("names must list at least one weight")
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    out: dict[str, Tensor] = {}
    for name in names:  # one decomposition per weight serves both ranks
        s = singular_values(_as_matrices(params[name].detach(), stacked))
        out[f"rank/{name}"] = _frobenius_rank_from_singular_values(s, tol).float()
        out[f"srank/{name}"] = stable_rank_from_singular_values(s).float()
    out["rank"] = torch.stack([out[f"rank/{n}"] for n in names]).mean(0)
    out["srank"] = torch.stack([out[f"srank/{n}"] for n in names]).mean(0)
    return out


def rank_metrics(names: Sequence[str], tol: float = 1e-3) -> Callable[[Mapping[str, Tensor]], dict[str, Tensor]]:
    """A ``metrics`` function for :func:`convbias.train.fit_ensemble` recording :func:`layer_ranks`."""
    names = list(names)
    return lambda params: layer_ranks(params, names, tol=tol, stacked=True)


def spectra(params: Mapping[str, Tensor], names: Sequence[str], member: int | None = None) -> dict[str, Tensor]:
    """Singular values of each named weight divided by the largest (of member ``member`` when stacked)."""
    out = {}
    for name in names:
        W = params[name].detach()
        W = _as_matrices(W[member], False) if member is not None else _as_matrices(W, False)
        s = singular_values(W)
        out[name] = (s / s[0]).float()
    return out


def top_alignment(W_lower: Tensor, W_upper: Tensor) -> Tensor:
    """``|<u_1(W_l), v_1(W_{l+1})>|``: how well the top left singular vector of a layer
    matches the top right singular vector of the next one (1 = aligned). Batched over
    leading dimensions."""
    if W_lower.shape[-2] != W_upper.shape[-1]:
        raise ValueError(f"consecutive layers must chain: {tuple(W_lower.shape)} then {tuple(W_upper.shape)}")
    wide = lambda W: W.to(torch.complex128) if W.is_complex() else W.double()
    U, _, _ = torch.linalg.svd(wide(_checked(W_lower)), full_matrices=False)
    _, _, Vh = torch.linalg.svd(wide(_checked(W_upper)), full_matrices=False)
    return (U[..., :, 0].conj() * Vh[..., 0, :].conj()).sum(-1).abs().float()
