"""The structured compressive-sensing operator: the same statistics as a dense Gaussian A, O(n) memory."""

import numpy as np
import pytest
import torch

from convbias.denoise import (
    CirculantGaussianMeasurements,
    GaussianMeasurements,
    compressive_sensing_sweep,
    dct_matrix,
    dct_recover,
    psnr,
)


def test_circulant_is_a_subsampled_circulant_of_its_generator():
    A = CirculantGaussianMeasurements(n=12, m=5, seed=3)
    gen = torch.Generator().manual_seed(
        3
    )  # the same draws, in the same order, as the constructor
    g = torch.randn(12, generator=gen) / 5**0.5
    rows = torch.randperm(12, generator=gen)[:5].sort().values
    signs = torch.randint(0, 2, (12,), generator=gen).float() * 2 - 1
    expected = torch.stack(
        [
            torch.stack([g[(int(i) - j) % 12] * signs[j] for j in range(12)])
            for i in rows
        ]
    )
    torch.testing.assert_close(A.matrix(), expected, atol=1e-6, rtol=1e-5)
    x = torch.randn(3, 1, 3, 4)
    torch.testing.assert_close(
        A(x), x.reshape(3, -1) @ expected.T, atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        A(x[0].flatten()), expected @ x[0].flatten(), atol=1e-5, rtol=1e-5
    )


def test_adjoint_identity():
    A = CirculantGaussianMeasurements(n=1024, m=300, seed=0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 1024, generator=gen), torch.randn(2, 300, generator=gen)
    lhs, rhs = (A(x) * y).sum(), (x * A.adjoint(y)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-5)
    torch.testing.assert_close(A.adjoint(y[0]), A.adjoint(y)[0])
    torch.testing.assert_close(A.adjoint(y), y @ A.matrix(), atol=1e-5, rtol=1e-4)


def test_same_statistics_as_the_dense_gaussian():
    n, m = 256, 64
    dense = GaussianMeasurements(n, m, seed=0).A
    circ = CirculantGaussianMeasurements(n, m, seed=0).matrix()
    for A in (dense, circ):  # every entry N(0, 1/m)
        assert abs(float(A.mean())) < 0.2 / m**0.5
        assert float(A.var()) * m == pytest.approx(1.0, rel=0.25)
    # isometry in expectation: the mean of A^T A over seeds tends to the identity, as for the dense matrix
    gram = torch.stack(
        [CirculantGaussianMeasurements(n, m, seed=s).matrix() for s in range(200)]
    )
    mean_gram = torch.einsum("smi,smj->ij", gram, gram) / 200
    assert float(torch.diagonal(mean_gram).mean()) == pytest.approx(1.0, rel=0.02)
    off = mean_gram - torch.diag(torch.diagonal(mean_gram))
    assert float(off.abs().max()) < 0.15 and float(off.abs().mean()) < 0.03
    # on a fixed image with a large mean, ||Ax||^2 / ||x||^2 averages 1 and concentrates (the random signs
    # spread the mean; the dense matrix's spread is sqrt(2/m) = 0.18)
    x = torch.rand(n)
    ratios = np.array(
        [
            float(
                CirculantGaussianMeasurements(n, m, seed=s)(x).norm() ** 2
                / x.norm() ** 2
            )
            for s in range(400)
        ]
    )
    assert ratios.mean() == pytest.approx(1.0, abs=0.05) and ratios.std() < 0.3


def test_memory_is_linear_in_n():
    n, m = (
        256 * 256,
        256 * 128,
    )  # the full profile's largest case: a dense A would take 8.6 GB
    A = CirculantGaussianMeasurements(n, m, seed=0)
    stored = sum(t.numel() * t.element_size() for t in (A.rows, A.signs, A.spectrum))
    assert stored < 20 * n and 4 * m * n > 8e9
    y = A(torch.rand(1, 1, 256, 256))
    assert y.shape == (1, m) and A.adjoint(y).shape == (1, n)


def test_sparse_recovery_works_with_the_structured_operator():
    D = dct_matrix(16)
    z = torch.zeros(16, 16)
    z[0, 0], z[1, 2], z[3, 0] = 4.0, 1.0, -0.8
    x = (D.T @ z @ D).reshape(1, 1, 16, 16)
    x = (x - x.min()) / (x.max() - x.min())
    A = CirculantGaussianMeasurements(n=256, m=80, seed=0)
    assert psnr(dct_recover(A(x), A, (16, 16), lam=1e-2, iters=500), x) > 40


def test_sweep_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        compressive_sensing_sweep(
            torch.zeros(1, 1, 8, 8), [4], lambda: None, 1, mode="fourier"
        )
