"""A small CNN in the spirit of Galanti et al.'s convolutional experiments (:class:`GalantiCNN`).

Blocks Conv2d(3x3) -> [BatchNorm2d without running statistics] -> ReLU ->
MaxPool(2), then global average pooling and a linear classifier ``head``.
Conv weights ``(out, in, k, k)`` are ranked as ``(out, in * k * k)`` matrices
(:func:`convbias.rank.as_matrix`). Used by chapter 2.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

Tensor = torch.Tensor


class GalantiCNN(nn.Module):
    """``len(channels)`` conv blocks and a linear classifier on globally pooled features."""

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32),
        n_classes: int = 10,
        *,
        batchnorm: bool = True,
        kernel_size: int = 3,
    ):
        super().__init__()
        channels = list(channels)
        if not channels or any(c < 1 for c in channels):
            raise ValueError(
                f"channels must be a non-empty list of positive widths, got {channels}"
            )
        if kernel_size % 2 != 1:
            raise ValueError(
                f"kernel_size must be odd (same padding), got {kernel_size}"
            )
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers.append(
                nn.Conv2d(
                    prev, c, kernel_size, padding=kernel_size // 2, bias=not batchnorm
                )
            )
            if batchnorm:
                layers.append(nn.BatchNorm2d(c, track_running_stats=False))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            prev = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Globally pooled features fed to the classifier."""
        return self.body(x)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        h = self.body(x)
        return h if return_features else self.head(h)
