"""Rank measures of weight matrices, batched.

All three ranks take a matrix ``(m, n)`` or a batch ``(..., m, n)`` and return
one value per matrix, computed from a single batched call to
``torch.linalg.svdvals`` (no Python loop over matrices). Convolution weights
``(out, in, kh, kw)`` are first reshaped with :func:`as_matrix`.

- stable rank  srank(W) = ||W||_F^2 / ||W||_2^2 = sum_i s_i^2 / s_1^2
- effective rank (Roy & Vetterli 2007)  erank(W) = exp(H(p)), p_i = s_i / sum_j s_j
- numerical rank  #{i : s_i > rtol * s_1}
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def as_matrix(W: Tensor) -> Tensor:
    """Reshape a weight to a matrix: ``(out, in, *kernel)`` -> ``(out, in * prod(kernel))``.

    Matrices are returned unchanged; a vector or scalar is an error.
    """
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(f"a weight matrix needs at least 2 dimensions, got shape {tuple(W.shape)}")
    return W if W.ndim == 2 else W.reshape(W.shape[0], -1)


def _singular_values(W: Tensor) -> Tensor:
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(f"expected a matrix or a batch of matrices (..., m, n), got shape {tuple(W.shape)}")
    if not W.is_floating_point():
        W = W.double()
    return torch.linalg.svdvals(W)


def _largest(s: Tensor) -> Tensor:
    return s[..., :1]


def stable_rank(W: Tensor) -> Tensor:
    """Stable rank ``||W||_F^2 / ||W||_2^2`` per matrix (0 for a zero matrix).

    Computed as ``trace(G) / lambda_max(G)`` from the smaller Gram matrix ``G``
    (``W W^T`` or ``W^T W``) in float64: the same value as from the singular
    values, several times cheaper than an SVD, so it can be tracked along training.
    """
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(f"expected a matrix or a batch of matrices (..., m, n), got shape {tuple(W.shape)}")
    W = W.double()
    G = W @ W.transpose(-1, -2) if W.shape[-2] <= W.shape[-1] else W.transpose(-1, -2) @ W
    return stable_rank_from_gram(G)


def stable_rank_from_gram(G: Tensor) -> Tensor:
    """Stable rank ``trace(G) / lambda_max(G)`` of ``W`` given its Gram matrix ``G = W^T W`` (or ``W W^T``).

    For a ``W`` too large to hold, accumulate ``G`` over row blocks and call this.
    """
    top = torch.linalg.eigvalsh(G)[..., -1]
    fro2 = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1)
    return torch.where(top > 0, fro2 / top.clamp_min(torch.finfo(G.dtype).tiny), torch.zeros_like(fro2))


def effective_rank(W: Tensor) -> Tensor:
    """Effective rank of Roy & Vetterli: ``exp(-sum p_i log p_i)`` with ``p = s / ||s||_1``."""
    s = _singular_values(W)
    total = s.sum(-1, keepdim=True)
    p = s / total.clamp_min(torch.finfo(s.dtype).tiny)
    entropy = -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(entropy), torch.zeros_like(entropy))


def numerical_rank(W: Tensor, rtol: float = 1e-3) -> Tensor:
    """Number of singular values above ``rtol`` times the largest (relative tolerance)."""
    if not 0 <= rtol < 1:
        raise ValueError(f"rtol must lie in [0, 1), got {rtol}")
    s = _singular_values(W)
    top = _largest(s)
    return ((s > rtol * top) & (s > 0)).sum(-1)
