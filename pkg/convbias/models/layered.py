"""Small nets with named layers, input to output, for per-layer measurements of training.

:func:`layered_mlp` (``fc1 -> ... -> out``) and :func:`layered_cnn` (``conv1 -> conv2
-> ... -> pool -> out``) are ``nn.Sequential`` models whose parameterised modules are
named in forward order, so that ``named_parameters()`` lists the layers from the
input layer to the output layer under readable names. The activation is ``tanh``
(smooth, as in the edge-of-stability experiments) or ``relu``. Used by chapter 7.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}: use one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]()


def layered_mlp(
    d_in: int, widths: Sequence[int], n_out: int, activation: str = "tanh"
) -> nn.Sequential:
    """``Flatten -> fc1 -> act -> ... -> fc{len(widths)} -> act -> out``."""
    widths = list(widths)
    if d_in < 1 or n_out < 1 or not widths or any(w < 1 for w in widths):
        raise ValueError(
            f"d_in, n_out and every width must be positive (and at least one width), "
            f"got {d_in}, {widths}, {n_out}"
        )
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    prev = d_in
    for i, w in enumerate(widths, 1):
        layers += [(f"fc{i}", nn.Linear(prev, w)), (f"act{i}", _activation(activation))]
        prev = w
    layers.append(("out", nn.Linear(prev, n_out)))
    return nn.Sequential(OrderedDict(layers))


def layered_cnn(
    in_channels: int,
    image_size: int,
    channels: Sequence[int],
    n_out: int,
    kernel: int = 3,
    pool: int = 2,
    activation: str = "tanh",
) -> nn.Sequential:
    """``conv1 -> act -> ... -> conv{len(channels)} -> act -> AvgPool(pool) -> out`` (same padding)."""
    channels = list(channels)
    if in_channels < 1 or n_out < 1 or not channels or any(c < 1 for c in channels):
        raise ValueError(
            f"in_channels, n_out and every channel count must be positive, got "
            f"{in_channels}, {channels}, {n_out}"
        )
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(
            f"kernel must be a positive odd number (same padding), got {kernel}"
        )
    if pool < 1 or image_size % pool:
        raise ValueError(f"pool must divide the image size {image_size}, got {pool}")
    layers: list[tuple[str, nn.Module]] = []
    prev = in_channels
    for i, c in enumerate(channels, 1):
        layers += [
            (f"conv{i}", nn.Conv2d(prev, c, kernel, padding=kernel // 2)),
            (f"act{i}", _activation(activation)),
        ]
        prev = c
    side = image_size // pool
    layers += [
        ("pool", nn.AvgPool2d(pool)),
        ("flatten", nn.Flatten()),
        ("out", nn.Linear(prev * side * side, n_out)),
    ]
    return nn.Sequential(OrderedDict(layers))
