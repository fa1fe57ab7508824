"""Deep 1-D circular convolutional networks fitted to one signal (Dai & Heckel, 2019).

A network of depth ``L`` maps a fixed input ``x`` (``C`` channels, length ``n``) to
one output signal. Each hidden layer is

.. math::  x^{(l)} = N\\big(\\sigma(h_l \\circledast x^{(l-1)})\\big),

with ``h_l`` a circular convolution (kernel size ``k``, no bias), ``sigma`` the
identity (linear nets) or a ReLU, and ``N`` one of

* :class:`ChannelNorm1d` -- channel normalization, ``(x - mean) / sqrt(var + eps) + b``
  with mean and variance taken over the length of each channel separately
  (batch norm on a batch of one example is exactly this);
* :class:`ChannelBias1d` -- the control: only the learned bias, ``x + b``;
* the identity (``norm="none"``).

The output head is the paper's ``1x1`` convolution with bias followed by a
sigmoid (``head="sigmoid"``); ``head="none"`` leaves the hidden layers' output as
is, so a linear, unnormalized net is exactly one circular convolution with the
end-to-end filter ``h_L * ... * h_1`` (see :mod:`convbias.gradients`).

Used by chapter 3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
NORMS = ("channel", "bias", "none")
ACTIVATIONS = ("linear", "relu")
HEADS = ("sigmoid", "none")
#: the initializations of :class:`DeepConv1d`: PyTorch's default, or it times :func:`energy_gain`
INITS = ("default", "energy")


def energy_gain(activation: str = "linear") -> float:
    """The factor that makes PyTorch's default init of a conv layer keep a signal's energy.

    The default draws ``w ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``fan_in = C k``), of variance
    ``1/(3 fan_in)``, so a layer maps a signal of energy ``E`` to expected energy ``E/3``; a ReLU
    keeps half of that (``E/6``). Scaling the weights by ``sqrt(3)`` (linear) or ``sqrt(6)`` (ReLU)
    gives variance ``1/fan_in`` or ``2/fan_in``: He (Kaiming) initialization, expected energy ``E``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: use one of {ACTIVATIONS}")
    return math.sqrt(3.0 * (2.0 if activation == "relu" else 1.0))


class ChannelNorm1d(nn.Module):
    """Channel normalization of a ``(B, C, n)`` signal, all channels at once.

    Each example and channel is centred and scaled by its own statistics over the
    length ``n``: ``y[b, c] = (x[b, c] - mean) / sqrt(var + eps) + bias[c]``.
    ``unbiased=False`` (default) divides the variance by ``n``, which makes the
    module equal to ``BatchNorm1d(C, track_running_stats=False)`` in training mode
    on a batch of one; ``unbiased=True`` divides by ``n - 1`` as the paper's code does.
    ``gain=True`` adds a learned per-channel scale (the paper leaves it out).
    """

    def __init__(
        self,
        channels: int,
        eps: float = 1e-5,
        unbiased: bool = False,
        gain: bool = False,
    ):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.eps, self.unbiased = float(eps), bool(unbiased)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight = nn.Parameter(torch.ones(channels)) if gain else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.bias.shape[0]:
            raise ValueError(
                f"expected a (batch, {self.bias.shape[0]}, length) signal, got shape {tuple(x.shape)}"
            )
        var, mean = torch.var_mean(
            x, dim=-1, keepdim=True, correction=1 if self.unbiased else 0
        )
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight[:, None]
        return y + self.bias[:, None]


class ChannelBias1d(nn.Module):
    """The control of :class:`ChannelNorm1d`: the same learned bias, no normalization."""

    def __init__(self, channels: int):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias[:, None]


def make_norm(kind: str, channels: int, unbiased: bool = False) -> nn.Module:
    """``"channel"`` -> :class:`ChannelNorm1d`, ``"bias"`` -> :class:`ChannelBias1d`, ``"none"`` -> identity."""
    if kind == "channel":
        return ChannelNorm1d(channels, unbiased=unbiased)
    if kind == "bias":
        return ChannelBias1d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalization {kind!r}: use one of {NORMS}")


class CircularConv1d(nn.Conv1d):
    """A ``Conv1d`` with ``padding_mode="circular"`` that pads by one ``torch.cat`` of the wrapped ends.

    The same padded input, so the same function and gradients as ``nn.Conv1d`` (up to
    the order in which a wrapped entry's gradient is summed), in fewer operators than
    PyTorch's general circular padding (``benchmarks/channel_norm.py`` times a step).
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None):
        p = self.padding[0]
        if p and self.padding_mode == "circular" and p <= input.shape[-1]:
            padded = torch.cat([input[..., -p:], input, input[..., :p]], dim=-1)
            return F.conv1d(
                padded, weight, bias, self.stride, 0, self.dilation, self.groups
            )
        return super()._conv_forward(input, weight, bias)


def circular_conv1d(
    in_channels: int, out_channels: int, kernel_size: int, groups: int = 1
) -> nn.Conv1d:
    """A bias-free ``Conv1d`` with circular padding that keeps the length (odd ``kernel_size``).

    Output ``y[o, i] = sum_{c, j} w[o, c, j] x[c, (i + j - p) mod n]`` with ``p = kernel_size // 2``;
    weights use PyTorch's default initialisation, ``U(-1/sqrt(C k), 1/sqrt(C k))`` with
    ``C = in_channels / groups``. A :class:`CircularConv1d` (padding by one ``torch.cat``).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be a positive odd number (so the length is kept), got {kernel_size}"
        )
    return CircularConv1d(
        in_channels,
        out_channels,
        kernel_size,
        padding=kernel_size // 2,
        padding_mode="circular",
        bias=False,
        groups=groups,
    )


class DeepConv1d(nn.Module):
    """A deep circular 1-D conv net: ``depth`` x (conv -> activation -> norm), then the head.

    ``DeepConv1d(depth=30, channels=1, kernel_size=15)`` is the paper's linear
    single-channel net; ``DeepConv1d(depth=12, channels=4, kernel_size=3,
    activation="relu")`` its ReLU net. ``in_channels`` defaults to ``channels``.

    ``init="energy"`` draws the filters exactly as ``init="default"`` (PyTorch's default) and
    multiplies them by :func:`energy_gain` of the activation, so every layer keeps the expected
    energy of its input.

    ``members=E`` holds ``E`` independent networks side by side in grouped
    convolutions (group ``e`` is member ``e``; every normalization is per channel,
    so members never mix). Each member is initialised exactly like a lone network
    (same fan-in). An input with ``in_channels`` channels is shared by all members;
    the output has shape ``(B, E * out_channels, n)``, member ``e`` in channels
    ``[e * out_channels, (e + 1) * out_channels)``. Training the sum of the members'
    losses gives each member its own gradient, so one SGD run trains E nets.
    """

    def __init__(
        self,
        depth: int,
        channels: int = 1,
        kernel_size: int = 15,
        activation: str = "linear",
        norm: str = "channel",
        head: str = "sigmoid",
        in_channels: int | None = None,
        out_channels: int = 1,
        members: int = 1,
        unbiased: bool = False,
        init: str = "default",
    ):
        super().__init__()
        if depth < 1 or members < 1 or channels < 1:
            raise ValueError(
                f"depth, channels and members must be at least 1, got {depth}, {channels}, {members}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}: use one of {ACTIVATIONS}"
            )
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}: use one of {HEADS}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: use one of {INITS}")
        if head == "none" and channels != out_channels:
            raise ValueError(
                "head='none' returns the last hidden layer: it needs channels == out_channels"
            )
        self.depth, self.members, self.channels, self.kernel_size = (
            depth,
            members,
            channels,
            kernel_size,
        )
        self.norm_kind, self.activation, self.head_kind = norm, activation, head
        self.init = init
        self.in_channels = channels if in_channels is None else in_channels
        self.out_channels = out_channels
        E = members
        layers = []
        for l in range(depth):
            c_in = self.in_channels if l == 0 else channels
            layers.append(
                circular_conv1d(E * c_in, E * channels, kernel_size, groups=E)
            )
            if activation == "relu":
                layers.append(nn.ReLU())
            layers.append(make_norm(norm, E * channels, unbiased=unbiased))
        self.hidden = nn.Sequential(*layers)
        if init == "energy":
            with torch.no_grad():
                for conv in self.conv_layers():
                    conv.weight.mul_(energy_gain(activation))
        self.head = (
            nn.Conv1d(E * channels, E * out_channels, 1, groups=E)
            if head == "sigmoid"
            else None
        )

    def conv_layers(self) -> list[nn.Conv1d]:
        """The ``depth`` hidden convolutions, first to last (not the 1x1 head)."""
        return [m for m in self.hidden if isinstance(m, nn.Conv1d)]

    def filters(self) -> Tensor:
        """All hidden filters as one tensor ``(depth, members, channels, channels_in, k)``.

        The first layer's ``channels_in`` is ``in_channels``; it must equal ``channels`` to stack.
        """
        ws = [
            m.weight.reshape(self.members, self.channels, -1, self.kernel_size)
            for m in self.conv_layers()
        ]
        if len({w.shape for w in ws}) > 1:
            raise ValueError(
                "layers have different shapes (in_channels != channels): use conv_layers() instead"
            )
        return torch.stack(ws)

    def member(self, e: int) -> "DeepConv1d":
        """A standalone copy (``members=1``) of member ``e``."""
        if not 0 <= e < self.members:
            raise ValueError(f"member index must lie in [0, {self.members}), got {e}")
        lone = DeepConv1d(
            self.depth,
            self.channels,
            self.kernel_size,
            self.activation,
            self.norm_kind,
            self.head_kind,
            self.in_channels,
            self.out_channels,
            members=1,
            init=self.init,
        )
        state = {}
        for name, value in self.state_dict().items():
            part = value.shape[0] // self.members
            state[name] = value[e * part : (e + 1) * part].clone()
        lone.load_state_dict(state)
        return lone.to(next(self.parameters()).device)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3:
            raise ValueError(
                f"expected input (batch, channels, length), got shape {tuple(x.shape)}"
            )
        if x.shape[1] == self.in_channels and self.members > 1:
            x = x.repeat(1, self.members, 1)
        if x.shape[1] != self.members * self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels (shared by all members) or "
                f"{self.members * self.in_channels} (one block per member), got {x.shape[1]}"
            )
        z = self.hidden(x)
        return z if self.head is None else torch.sigmoid(self.head(z))
