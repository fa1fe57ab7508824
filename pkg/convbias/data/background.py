"""Background noise for real images, and the patch matrix whose rank it inflates.

Following Zhang, Gao, Zou & Cao (2025), noise is added only to the
*background* of a digit (pixels at most ``threshold``, i.e. outside the
strokes), so the clean content is untouched while the data's rank explodes.
The rank is measured on the **patch matrix**: every ``k x k`` patch of every
image, flattened to a row of length ``C k^2`` (what a first conv layer sees).

Used by chapter 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..rank import stable_rank_from_gram

Tensor = torch.Tensor


def background_mask(X: Tensor, threshold: float = 0.1) -> Tensor:
    """Boolean mask of background pixels (all channels ``<= threshold``), shape ``(N, 1, H, W)``."""
    if X.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(X.shape)}")
    return (X <= threshold).all(dim=1, keepdim=True)


def add_background_noise(
    X: Tensor, sigma: float, seed: int = 0, threshold: float = 0.1
) -> Tensor:
    """``X + sigma * g * mask``: Gaussian noise ``g ~ N(0, 1)`` on background pixels only.

    Pixels of the digit (above ``threshold``) are unchanged; no clipping, so the
    noise is exactly Gaussian where it is added. The same seed gives the same noise.
    """
    if sigma < 0:
        raise ValueError(f"sigma is a standard deviation and must be >= 0, got {sigma}")
    mask = background_mask(X, threshold)
    g = torch.randn(X.shape, generator=torch.Generator().manual_seed(int(seed))).to(
        X.device, X.dtype
    )
    return X + sigma * g * mask


def patch_matrix(X: Tensor, kernel: int = 5, stride: int = 1) -> Tensor:
    """All ``kernel x kernel`` patches of ``X (N, C, H, W)`` as rows: ``(N * L, C * kernel^2)``."""
    if X.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(X.shape)}")
    cols = F.unfold(X, kernel_size=kernel, stride=stride)  # (N, C k^2, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def patch_stable_rank(
    X: Tensor, kernel: int = 5, stride: int = 1, chunk: int = 512
) -> float:
    """Stable rank ``||A||_F^2 / ||A||_2^2`` of the patch matrix ``A`` of ``X``.

    Computed from the small Gram matrix ``A^T A`` (``C k^2`` square, float64),
    accumulated over chunks of images so the patch matrix is never held whole.
    """
    G = None
    for start in range(0, len(X), chunk):
        A = patch_matrix(X[start : start + chunk], kernel, stride).double()
        G = A.T @ A if G is None else G + A.T @ A
    if G is None:
        raise ValueError("X holds no images")
    return float(stable_rank_from_gram(G))


def embed_in_noisy_canvas(X: Tensor, pad: int, sigma: float, seed: int = 0) -> Tensor:
    """Place each image in the centre of a canvas ``pad`` pixels wider on every side, filled with noise.

    The border is ``N(0, sigma^2)`` noise; the image itself is unchanged. For
    natural images (CIFAR-10), which have no empty background, this is how
    background noise is added. Returns ``(N, C, H + 2 pad, W + 2 pad)``.
    """
    if X.ndim != 4 or pad < 0 or sigma < 0:
        raise ValueError(
            f"need images (N, C, H, W), pad >= 0 and sigma >= 0; got {tuple(X.shape)}, {pad}, {sigma}"
        )
    N, C, H, W = X.shape
    shape = (N, C, H + 2 * pad, W + 2 * pad)
    canvas = sigma * torch.randn(
        shape, generator=torch.Generator().manual_seed(int(seed))
    ).to(X.device, X.dtype)
    canvas[:, :, pad : pad + H, pad : pad + W] = X
    return canvas
