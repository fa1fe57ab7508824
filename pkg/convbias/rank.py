"""Rank measures of weight matrices, batched.

All three ranks take one weight and return one value: a matrix ``(m, n)``, or a
convolution weight ``(out, in, *kernel)``, which is the matrix ``(out, in * prod(kernel))``
(:func:`as_matrix`), so ``stable_rank(conv.weight)`` is the rank of the layer. A batch of
matrices ``(..., m, n)`` is asked for by name, ``batch=True``: one value per matrix,
computed by one batched decomposition (no Python loop over matrices). Singular values
of float32 (or lower precision) matrices come from the eigenvalues of the smaller Gram
matrix formed in float64, ``s_i = sqrt(lambda_i(W W^T))``: a symmetric eigensolver is faster than an SVD, and in
float64 it resolves singular values down to about ``1e-8 s_1``, below the
float32 input's own precision. Float64 and complex matrices use ``torch.linalg.svdvals``
(complex ones in complex128, so the imaginary part counts). Each matrix is divided
by its largest absolute entry first (the ranks are scale-free), so float64 weights
near ``1e-170``, whose squares underflow, get the same ranks as at scale 1. NaN or
infinite entries are an error; an empty matrix (a zero dimension) has all three ranks 0.

- stable rank  srank(W) = ||W||_F^2 / ||W||_2^2 = sum_i s_i^2 / s_1^2
- effective rank (Roy & Vetterli 2007)  erank(W) = exp(H(p)), p_i = s_i / sum_j s_j
- numerical rank  #{i : s_i > rtol * s_1}, or ``relative_to="frobenius"``:
  #{i : s_i > rtol * ||W||_F} (Galanti et al.'s rank, used by :mod:`convbias.lowrank`)

Used by chapter 1 (filters and data), chapter 2 (through :mod:`convbias.lowrank`) and
the appendix on rank measures.
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
        raise ValueError(
            f"a weight matrix needs at least 2 dimensions, got shape {tuple(W.shape)}"
        )
    return W if W.ndim == 2 else W.reshape(W.shape[0], W[0].numel())


def _checked(W: Tensor, batch: bool = False) -> Tensor:
    """``W`` as a tensor of matrices ``(..., m, n)`` with finite entries (else a clear error).

    Without ``batch`` a weight of more than two dimensions is one matrix (:func:`as_matrix`);
    with it the last two dimensions are the matrices and the leading ones the batch.
    """
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(
            f"expected a matrix, a convolution weight or (batch=True) a batch of matrices (..., m, n), "
            f"got shape {tuple(W.shape)}"
        )
    if not batch:
        W = as_matrix(W)
    if W.is_floating_point() or W.is_complex():
        if W.numel() and not bool(torch.isfinite(W).all()):
            raise ValueError(
                f"the matrix of shape {tuple(W.shape)} has NaN or infinite entries: its rank is "
                "undefined (did training diverge?)"
            )
    return W


def _scaled(W: Tensor) -> tuple[Tensor, Tensor]:
    """``(W / c, c)`` with ``c`` the largest absolute entry of each matrix (1 for a zero or empty matrix),
    in float64 (complex128 for complex input)."""
    W = W.to(torch.complex128) if W.is_complex() else W.double()
    if W.shape[-1] == 0 or W.shape[-2] == 0:
        return W, torch.ones(W.shape[:-2], dtype=torch.float64, device=W.device)
    c = W.abs().amax(dim=(-2, -1))
    c = torch.where(c > 0, c, torch.ones_like(c))
    return W / c[..., None, None], c


def _gram(W: Tensor) -> Tensor:
    """The smaller Gram matrix (``W W^H`` or ``W^H W``) in float64 (complex128 for complex input)."""
    W = W.to(torch.complex128) if W.is_complex() else W.double()
    Wh = W.transpose(-1, -2).conj() if W.is_complex() else W.transpose(-1, -2)
    return W @ Wh if W.shape[-2] <= W.shape[-1] else Wh @ W


def singular_values(W: Tensor, batch: bool = False) -> Tensor:
    """Singular values in decreasing order, ``(min(m, n),)`` (``(..., min(m, n))`` with ``batch=True``), in float64.

    A weight of more than two dimensions is one matrix (:func:`as_matrix`) unless
    ``batch=True``. Float64 and complex input: ``torch.linalg.svdvals``; any other dtype:
    square roots of the float64 Gram matrix's eigenvalues (see the module's notes).
    """
    W = _checked(W, batch)
    if min(W.shape[-2:]) == 0:
        return torch.zeros(*W.shape[:-2], 0, dtype=torch.float64, device=W.device)
    exact = W.dtype == torch.float64 or W.is_complex()
    W, c = _scaled(W)
    if exact:
        s = torch.linalg.svdvals(W)
    else:
        s = torch.linalg.eigvalsh(_gram(W)).flip(-1).clamp_min(0).sqrt()
    return s * c[..., None]


def stable_rank(W: Tensor, batch: bool = False) -> Tensor:
    """Stable rank ``||W||_F^2 / ||W||_2^2`` (0 for a zero or empty matrix).

    A weight of more than two dimensions is one matrix (:func:`as_matrix`: a conv weight's
    ``(out, in * kh * kw)``); ``batch=True`` gives one value per matrix of ``(..., m, n)``.
    Computed as ``trace(G) / lambda_max(G)`` from the smaller Gram matrix ``G``
    (``W W^T`` or ``W^T W``) in float64: the same value as from the singular
    values, several times cheaper than an SVD, so it can be tracked along training.
    """
    W = _checked(W, batch)
    if min(W.shape[-2:]) == 0:
        return torch.zeros(W.shape[:-2], dtype=torch.float64, device=W.device)
    return stable_rank_from_gram(_gram(_scaled(W)[0]))


def stable_rank_from_gram(G: Tensor) -> Tensor:
    """Stable rank ``trace(G) / lambda_max(G)`` of ``W`` given its Gram matrix ``G = W^T W`` (or ``W W^T``).

    For a ``W`` too large to hold, accumulate ``G`` over row blocks and call this.
    """
    G = torch.as_tensor(G)
    if G.shape[-1] == 0:
        return torch.zeros(G.shape[:-2], dtype=torch.float64, device=G.device)
    top = torch.linalg.eigvalsh(G)[..., -1]
    fro2 = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1).real
    return torch.where(
        top > 0,
        fro2 / top.clamp_min(torch.finfo(top.dtype).tiny),
        torch.zeros_like(fro2),
    )


def effective_rank(W: Tensor, batch: bool = False) -> Tensor:
    """Effective rank of Roy & Vetterli: ``exp(-sum p_i log p_i)`` with ``p = s / ||s||_1``.

    ``batch`` as in :func:`stable_rank`.
    """
    return effective_rank_from_singular_values(singular_values(W, batch))


def numerical_rank(
    W: Tensor, rtol: float = 1e-3, relative_to: str = "largest", batch: bool = False
) -> Tensor:
    """Number of singular values above ``rtol`` times a reference (relative tolerance).

    The reference is the largest singular value ``s_1`` (``relative_to="largest"``) or
    the Frobenius norm ``||W||_F = sqrt(sum_i s_i^2)`` (``"frobenius"``, Galanti et
    al.'s ``rank_eps``); a zero matrix has rank 0 either way. ``batch`` as in
    :func:`stable_rank`.
    """
    _check_rtol(rtol)
    return numerical_rank_from_singular_values(
        singular_values(W, batch), rtol, relative_to
    )


def ranks(W: Tensor, rtol: float = 1e-3, batch: bool = False) -> dict[str, Tensor]:
    """Stable, effective and numerical rank from ONE decomposition.

    Returns ``{"stable": ..., "effective": ..., "numerical": ...}``, each a scalar (shaped
    like the batch with ``batch=True``); the same values as the three functions called
    one by one.
    """
    _check_rtol(rtol)
    s = singular_values(W, batch)
    return {
        "stable": stable_rank_from_singular_values(s),
        "effective": effective_rank_from_singular_values(s),
        "numerical": numerical_rank_from_singular_values(s, rtol),
    }


def stable_rank_from_singular_values(s: Tensor) -> Tensor:
    """``sum_i s_i^2 / s_1^2`` for decreasing singular values ``s`` (0 when all are 0 or there are none)."""
    if s.shape[-1] == 0:
        return torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)
    s = s / torch.where(
        s[..., :1] > 0, s[..., :1], torch.ones_like(s[..., :1])
    )  # scale-free: no underflow
    top2 = s[..., 0].square()
    return torch.where(
        top2 > 0,
        s.square().sum(-1) / top2.clamp_min(torch.finfo(s.dtype).tiny),
        torch.zeros_like(top2),
    )


def effective_rank_from_singular_values(s: Tensor) -> Tensor:
    """``exp(-sum p_i log p_i)``, ``p = s / ||s||_1`` (0 when all are 0)."""
    total = s.sum(-1, keepdim=True)
    p = s / total.clamp_min(torch.finfo(s.dtype).tiny)
    entropy = -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)
    return torch.where(
        total.squeeze(-1) > 0, torch.exp(entropy), torch.zeros_like(entropy)
    )


def numerical_rank_from_singular_values(
    s: Tensor, rtol: float = 1e-3, relative_to: str = "largest"
) -> Tensor:
    """``#{i : s_i > rtol * ref}`` for decreasing singular values ``s``, ``ref`` = ``s_1`` or ``||s||_2``.

    See :func:`numerical_rank` for ``relative_to``.
    """
    if relative_to == "largest":
        ref = s[..., :1]
    elif relative_to == "frobenius":
        ref = s.square().sum(-1, keepdim=True).sqrt()
    else:
        raise ValueError(
            f"relative_to must be 'largest' or 'frobenius', got {relative_to!r}"
        )
    return ((s > rtol * ref) & (s > 0)).sum(-1)


def _check_rtol(rtol: float) -> None:
    if not 0 <= rtol < 1:
        raise ValueError(f"rtol must lie in [0, 1), got {rtol}")
