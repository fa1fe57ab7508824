"""Denoising utilities: PSNR on known inputs, noise, measurement operators, the fit loop, the DCT baseline."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from convbias.denoise import (
    GaussianMeasurements,
    RandomMask,
    add_noise,
    dct_matrix,
    dct_recover,
    fit_generator,
    mse,
    psnr,
    uniform_noise,
)


def test_psnr_known_values():
    ref = torch.zeros(4, 4)
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0)  # MSE 1e-2 -> 20 dB
    assert psnr(np.full((3, 3), 0.01), np.zeros((3, 3))) == pytest.approx(40.0)
    assert psnr(ref + 0.5, ref, data_range=255.0) == pytest.approx(
        10 * math.log10(255.0**2 / 0.25)
    )
    assert psnr(ref, ref) == float("inf")
    with pytest.raises(ValueError, match="shapes"):
        mse(torch.zeros(2), torch.zeros(3))


def test_psnr_agrees_with_skimage():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(0)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0))


def test_add_noise_level_and_seed():
    img = torch.full((1, 1, 64, 64), 0.5)
    noisy = add_noise(img, 25 / 255, seed=1, clip=False)
    assert float((noisy - img).std()) == pytest.approx(25 / 255, rel=0.05)
    assert torch.equal(noisy, add_noise(img, 25 / 255, seed=1, clip=False))
    assert (
        0 <= float(add_noise(img, 2.0).min()) and float(add_noise(img, 2.0).max()) <= 1
    )
    u = uniform_noise((1, 1, 64, 64))
    assert (
        0 <= float(u.min())
        and float(u.max()) <= 1
        and abs(float(u.mean()) - 0.5) < 0.02
    )


def test_operators():
    A = GaussianMeasurements(n=256, m=4000, seed=0)
    x = torch.randn(1, 1, 16, 16)
    assert A(x).shape == (1, 4000)
    assert float(A(x).norm() / x.norm()) == pytest.approx(
        1.0, rel=0.05
    )  # E||Ax||^2 = ||x||^2
    r = torch.randn(1, 4000)
    assert torch.allclose(
        (A(x) * r).sum(), (A.adjoint(r).reshape(x.shape) * x).sum(), rtol=1e-4
    )
    M = RandomMask((16, 16), keep=0.3, seed=0)
    assert M(x).shape == x.shape and abs(M.m / 256 - 0.3) < 0.1
    with pytest.raises(ValueError):
        RandomMask((4, 4), keep=0.0)


def test_dct_matrix_orthonormal():
    D = dct_matrix(8)
    assert torch.allclose(D @ D.T, torch.eye(8), atol=1e-6)
    assert torch.allclose(D[0], torch.full((8,), 8**-0.5))


def test_dct_recover_sparse_image_from_few_measurements():
    D = dct_matrix(16)
    z = torch.zeros(16, 16)
    z[0, 0], z[1, 2], z[3, 0] = 4.0, 1.0, -0.8
    x = (D.T @ z @ D).reshape(1, 1, 16, 16)
    x = (x - x.min()) / (
        x.max() - x.min()
    )  # in [0, 1], still 4-sparse (the shift is the DC term)
    A = GaussianMeasurements(n=256, m=80, seed=0)
    rec = dct_recover(A(x), A, (16, 16), lam=1e-2, iters=500)
    assert psnr(rec, x) > 40


class _Pixels(nn.Module):
    """The identity 'generator': the image is the parameter itself."""

    def __init__(self):
        super().__init__()
        self.x = nn.Parameter(torch.zeros(1, 1, 4, 4))

    def forward(self):
        return self.x


def test_fit_generator_tracks_psnr_and_keeps_best_iterate():
    clean = torch.full((1, 1, 4, 4), 0.5)
    noisy = clean + 0.2 * torch.sign(
        torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    )
    # gradient descent on the 16 pixels from 0: x_t = (1 - (1 - 2 lr / 16)^t) * noisy, known in closed form
    res = fit_generator(
        _Pixels(),
        noisy,
        steps=200,
        lr=1.0,
        clean=clean,
        optimizer="sgd",
        momentum=0.0,
        log_every=1,
    )
    expected = [psnr((1 - (1 - 2 / 16) ** t) * noisy, clean) for t in range(201)]
    assert res.step[0] == 0 and res.step[-1] == 200 and len(res.psnr) == 201
    np.testing.assert_allclose(res.psnr, expected, atol=1e-3)
    assert res.best_step == int(np.argmax(expected)) and res.best_psnr == pytest.approx(
        max(expected), abs=1e-3
    )
    assert (
        res.best_psnr > res.final_psnr + 0.3
    )  # the optimum is passed on the way to fitting the noise
    assert res.final_psnr == pytest.approx(psnr(noisy, clean), abs=1e-3)
    assert psnr(res.best_image, clean) == pytest.approx(res.best_psnr, abs=1e-4)
    assert res.loss[-1] < 1e-6 * res.loss[0]
    res10 = fit_generator(
        _Pixels(),
        noisy,
        steps=25,
        lr=1.0,
        clean=clean,
        optimizer="sgd",
        momentum=0.0,
        log_every=10,
    )
    assert res10.step == [0, 10, 20, 25]


def test_compressive_sensing_sweep_validates_and_returns_one_row_per_m():
    from convbias.denoise import compressive_sensing_sweep

    img = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="gray"):
        compressive_sensing_sweep(torch.rand(1, 3, 8, 8), [10], _Pixels, steps=1)
    with pytest.raises(ValueError, match="mode"):
        compressive_sensing_sweep(img, [10], _Pixels, steps=1, mode="fourier")

    class _Pixels8(_Pixels):
        def __init__(self):
            super().__init__()
            self.x = nn.Parameter(torch.zeros(1, 1, 8, 8))

    # all pixels observed (keep = 1): gradient descent on the pixels recovers the image exactly
    out = compressive_sensing_sweep(
        img, [64], _Pixels8, steps=300, lr=0.05, mode="mask", baseline_iters=50
    )
    assert out["m"].tolist() == [64] and out["net_final"][0] > 40


def test_channels_last_fit_computes_the_same_fit():
    from convbias.denoise import fit_generator
    from convbias.models.deep_decoder import DeepDecoder

    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    runs = [
        fit_generator(
            DeepDecoder(out_channels=3, channels=8, depth=3, output_size=32, seed=0),
            target,
            30,
            clean=target,
            log_every=10,
            channels_last=cl,
        )
        for cl in (False, True)
    ]
    assert np.allclose(runs[0].loss, runs[1].loss, rtol=1e-4)
    assert torch.allclose(runs[0].final_image, runs[1].final_image, atol=1e-4)


def test_late_loss_is_robust_to_one_spike():
    from convbias.denoise import FitResult

    r = FitResult()
    for t, loss, p in zip(
        range(0, 50, 10), [5.0, 4.0, 1.0, 9.0, 2.0], [10.0, 20.0, 25.0, 12.0, 24.0]
    ):
        r.record(
            t, loss=loss, psnr=p
        )  # a spike up in the loss and down in the PSNR at the 4th record
    assert r.late_loss() == 2.0  # median of 1, 9 (a spike), 2
    assert r.late_loss(1) == 2.0 and r.late_loss(5) == 4.0
    with pytest.raises(ValueError, match="records"):
        r.late_loss(0)
    assert r.late_psnr() == 24.0 and r.late_psnr(1) == 24.0
    assert r.loss_at(31) == 9.0 and r.psnr_at(12) == 20.0
    no_clean = FitResult()
    no_clean.record(0, loss=1.0), no_clean.record(1, loss=1.0)
    assert np.isnan(no_clean.late_psnr())  # no clean image, no PSNR
