"""A CNN with one convolution layer, for the rank of learned filters on real images.

``conv(k x k, C filters) -> ReLU -> average pool -> linear`` (:class:`OneConvCNN`), the
network of chapter 1's real-data experiment
(:func:`convbias.intrinsic_dimension.run_noise_sweep`). The filters, reshaped to a
``C x (in_channels k^2)`` matrix, are compared with the patch matrix of the data
(``convbias.data.background``). ``first_init_scale`` shrinks their default
initialisation, the small-initialisation regime of the theory, so that what training
adds is not hidden under the random start. Used by chapter 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ..rank import as_matrix

Tensor = torch.Tensor


class OneConvCNN(nn.Module):
    """``Conv2d(in_channels, width, kernel) -> ReLU -> AvgPool(pool) -> Linear(n_classes)``."""

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        width: int = 16,
        kernel: int = 5,
        pool: int = 4,
        image_size: int = 28,
        first_init_scale: float = 0.1,
    ):
        super().__init__()
        side = image_size - kernel + 1
        if side < pool or pool < 1:
            raise ValueError(
                f"a {kernel}x{kernel} conv on {image_size}x{image_size} images leaves {side} pixels: "
                f"choose pool in [1, {max(side, 1)}]"
            )
        if first_init_scale <= 0:
            raise ValueError(
                f"first_init_scale must be positive, got {first_init_scale}"
            )
        self.conv = nn.Conv2d(in_channels, width, kernel)
        with torch.no_grad():
            self.conv.weight.mul_(first_init_scale)
            self.conv.bias.mul_(first_init_scale)
        self.pool = nn.AvgPool2d(pool)
        self.head = nn.Linear(width * (side // pool) ** 2, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``(n, n_classes)`` of images ``(n, in_channels, image_size, image_size)``."""
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))

    def first_layer_filters(self) -> Tensor:
        """The first-layer filters as a matrix ``(width, in_channels * kernel^2)``."""
        return as_matrix(self.conv.weight.detach())


def first_layer_filters(params: dict[str, Tensor]) -> Tensor:
    """Stacked first-layer filter matrices ``(E, width, in_channels * kernel^2)`` of an ensemble's params."""
    W = params["conv.weight"].detach()
    return W.reshape(W.shape[0], W.shape[1], -1)
