"""The deep decoder and comparison generators: shapes, range, parameter count, seeding."""

import pytest
import torch

from convbias.models import count_parameters
from convbias.models.deep_decoder import (
    ARCHITECTURES,
    DeepDecoder,
    interpolation_kernel,
    make_generator,
    parameter_formula,
)


def test_parameter_count_formula_matches_module():
    # d = depth + 1 blocks of k*k 1x1 weights + 2k norm parameters, then k*c output weights
    for k, depth, c, norm in [
        (64, 5, 1, True),
        (64, 5, 3, True),
        (16, 3, 3, False),
        (128, 4, 1, True),
    ]:
        net = DeepDecoder(
            out_channels=c, channels=k, depth=depth, output_size=64, normalize=norm
        )
        assert count_parameters(net) == parameter_formula(k, depth, c, normalize=norm)


def test_parameter_count_known_values():
    assert (
        parameter_formula(64, 5, 1) == 25_408
    )  # the authors' code, 64x64 gray, 5 upsamplings
    assert (
        parameter_formula(64, 5, 3) == 25_536
    )  # the deep decoder paper: d = 6, k = 64, colour
    assert parameter_formula(3, 0, 1, normalize=False, kernel_size=3) == 9 * 9 + 3
    assert count_parameters(
        make_generator("conv3x3", channels=8, depth=2, output_size=16)
    ) == parameter_formula(8, 2, 1, kernel_size=3)


def test_output_shape_range_and_input():
    net = DeepDecoder(out_channels=3, channels=16, depth=4, output_size=(32, 48))
    x = net().detach()
    assert x.shape == (1, 3, 32, 48)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert net.net_input.shape == (1, 16, 2, 3)
    assert 0.0 <= float(net.net_input.min()) and float(net.net_input.max()) <= 0.1


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_makes_an_image(arch):
    x = make_generator(arch, out_channels=1, channels=8, depth=3, output_size=32)()
    assert x.shape == (1, 1, 32, 32)
    assert torch.all((x >= 0) & (x <= 1))


def test_same_seed_same_net_different_seed_different_net():
    a, b, c = (
        DeepDecoder(channels=8, seed=1)(),
        DeepDecoder(channels=8, seed=1)(),
        DeepDecoder(channels=8, seed=2)(),
    )
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_channel_norm_standardizes_each_channel():
    net = DeepDecoder(channels=8, depth=2, output_size=16)
    hidden = net.net[:-2](
        net.net_input
    )  # after the last normalization (initial scale 1, shift 0)
    assert torch.allclose(hidden.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(
        hidden.var(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3
    )


def test_interpolation_kernel_and_bad_input():
    k = interpolation_kernel((1, 3, 3, 1))
    assert (
        k.shape == (4, 4)
        and abs(float(k.sum()) - 1) < 1e-6
        and abs(float(k[1, 1]) - 9 / 64) < 1e-7
    )
    with pytest.raises(ValueError, match="divisible"):
        DeepDecoder(output_size=(60, 64), depth=5)
    with pytest.raises(ValueError, match="upsample"):
        DeepDecoder(upsample="cubic")
    with pytest.raises(ValueError, match="architecture"):
        make_generator("resnet")


# ----------------------------------------------------------------- the two-layer 1-D generator
from convbias.models.generator1d import (  # noqa: E402
    ConvGenerator1D,
    circulant,
    dominant_frequency,
    expected_gram,
    singular_modes,
)


def test_circulant_is_circular_convolution():
    u, c = torch.tensor([1.0, 2.0, 0.0, 3.0]), torch.tensor([0.0, 1.0, 0.0, 0.0])
    assert torch.equal(
        circulant(u) @ c, torch.roll(u, 1)
    )  # convolving with a shifted delta shifts u


def test_jacobian_matches_autograd():
    g = ConvGenerator1D(n=16, k=6, seed=3)
    auto = torch.autograd.functional.jacobian(
        lambda C: torch.relu(g.U @ C) @ g.v, g.C.detach()
    )  # (n, n, k)
    assert torch.allclose(
        g.jacobian(), auto.permute(0, 2, 1).reshape(16, -1), atol=1e-6
    )


def test_expected_gram_is_circulant_with_fourier_spectrum():
    g = ConvGenerator1D(n=32, k=4, width=2.0)
    S = expected_gram(g.U)
    assert torch.allclose(S, circulant(S[:, 0]), atol=1e-4)
    # eigenvalues of a symmetric circulant = DFT of its first column; the leading ones are low frequencies
    eig = torch.linalg.eigvalsh(S).flip(0)
    dft = torch.fft.fft(S[:, 0]).real
    assert torch.allclose(eig, dft.sort(descending=True).values, atol=1e-5)
    assert torch.all(
        dft[:16].diff() < 0
    )  # decays with frequency for the Gaussian filter


def test_jacobian_leading_singular_vectors_are_low_frequency():
    g = ConvGenerator1D(n=64, k=512, width=2.0, seed=0)
    s, W = singular_modes(g.jacobian(), 7)
    assert torch.all(s[:-1] >= s[1:])
    assert (
        int(dominant_frequency(W).max()) <= 4
    )  # 7 leading vectors: frequencies 0, 1, 1, 2, 2, 3, 3
    # with many channels J J^T concentrates at its expectation
    eig = torch.linalg.eigvalsh(expected_gram(g.U)).flip(0)
    assert torch.allclose(s[:7] ** 2, eig[:7], rtol=0.1)


def test_dominant_frequency_of_cosines():
    t = torch.arange(32, dtype=torch.float32)
    V = torch.stack([torch.cos(2 * torch.pi * f * t / 32) for f in (0, 3, 7)], dim=1)
    assert dominant_frequency(V).tolist() == [0, 3, 7]
