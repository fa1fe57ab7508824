"""The deep decoder and the comparison generators of Heckel & Soltanolkotabi (2020).

All generators here are *un-trained*: a fixed random input tensor ``B_0`` goes
through a convolutional network whose weights ``C`` are fitted (by gradient
descent) to one image, so the image is ``G(C) = net(B_0)``.

The deep decoder (Heckel & Hand, 2019) has ``d = depth + 1`` blocks

.. math:: B_{i+1} = \\mathrm{cn}(\\mathrm{relu}(U_i B_i C_i)), \\qquad x = \\mathrm{sigmoid}(B_{d} C_{d}),

where ``C_i`` are trainable 1x1 convolutions with ``k`` channels, ``U_i`` is a
*fixed* x2 bilinear upsampling (an interpolation filter; the last block does not
upsample) and ``cn`` is channel normalization: ``nn.BatchNorm2d`` on a batch of
one, i.e. every channel centred and scaled to unit variance, then an affine map.
The input is ``k x H/2**depth x W/2**depth`` with entries ``U[0, 0.1]``.

Comparison generators (the paper's architecture experiment):

* ``"fixed_kernel"``: full-resolution input, each block a *fixed* depthwise
  interpolation filter ``[1,3,3,1] (x) [1,3,3,1] / 64`` followed by a trainable
  1x1 convolution;
* ``"conv3x3"``: full-resolution input, *trainable* 3x3 convolutions;
* ``"transposed"``: trainable 4x4 transposed convolutions with stride 2 (DC-GAN
  style upsampling).

Parameter count of the deep decoder (tested), with ``d = depth + 1`` blocks,
``k`` channels, ``c`` output channels and kernel size ``s`` (1 for the deep decoder):

.. math:: N = d\\,(s^2 k^2 + 2k) + k c

(``2k`` per block are the normalization's scale and shift; drop them when
``normalize=False``). ``depth=5, k=64, c=1`` gives 25,408; ``k=64, c=3`` gives
the 25,536 of the deep-decoder paper (its ``d = 6``): :func:`parameter_formula`.
Used by chapter 4.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

UPSAMPLE_MODES = ("bilinear", "nearest", "none")
INPUT_SCALE = 0.1  # input entries are U[0, INPUT_SCALE]


def _size(output_size: int | Sequence[int]) -> tuple[int, int]:
    hw = (
        (output_size, output_size)
        if isinstance(output_size, int)
        else tuple(int(s) for s in output_size)
    )
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(
            f"output_size must be an int or (H, W) of positive ints, got {output_size!r}"
        )
    return hw


def _input_size(output_size: tuple[int, int], n_upsample: int) -> tuple[int, int]:
    f = 2**n_upsample
    if output_size[0] % f or output_size[1] % f:
        raise ValueError(
            f"output_size {output_size} is not divisible by 2**{n_upsample} = {f}: "
            f"choose a size that is a multiple of {f} or a smaller depth."
        )
    return output_size[0] // f, output_size[1] // f


def channel_norm(channels: int, normalize: bool = True) -> nn.Module:
    """Channel normalization: BatchNorm2d on a batch of one (always batch statistics)."""
    return (
        nn.BatchNorm2d(channels, affine=True, track_running_stats=False)
        if normalize
        else nn.Identity()
    )


def parameter_formula(
    channels: int = 64,
    depth: int = 5,
    out_channels: int = 1,
    normalize: bool = True,
    kernel_size: int = 1,
) -> int:
    """Trainable parameters of :class:`DeepDecoder` by formula: ``(depth+1)(s^2 k^2 + 2k) + k c``.

    The count of a built network is :func:`convbias.models.counting.count_parameters`.
    """
    k, s, d = channels, kernel_size, depth + 1
    return d * (s * s * k * k + (2 * k if normalize else 0)) + k * out_channels


class _Generator(nn.Module):
    """Base: a seeded network applied to its fixed random input buffer ``B_0``."""

    net: nn.Sequential

    def _init_input(self, shape: tuple[int, ...]) -> None:
        self.register_buffer("net_input", torch.rand(shape) * INPUT_SCALE)

    def forward(self, net_input: torch.Tensor | None = None) -> torch.Tensor:
        """The generated image ``(1, out_channels, H, W)`` in [0, 1] (from ``net_input`` if given)."""
        return self.net(self.net_input if net_input is None else net_input)


class DeepDecoder(_Generator):
    """The deep decoder: 1x1 convolutions, fixed upsampling, ReLU, channel normalization.

    ``depth`` is the number of x2 upsamplings (the network has ``depth + 1``
    blocks, the paper's ``d``); ``channels`` is ``k``. ``upsample="none"`` keeps
    the full resolution (input ``k x H x W``); with ``kernel_size=3`` that is the
    "trainable 3x3 convolutions" comparison network. ``normalize=False`` drops the
    channel normalization. Weights and input are drawn from ``seed`` only.
    """

    def __init__(
        self,
        out_channels: int = 1,
        channels: int = 64,
        depth: int = 5,
        output_size: int | Sequence[int] = (64, 64),
        upsample: str = "bilinear",
        normalize: bool = True,
        seed: int = 0,
        kernel_size: int = 1,
    ):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(
                f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}"
            )
        if (
            depth < 0
            or channels < 1
            or out_channels < 1
            or kernel_size < 1
            or kernel_size % 2 == 0
        ):
            raise ValueError(
                "need depth >= 0, channels >= 1, out_channels >= 1 and an odd kernel_size >= 1"
            )
        self.output_size = _size(output_size)
        self.channels, self.depth, self.out_channels = channels, depth, out_channels
        self.upsample, self.normalize, self.kernel_size = (
            upsample,
            normalize,
            kernel_size,
        )
        n_up = depth if upsample != "none" else 0
        h, w = _input_size(self.output_size, n_up)
        pad = kernel_size // 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            for i in range(depth + 1):
                layers.append(
                    nn.Conv2d(
                        channels,
                        channels,
                        kernel_size,
                        padding=pad,
                        bias=False,
                        padding_mode="reflect" if pad else "zeros",
                    )
                )
                if upsample != "none" and i < depth:
                    layers.append(
                        nn.Upsample(
                            scale_factor=2,
                            mode=upsample,
                            **(
                                {"align_corners": False}
                                if upsample == "bilinear"
                                else {}
                            ),
                        )
                    )
                layers += [nn.ReLU(), channel_norm(channels, normalize)]
            layers += [nn.Conv2d(channels, out_channels, 1, bias=False), nn.Sigmoid()]
            self.net = nn.Sequential(*layers)
            self._init_input((1, channels, h, w))

    def weights(self) -> list[torch.Tensor]:
        """The convolution weights ``C_1, ..., C_d, C_out`` (as ``(out, in, s, s)`` tensors)."""
        return [m.weight for m in self.net if isinstance(m, nn.Conv2d)]


def interpolation_kernel(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable 2-D interpolation filter ``t t^T / sum(t)^2`` from 1-D taps ``t``."""
    t = torch.as_tensor(taps, dtype=torch.float32)
    if t.ndim != 1 or t.sum() <= 0:
        raise ValueError("taps must be a 1-D sequence with a positive sum")
    return torch.outer(t, t) / t.sum() ** 2


class FixedFilter(nn.Module):
    """Depthwise convolution with a fixed (non-trainable) filter, same output size (reflect padding)."""

    def __init__(self, channels: int, kernel: torch.Tensor):
        super().__init__()
        self.register_buffer(
            "kernel", kernel.expand(channels, 1, *kernel.shape).clone()
        )
        kh, kw = kernel.shape
        self.pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            F.pad(x, self.pad, mode="reflect"), self.kernel, groups=x.shape[1]
        )


class FixedKernelGenerator(_Generator):
    """Full-resolution generator: blocks of fixed interpolation filter -> trainable 1x1 -> ReLU -> norm."""

    def __init__(
        self,
        out_channels: int = 1,
        channels: int = 64,
        depth: int = 5,
        output_size: int | Sequence[int] = (64, 64),
        taps: Sequence[float] = (1, 3, 3, 1),
        normalize: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.output_size = _size(output_size)
        kernel = interpolation_kernel(taps)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            for _ in range(depth + 1):
                layers += [
                    FixedFilter(channels, kernel),
                    nn.Conv2d(channels, channels, 1, bias=False),
                    nn.ReLU(),
                    channel_norm(channels, normalize),
                ]
            layers += [nn.Conv2d(channels, out_channels, 1, bias=False), nn.Sigmoid()]
            self.net = nn.Sequential(*layers)
            self._init_input((1, channels, *self.output_size))


class TransposedConvGenerator(_Generator):
    """DC-GAN-style generator: trainable 4x4 transposed convolutions (stride 2) -> ReLU -> norm."""

    def __init__(
        self,
        out_channels: int = 1,
        channels: int = 64,
        depth: int = 5,
        output_size: int | Sequence[int] = (64, 64),
        normalize: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.output_size = _size(output_size)
        h, w = _input_size(self.output_size, depth)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            for _ in range(depth):
                layers += [
                    nn.ConvTranspose2d(
                        channels, channels, 4, stride=2, padding=1, bias=False
                    ),
                    nn.ReLU(),
                    channel_norm(channels, normalize),
                ]
            layers += [nn.Conv2d(channels, out_channels, 1, bias=False), nn.Sigmoid()]
            self.net = nn.Sequential(*layers)
            self._init_input((1, channels, h, w))


ARCHITECTURES: dict[str, Callable[..., _Generator]] = {
    "deep_decoder": DeepDecoder,
    "fixed_kernel": FixedKernelGenerator,
    "conv3x3": lambda **kw: DeepDecoder(upsample="none", kernel_size=3, **kw),
    "transposed": TransposedConvGenerator,
}
ARCHITECTURE_LABELS = {
    "deep_decoder": "deep decoder (bilinear upsampling)",
    "fixed_kernel": "fixed [1,3,3,1] filters",
    "conv3x3": "trainable 3x3 convolutions",
    "transposed": "transposed convolutions",
}


def make_generator(architecture: str, **kwargs) -> _Generator:
    """One of :data:`ARCHITECTURES` by name, with the generators' common keyword arguments."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}"
        )
    return ARCHITECTURES[architecture](**kwargs)
