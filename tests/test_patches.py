"""The synthetic patch data model: shapes, where the signal lies, the noise, seeds."""

import pytest
import torch

from convbias.data.patches import PatchDataModel, signal_directions
from convbias.rank import numerical_rank


def test_directions_are_orthogonal_with_the_given_norm():
    mu = signal_directions(d=30, K=4, norm=2.5, seed=3)
    assert mu.shape == (2, 4, 30)
    D = mu.reshape(8, 30).double()
    torch.testing.assert_close(
        D @ D.T, 2.5**2 * torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_shapes_and_labels():
    data = PatchDataModel(d=20, P=5, K=2, sigma_p=0.7).sample(64, seed=1)
    assert data.X.shape == (64, 5, 20) and data.y.shape == (64,)
    assert set(data.y.tolist()) == {1.0, -1.0}
    assert data.patch_matrix().shape == (64 * 5, 20)
    assert data.intrinsic_dim == 4


def test_signal_patch_is_the_class_direction():
    model = PatchDataModel(d=20, P=5, K=2, sigma_p=0.7, mu_norm=3.0)
    data = model.sample(50, seed=2)
    mu = model.directions()
    cls = (data.y < 0).long()
    rows = data.X[torch.arange(50), data.signal_patch]
    torch.testing.assert_close(rows, mu[cls, data.signal_k])


def test_noise_is_orthogonal_to_the_signal_with_variance_sigma_squared():
    model = PatchDataModel(d=40, P=6, K=3, sigma_p=1.5)
    data = model.sample(400, seed=0)
    U = model.signal_basis()
    noise_mask = torch.ones(400, 6, dtype=torch.bool)
    noise_mask[torch.arange(400), data.signal_patch] = False
    xi = data.X[noise_mask]
    assert xi.shape == (400 * 5, 40)
    assert (xi @ U).abs().max() < 1e-4  # no component in the signal span
    # E ||xi||^2 = sigma_p^2 (d - 2K) = 2.25 * 34
    mean_sq = xi.pow(2).sum(1).mean().item()
    assert abs(mean_sq / (2.25 * 34) - 1) < 0.03


def test_clean_data_has_rank_2k_and_the_exact_stable_rank():
    model = PatchDataModel(d=30, P=3, K=3, sigma_p=0.0)
    data = model.sample(120, seed=4)
    assert int(numerical_rank(data.patch_matrix())) == 6
    # all clean rows have norm ||mu|| and the 2K directions are orthogonal, so
    # srank = sum_k c_k ||mu||^2 / max_k c_k ||mu||^2 = n / max_k c_k
    codes = (data.y < 0).long() * 3 + data.signal_k
    counts = torch.bincount(codes, minlength=6)
    assert data.stable_rank() == pytest.approx(120 / counts.max().item(), rel=1e-6)


def test_same_seed_same_data_other_seed_other_data():
    model = PatchDataModel(d=16, P=4, K=2, sigma_p=1.0)
    a, b, c = (
        model.sample(10, seed=7),
        model.sample(10, seed=7),
        model.sample(10, seed=8),
    )
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)
    torch.testing.assert_close(
        a.directions, c.directions
    )  # the model's directions are shared


def test_noise_level_only_rescales_the_noise():
    model = PatchDataModel(d=16, P=4, K=2, sigma_p=1.0)
    a, b = model.sample(10, seed=5), model.with_noise(2.0).sample(10, seed=5)
    mask = torch.ones(10, 4, dtype=torch.bool)
    mask[torch.arange(10), a.signal_patch] = False
    torch.testing.assert_close(2 * a.X[mask], b.X[mask])
    assert torch.equal(a.y, b.y)


@pytest.mark.parametrize(
    "kw", [dict(P=1), dict(sigma_p=-0.1), dict(K=0), dict(d=5, K=3)]
)
def test_bad_parameters_raise(kw):
    with pytest.raises(ValueError):
        PatchDataModel(**kw)


# ----------------------------------------------------------------------------- background noise on images
from convbias.data.background import (  # noqa: E402
    add_background_noise,
    background_mask,
    embed_in_noisy_canvas,
    patch_matrix,
    patch_stable_rank,
)


def _digit_like():
    X = torch.zeros(3, 1, 8, 8)
    X[:, :, 2:6, 3:5] = 0.9  # a bar: the "digit"
    return X


def test_background_noise_leaves_the_digit_untouched():
    X = _digit_like()
    noisy = add_background_noise(X, sigma=0.5, seed=0)
    fg = ~background_mask(X)
    assert fg.sum() == 3 * 8
    assert torch.equal(noisy[fg], X[fg])
    bg = noisy[~fg]
    assert bg.std().item() == pytest.approx(0.5, rel=0.2) and bg.abs().min() > 0
    assert torch.equal(noisy, add_background_noise(X, sigma=0.5, seed=0))
    assert torch.equal(add_background_noise(X, 0.0), X)


def test_patch_matrix_shape_and_content():
    X = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    A = patch_matrix(X, kernel=3)
    assert A.shape == (2 * 4, 9)
    torch.testing.assert_close(A[0], X[0, 0, :3, :3].reshape(-1))
    torch.testing.assert_close(A[-1], X[1, 0, 1:, 1:].reshape(-1))


def test_patch_stable_rank_known_answers():
    const = torch.ones(5, 1, 6, 6)  # every patch is the same vector: rank one
    assert patch_stable_rank(const, kernel=3) == pytest.approx(1.0)
    # iid Gaussian images: the patch matrix is nearly isotropic, srank close to k^2 = 9
    noise = torch.randn(200, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    assert 7.0 < patch_stable_rank(noise, kernel=3, chunk=37) <= 9.0
    # chunking does not change the value
    assert patch_stable_rank(noise, 3, chunk=7) == pytest.approx(
        patch_stable_rank(noise, 3, chunk=1000)
    )


def test_noisy_canvas_keeps_the_image_in_the_centre():
    X = torch.rand(2, 3, 5, 5)
    out = embed_in_noisy_canvas(X, pad=2, sigma=1.0, seed=1)
    assert out.shape == (2, 3, 9, 9)
    assert torch.equal(out[:, :, 2:7, 2:7], X)
    assert out[:, :, :2].std().item() == pytest.approx(1.0, rel=0.3)
