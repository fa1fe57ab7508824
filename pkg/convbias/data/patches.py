"""Synthetic patch data: a low-dimensional clean signal hidden among background-noise patches.

The case study of Zhang, Gao, Zou & Cao (2025). An image is ``P`` patches in
``R^d``, ``x = (x^(1), ..., x^(P))``, with a label ``y in {+1, -1}``:

- one patch (at a uniformly random position) carries the clean signal
  ``mu_{y,k}``, one of ``K`` directions that belong to class ``y`` (``k``
  uniform). The ``2K`` directions are orthogonal with norm ``||mu||``, so the
  clean images span a ``2K``-dimensional space: their *intrinsic dimension*;
- every other patch is background noise ``xi ~ N(0, sigma_p^2 (I - U U^T))``,
  where the columns of ``U`` (``d x 2K``) are an orthonormal basis of the
  signal span, so the noise is orthogonal to the signal.

``sigma_p = 0`` gives the clean images. Everything is drawn from seeded
``torch.Generator`` objects: the same seed gives the same tensors. Used by chapter 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..rank import stable_rank

Tensor = torch.Tensor


@dataclass
class PatchData:
    """A sample of the patch model.

    ``X``: ``(n, P, d)`` patches; ``y``: ``(n,)`` labels in {+1., -1.};
    ``directions``: ``(2, K, d)`` with ``directions[0] = mu_{+1,.}`` and
    ``directions[1] = mu_{-1,.}``; ``signal_k`` and ``signal_patch``: ``(n,)``
    which direction and which patch position carry each image's signal.
    """

    X: Tensor
    y: Tensor
    directions: Tensor
    signal_k: Tensor
    signal_patch: Tensor
    sigma_p: float

    @property
    def intrinsic_dim(self) -> int:
        """``2K``, the dimension of the span of the clean images."""
        return self.directions.shape[0] * self.directions.shape[1]

    def patch_matrix(self) -> Tensor:
        """All patches stacked as rows: ``(n * P, d)``, the "data matrix" whose rank we compare."""
        return self.X.reshape(-1, self.X.shape[-1])

    def stable_rank(self) -> float:
        """Stable rank ``||A||_F^2 / ||A||_2^2`` of :meth:`patch_matrix`."""
        return float(stable_rank(self.patch_matrix().double()))


def signal_directions(d: int, K: int, norm: float = 5.0, seed: int = 0) -> Tensor:
    """``2K`` orthogonal directions of length ``norm`` in ``R^d``, as a ``(2, K, d)`` tensor.

    They are the columns of the Q factor of a seeded Gaussian ``d x 2K``
    matrix, so they are spread over all coordinates (not axis-aligned).
    """
    if K < 1 or 2 * K > d:
        raise ValueError(
            f"need 1 <= K and 2K <= d for 2K orthogonal directions in R^d; got K={K}, d={d}"
        )
    if norm <= 0:
        raise ValueError(f"the signal norm must be positive, got {norm}")
    gen = torch.Generator().manual_seed(int(seed))
    Q, _ = torch.linalg.qr(torch.randn(d, 2 * K, generator=gen, dtype=torch.float64))
    return (norm * Q.T).reshape(2, K, d).float()


@dataclass(frozen=True)
class PatchDataModel:
    """Parameters of the patch data model; :meth:`sample` draws labelled images.

    d: patch dimension. P: patches per image (one signal patch, ``P - 1``
    noise patches). K: signal directions per class (intrinsic dimension
    ``2K``). mu_norm: ``||mu||``. sigma_p: background-noise level.
    direction_seed: seed of the signal directions, shared by every sample of
    the model (train and test sets must use the same directions).
    """

    d: int = 100
    P: int = 4
    K: int = 3
    mu_norm: float = 5.0
    sigma_p: float = 1.0
    direction_seed: int = 0

    def __post_init__(self):
        if self.P < 2:
            raise ValueError(
                f"an image needs P >= 2 patches (one signal, at least one noise), got {self.P}"
            )
        if self.sigma_p < 0:
            raise ValueError(
                f"sigma_p is a standard deviation and must be >= 0, got {self.sigma_p}"
            )
        if self.K < 1 or 2 * self.K > self.d:
            raise ValueError(f"need 1 <= K and 2K <= d, got K={self.K}, d={self.d}")

    @property
    def intrinsic_dim(self) -> int:
        return 2 * self.K

    def with_noise(self, sigma_p: float) -> "PatchDataModel":
        """The same model (same signal directions) with another noise level."""
        return replace(self, sigma_p=float(sigma_p))

    def directions(self) -> Tensor:
        """The signal directions ``(2, K, d)``: ``[0]`` for class +1, ``[1]`` for class -1."""
        return signal_directions(self.d, self.K, self.mu_norm, self.direction_seed)

    def signal_basis(self) -> Tensor:
        """Orthonormal basis ``U`` of the signal span, ``(d, 2K)``."""
        return (self.directions().reshape(-1, self.d) / self.mu_norm).T

    def sample(self, n: int, seed: int = 0) -> PatchData:
        """Draw ``n`` images with balanced-in-expectation labels (each ±1 with probability 1/2)."""
        if n < 1:
            raise ValueError(f"n must be a positive number of images, got {n}")
        gen = torch.Generator().manual_seed(int(seed))
        mu = self.directions()
        U = self.signal_basis()
        y = torch.where(torch.rand(n, generator=gen) < 0.5, 1.0, -1.0)
        k = torch.randint(self.K, (n,), generator=gen)
        where = torch.randint(self.P, (n,), generator=gen)
        g = torch.randn(n, self.P, self.d, generator=gen)
        xi = self.sigma_p * (g - (g @ U) @ U.T)  # N(0, sigma_p^2 (I - U U^T))
        cls = (y < 0).long()  # 0 for +1, 1 for -1
        X = xi.clone()
        X[torch.arange(n), where] = mu[cls, k]
        return PatchData(
            X=X,
            y=y,
            directions=mu,
            signal_k=k,
            signal_patch=where,
            sigma_p=self.sigma_p,
        )
