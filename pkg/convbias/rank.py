"""Rank measures of weight matrices, batched.

All three ranks take a matrix ``(m, n)`` or a batch ``(..., m, n)`` and return
one value per matrix, computed by one batched decomposition (no Python loop over
matrices). Convolution weights ``(out, in, kh, kw)`` are first reshaped with
:func:`as_matrix`. Singular values of float32 (or lower precision) matrices come
from the eigenvalues of the smaller Gram matrix formed in float64, ``s_i =
sqrt(lambda_i(W W^T))``: a symmetric eigensolver is faster than an SVD, and in
float64 it resolves singular values down to about ``1e-8 s_1``, below the
float32 input's own precision. Float64 matrices use ``torch.linalg.svdvals``.

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


def _gram(W: Tensor) -> Tensor:
    """The smaller Gram matrix (``W W^T`` or ``W^T W``) in float64."""
    W = W.double()
    return W @ W.transpose(-1, -2) if W.shape[-2] <= W.shape[-1] else W.transpose(-1, -2) @ W


def singular_values(W: Tensor) -> Tensor:
    """Singular values in decreasing order, ``(..., min(m, n))``, in float64.

    Float64 input: ``torch.linalg.svdvals``; any other dtype: square roots of the
    float64 Gram matrix's eigenvalues (see the module's notes).
    """
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(f"expected a matrix or a batch of matrices (..., m, n), got shape {tuple(W.shape)}")
    if W.dtype == torch.float64:
        return torch.linalg.svdvals(W)
    return torch.linalg.eigvalsh(_gram(W)).flip(-1).clamp_min(0).sqrt()


def stable_rank(W: Tensor) -> Tensor:
    """Stable rank ``||W||_F^2 / ||W||_2^2`` per matrix (0 for a zero matrix).

    Computed as ``trace(G) / lambda_max(G)`` from the smaller Gram matrix ``G``
    (``W W^T`` or ``W^T W``) in float64: the same value as from the singular
    values, several times cheaper than an SVD, so it can be tracked along training.
    """
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(f"expected a matrix or a batch of matrices (..., m, n), got shape {tuple(W.shape)}")
    return stable_rank_from_gram(_gram(W))


def stable_rank_from_gram(G: Tensor) -> Tensor:
    """Stable rank ``trace(G) / lambda_max(G)`` of ``W`` given its Gram matrix ``G = W^T W`` (or ``W W^T``).

    For a ``W`` too large to hold, accumulate ``G`` over row blocks and call this.
    """
    top = torch.linalg.eigvalsh(G)[..., -1]
    fro2 = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1)
    return torch.where(top > 0, fro2 / top.clamp_min(torch.finfo(G.dtype).tiny), torch.zeros_like(fro2))


def effective_rank(W: Tensor) -> Tensor:
    """Effective rank of Roy & Vetterli: ``exp(-sum p_i log p_i)`` with ``p = s / ||s||_1``."""
    return effective_rank_from_singular_values(singular_values(W))


def numerical_rank(W: Tensor, rtol: float = 1e-3) -> Tensor:
    """Number of singular values above ``rtol`` times the largest (relative tolerance)."""
    _check_rtol(rtol)
    return numerical_rank_from_singular_values(singular_values(W), rtol)


def ranks(W: Tensor, rtol: float = 1e-3) -> dict[str, Tensor]:
    """Stable, effective and numerical rank of each matrix from ONE decomposition.

    Returns ``{"stable": ..., "effective": ..., "numerical": ...}``, each shaped like
    the batch; the same values as the three functions called one by one.
    """
    _check_rtol(rtol)
    s = singular_values(W)
    return {"stable": stable_rank_from_singular_values(s), "effective": effective_rank_from_singular_values(s),
            "numerical": numerical_rank_from_singular_values(s, rtol)}


def stable_rank_from_singular_values(s: Tensor) -> Tensor:
    """``sum_i s_i^2 / s_1^2`` for decreasing singular values ``s`` (0 when all are 0)."""
    top2 = s[..., 0].square()
    return torch.where(top2 > 0, s.square().sum(-1) / top2.clamp_min(torch.finfo(s.dtype).tiny),
                       torch.zeros_like(top2))


def effective_rank_from_singular_values(s: Tensor) -> Tensor:
    """``exp(-sum p_i log p_i)``, ``p = s / ||s||_1`` (0 when all are 0)."""
    total = s.sum(-1, keepdim=True)
    p = s / total.clamp_min(torch.finfo(s.dtype).tiny)
    entropy = -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(entropy), torch.zeros_like(entropy))


def numerical_rank_from_singular_values(s: Tensor, rtol: float = 1e-3) -> Tensor:
    """``#{i : s_i > rtol * s_1}`` for decreasing singular values ``s``."""
    return ((s > rtol * s[..., :1]) & (s > 0)).sum(-1)


def _check_rtol(rtol: float) -> None:
    if not 0 <= rtol < 1:
        raise ValueError(f"rtol must lie in [0, 1), got {rtol}")
