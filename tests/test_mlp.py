"""MLP / GalantiCNN shapes, parameter counts, options, and the mixture generators."""

import pytest
import torch

from convbias.data.mixtures import gaussian_mixture, separable
from convbias.lowrank import hidden_weight_names
from convbias.models.galanti_cnn import GalantiCNN
from convbias.models.mlp import MLP


def test_mlp_parameter_count_and_shapes():
    m = MLP(10, [7, 5], 3)
    # (10*7 + 7) + (7*5 + 5) + (5*3 + 3)
    assert sum(p.numel() for p in m.parameters()) == 77 + 40 + 18
    assert m(torch.randn(4, 10)).shape == (4, 3)
    assert m(torch.randn(4, 10), return_features=True).shape == (4, 5)
    assert hidden_weight_names(m) == ["body.1.weight", "body.3.weight"]


def test_mlp_bias_free_is_positively_homogeneous():
    torch.manual_seed(0)
    m = MLP(6, [8, 8], 1, bias=False)
    assert all(p.ndim == 2 for p in m.parameters())
    x = torch.randn(5, 6)
    # three layers: f(c x) = c f(x) and scaling every weight by a scales f by a^3
    assert torch.allclose(m(3.0 * x), 3.0 * m(x), atol=1e-5)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    y2 = m(x)
    with torch.no_grad():
        for p in m.parameters():
            p.div_(2.0)
    assert torch.allclose(y2, 8.0 * m(x), atol=1e-5)


def test_mlp_small_init_scales_weights():
    torch.manual_seed(1)
    a = MLP(6, [8], 2, init_scale=1.0)
    torch.manual_seed(1)
    b = MLP(6, [8], 2, init_scale=0.1)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        factor = 0.1 if pa.ndim >= 2 else 1.0
        assert torch.allclose(pb, factor * pa), na


def test_mlp_batchnorm_has_no_running_stats():
    m = MLP(4, [6], 2, batchnorm=True).eval()
    assert len(list(m.buffers())) == 0
    h = m.body(torch.randn(32, 4) * 5 + 3)
    pre = m.body[1](torch.randn(32, 4) * 5 + 3)
    assert torch.allclose(
        m.body[2](pre).mean(0), torch.zeros(6), atol=1e-5
    )  # batch statistics in eval too
    assert h.shape == (32, 6)


def test_mlp_rejects_bad_sizes():
    with pytest.raises(ValueError):
        MLP(0, [4], 2)
    with pytest.raises(ValueError):
        MLP(4, [4], 2, init_scale=0.0)


def test_galanti_cnn_shapes_and_counts():
    m = GalantiCNN(1, [4, 8], 10)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert m.features(torch.randn(2, 1, 28, 28)).shape == (2, 8)
    names = hidden_weight_names(m)
    assert [tuple(dict(m.named_parameters())[n].shape) for n in names] == [
        (4, 1, 3, 3),
        (8, 4, 3, 3),
    ]
    # conv (no bias with BN) + BN affine, twice, then the head
    assert sum(p.numel() for p in m.parameters()) == (36 + 8) + (288 + 16) + (
        8 * 10 + 10
    )


def test_gaussian_mixture_is_balanced_and_seeded():
    a = gaussian_mixture(100, 50, d=5, n_classes=4, seed=3)
    b = gaussian_mixture(100, 50, d=5, n_classes=4, seed=3)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert (
        a.X_train.shape == (100, 5) and torch.bincount(a.y_train).tolist() == [25] * 4
    )
    # noise-free points sit exactly on their class means
    c = gaussian_mixture(40, 8, d=5, n_classes=4, noise=0.0, seed=0)
    for k in range(4):
        pts = c.X_train[c.y_train == k]
        assert torch.allclose(pts, pts[:1].expand_as(pts))


def test_separable_has_margin():
    s = separable(200, 100, d=7, margin=0.5, seed=0)
    assert set(s.y_train.tolist()) == {-1.0, 1.0}
    # a linear separator with the promised margin exists: least squares finds a perfect one here
    w = torch.linalg.lstsq(s.X_train, s.y_train[:, None]).solution
    assert (torch.sign(s.X_train @ w).squeeze() == s.y_train).float().mean() > 0.95
    with pytest.raises(ValueError):
        separable(10, 10, d=3, margin=-1.0)


def test_separable_class_margins():
    same = separable(50, 10, d=4, margin=0.5, seed=3)
    explicit = separable(50, 10, d=4, margin=0.5, negative_margin=0.5, seed=3)
    assert torch.equal(same.X_train, explicit.X_train)
    s = separable(4000, 10, d=5, margin=0.5, negative_margin=10.0, seed=0)
    pos, neg = s.X_train[s.y_train > 0].mean(0), s.X_train[s.y_train < 0].mean(0)
    # class means sit at (margin + E|z|) along w*: 0.5 + 0.80 and 10 + 0.80
    assert pos.norm().item() == pytest.approx(1.30, abs=0.1)
    assert neg.norm().item() == pytest.approx(10.80, abs=0.1)
    with pytest.raises(ValueError):
        separable(10, 10, d=3, margin=0.5, negative_margin=-1.0)
