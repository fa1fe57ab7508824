"""The chapter-5 CNNs, written as ``nn.Sequential`` so that :func:`convbias.efcn.to_fcn` can embed them.

* :func:`canvas_cnn`: two conv-ReLU-maxpool blocks and a linear read-out, for
  small gray canvases (quick profile).
* :func:`skinny_cnn`: the "Skinny" CIFAR-10 CNN of d'Ascoli et al. (2019):
  conv 3->64 k4 s2 p2, maxpool 3/2, conv 64->64 k5 p2, maxpool 3/2,
  conv 64->64 k3 p1, maxpool 3/2, linear (143,178 parameters on 32x32x3).
* :func:`alexnet_style`: the paper's larger AlexNet-style CIFAR-10 CNN (2.85M parameters).

The standard FCN "of the same architecture" is
:func:`convbias.efcn.reinitialized_fcn` applied to the eFCN of one of these.

Used by chapters 5 and 6.
"""

from __future__ import annotations

import torch
from torch import nn


def _readout_size(features: nn.Sequential, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


def canvas_cnn(
    input_shape: tuple[int, int, int] = (1, 16, 16),
    width: int = 16,
    kernel: int = 3,
    num_classes: int = 10,
) -> nn.Sequential:
    """conv(k, pad k//2)-ReLU-maxpool2, twice, then Flatten and Linear to ``num_classes``."""
    if kernel % 2 == 0:
        raise ValueError(
            f"kernel must be odd so that padding kernel//2 keeps the size, got {kernel}"
        )
    C = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(C, width, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, width, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return nn.Sequential(
        *features, nn.Linear(_readout_size(features, input_shape), num_classes)
    )


def skinny_cnn(
    input_shape: tuple[int, int, int] = (3, 32, 32),
    width: int = 64,
    num_classes: int = 10,
) -> nn.Sequential:
    """The paper's "Skinny" CNN (defaults: CIFAR-10, 143,178 parameters)."""
    C = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(C, width, 4, stride=2, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(width, width, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Flatten(),
    )
    return nn.Sequential(
        *features, nn.Linear(_readout_size(features, input_shape), num_classes)
    )


def alexnet_style(num_classes: int = 10) -> nn.Sequential:
    """The paper's AlexNet-style CIFAR-10 CNN (inputs 3x32x32), as an ``nn.Sequential``."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 4, stride=2, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Dropout(),
        nn.Linear(256, 512),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )
