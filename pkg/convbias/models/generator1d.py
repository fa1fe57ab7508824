"""The two-layer convolutional generator of the theory (Heckel & Soltanolkotabi 2020, Sec. 4).

A signal of length ``n`` is generated as

.. math:: G(C) = \\mathrm{relu}(U C)\\, v, \\qquad C \\in \\mathbb{R}^{n \\times k},

where ``U`` is the ``n x n`` circulant matrix of a fixed (smooth) filter ``u``
(circular convolution), ``C`` holds the ``k`` trainable channels and
``v = (1, -1, 1, ...)/sqrt(k)`` is fixed. The Jacobian with respect to
``vec(C) = (c_1; ...; c_k)`` is

.. math:: J(C) = [\\, v_1 \\mathrm{diag}(\\sigma'(U c_1)) U, \\; \\dots, \\; v_k \\mathrm{diag}(\\sigma'(U c_k)) U \\,],

and at a Gaussian initialization ``E[J J^T] = \\Sigma = (U U^T) \\circ (1/2 - \\theta/(2\\pi))``
with ``\\theta_{ij}`` the angle between rows ``i`` and ``j`` of ``U``. ``\\Sigma`` is circulant,
so its eigenvectors are the Fourier modes; for a smooth filter its eigenvalues
decay with frequency. Gradient descent therefore fits the low frequencies (the
image) first and the high frequencies (most of the noise) last.
:func:`singular_modes` gives the Jacobian's singular values and leading left
singular vectors. Used by chapter 4.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

Tensor = torch.Tensor


def circulant(u: Tensor) -> Tensor:
    """The circulant matrix ``U[i, j] = u[(i - j) mod n]`` (so ``U @ c`` is the circular convolution ``u * c``)."""
    n = u.shape[-1]
    idx = (torch.arange(n)[:, None] - torch.arange(n)[None, :]) % n
    return u[idx]


def gaussian_filter(n: int, width: float = 2.0) -> Tensor:
    """A centred-at-0 circular Gaussian filter of standard deviation ``width`` samples, unit 2-norm."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    i = torch.arange(n, dtype=torch.float64)
    dist = torch.minimum(i, n - i)
    u = torch.exp(-0.5 * (dist / width) ** 2)
    return (u / u.norm()).float()


class ConvGenerator1D(nn.Module):
    """``G(C) = relu(U C) v`` with a fixed circulant ``U`` and fixed signs ``v``; ``C`` is trained.

    ``forward()`` returns the length-``n`` signal. ``C`` is initialized i.i.d.
    ``N(0, omega^2)`` from ``seed``.
    """

    def __init__(
        self,
        n: int = 128,
        k: int = 256,
        width: float = 2.0,
        omega: float = 1.0,
        seed: int = 0,
        filter: Tensor | None = None,
    ):
        super().__init__()
        if n < 2 or k < 1:
            raise ValueError(f"need n >= 2 and k >= 1, got n={n}, k={k}")
        u = (
            gaussian_filter(n, width)
            if filter is None
            else torch.as_tensor(filter, dtype=torch.float32)
        )
        if u.shape != (n,):
            raise ValueError(f"filter must have shape ({n},), got {tuple(u.shape)}")
        gen = torch.Generator().manual_seed(seed)
        self.n, self.k = n, k
        self.register_buffer("U", circulant(u))
        self.register_buffer(
            "v", torch.tensor([(-1.0) ** j for j in range(k)]) / math.sqrt(k)
        )
        self.C = nn.Parameter(omega * torch.randn(n, k, generator=gen))

    def forward(self) -> Tensor:
        return torch.relu(self.U @ self.C) @ self.v

    @torch.no_grad()
    def jacobian(self) -> Tensor:
        """``J(C)``, shape ``(n, n k)``, columns ordered as ``vec(C) = (c_1; ...; c_k)``."""
        active = (self.U @ self.C > 0).to(self.U.dtype)  # (n, k): sigma'(U c_j)
        blocks = (self.v[None, :, None] * active[:, :, None]) * self.U[
            :, None, :
        ]  # (n, k, n)
        return blocks.reshape(self.n, self.k * self.n)


def expected_gram(U: Tensor) -> Tensor:
    """``Sigma = E[J J^T] = (U U^T) o (1/2 - theta/(2 pi))`` for ``C`` Gaussian and ``||v|| = 1``."""
    G = U @ U.T
    norms = G.diagonal().sqrt()
    cos = (G / (norms[:, None] * norms[None, :])).clamp(-1, 1)
    return G * (0.5 - torch.arccos(cos) / (2 * math.pi))


def dominant_frequency(vectors: Tensor) -> Tensor:
    """For each column of ``vectors`` (``n x r``), the frequency ``0..n/2`` with the largest DFT magnitude."""
    return torch.fft.rfft(vectors, dim=0).abs().argmax(dim=0)


def singular_modes(J: Tensor, r: int | None = None) -> tuple[Tensor, Tensor]:
    """Singular values (descending) and the leading ``r`` left singular vectors of ``J``."""
    W, s, _ = torch.linalg.svd(J, full_matrices=False)
    return s, W[:, : (r or W.shape[1])]
