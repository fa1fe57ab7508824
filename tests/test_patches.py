"""The synthetic patch data model: shapes, where the signal lies, the noise, seeds."""
import pytest
import torch

from convbias.data.patches import PatchDataModel, signal_directions
from convbias.rank import numerical_rank


def test_directions_are_orthogonal_with_the_given_norm():
    mu = signal_directions(d=30, K=4, norm=2.5, seed=3)
    assert mu.shape == (2, 4, 30)
    D = mu.reshape(8, 30).double()
    torch.testing.assert_close(D @ D.T, 2.5**2 * torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0)


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
    a, b, c = model.sample(10, seed=7), model.sample(10, seed=7), model.sample(10, seed=8)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)
    torch.testing.assert_close(a.directions, c.directions)  # the model's directions are shared


def test_noise_level_only_rescales_the_noise():
    model = PatchDataModel(d=16, P=4, K=2, sigma_p=1.0)
    a, b = model.sample(10, seed=5), model.with_noise(2.0).sample(10, seed=5)
    mask = torch.ones(10, 4, dtype=torch.bool)
    mask[torch.arange(10), a.signal_patch] = False
    torch.testing.assert_close(2 * a.X[mask], b.X[mask])
    assert torch.equal(a.y, b.y)


@pytest.mark.parametrize("kw", [dict(P=1), dict(sigma_p=-0.1), dict(K=0), dict(d=5, K=3)])
def test_bad_parameters_raise(kw):
    with pytest.raises(ValueError):
        PatchDataModel(**kw)
