"""Neural-collapse metrics and network rank summaries against known answers."""

import math

import pytest
import torch

from convbias.collapse import (
    class_means,
    collapse_metrics,
    equinorm_cv,
    etf_distance,
    nc1,
    simplex_etf_gram,
)
from convbias.lowrank import layer_ranks, spectra, top_alignment
from convbias.models.mlp import MLP
from convbias.rank import numerical_rank


def _simplex(C: int, p: int) -> torch.Tensor:
    """Columns of a C-class simplex ETF embedded in R^p."""
    M = torch.eye(C) - torch.ones(C, C) / C
    Q, _ = torch.linalg.qr(
        torch.randn(
            p, p, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
        )
    )
    return (M.double() @ Q[:C]) * math.sqrt(C / (C - 1))


def test_nc1_zero_when_features_are_class_means():
    means = _simplex(4, 6)
    labels = torch.arange(4).repeat(5)
    feats = means[labels]
    assert nc1(feats, labels).item() == pytest.approx(0.0, abs=1e-10)
    assert etf_distance(class_means(feats, labels)).item() == pytest.approx(
        0.0, abs=1e-6
    )
    assert equinorm_cv(means).item() == pytest.approx(0.0, abs=1e-6)


def test_nc1_known_value_two_classes_in_1d():
    # class means -1, +1 (S_B = 1); within-class deviations +-s (S_W = s^2): NC1 = s^2 / C
    s = 0.3
    feats = torch.tensor([[-1 - s], [-1 + s], [1 - s], [1 + s]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    assert nc1(feats, labels).item() == pytest.approx(s**2 / 2, rel=1e-5)


def test_nc1_batched_matches_loop():
    torch.manual_seed(0)
    feats = torch.randn(3, 30, 5)
    labels = torch.arange(3).repeat(10)
    batched = nc1(feats, labels)
    assert torch.allclose(batched, torch.stack([nc1(f, labels) for f in feats]))


def test_etf_gram_and_distance_of_non_simplex():
    G = simplex_etf_gram(3)
    assert torch.allclose(G.diagonal(), torch.ones(3)) and G[
        0, 1
    ].item() == pytest.approx(-0.5)
    orthogonal = torch.eye(3)  # centred orthogonal vectors are a simplex too
    assert etf_distance(orthogonal).item() == pytest.approx(0.0, abs=1e-6)
    collinear = torch.tensor([[1.0, 0], [2.0, 0], [3.0, 0]])
    assert etf_distance(collinear).item() > 0.3


def test_nc1_rejects_empty_class():
    with pytest.raises(ValueError):
        nc1(torch.randn(4, 2), torch.tensor([0, 0, 2, 2]))


def test_collapse_metrics_on_stacked_params():
    torch.manual_seed(0)
    model = MLP(5, [6], 3)
    X, y = torch.randn(30, 5), torch.arange(3).repeat(10)
    params = {
        n: torch.stack([p.detach(), 2 * p.detach()])
        for n, p in model.named_parameters()
    }
    out = collapse_metrics(model, X, y)(params)
    assert out["nc1"].shape == (2,)
    assert out["nc1"][0].item() == pytest.approx(
        nc1(model.features(X).detach(), y).item(), rel=1e-4
    )


def test_frobenius_rank_known_matrices():
    """Galanti et al.'s rank: the numerical rank relative to ||W||_F (here 1.12), not to s_1 = 1."""
    U, _ = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64))
    s = torch.tensor([1.0, 0.5, 0.1, 2e-3, 1.05e-3] + [0.0] * 15, dtype=torch.float64)
    W = U @ torch.diag(s) @ U.T
    fro = s.norm().item()
    expected = int((s > 1e-3 * fro).sum())
    assert numerical_rank(W, relative_to="frobenius").item() == expected == 4
    assert numerical_rank(W).item() == 5  # 1.05e-3 > 1e-3 * s_1 but < 1e-3 * ||W||_F
    assert layer_ranks({"w": W}, ["w"], stacked=False)["rank"].item() == 4
    assert numerical_rank(torch.zeros(3, 3), relative_to="frobenius").item() == 0
    with pytest.raises(ValueError, match="relative_to"):
        numerical_rank(W, relative_to="spectral")
    with pytest.raises(ValueError):
        numerical_rank(W, rtol=1.0, relative_to="frobenius")


def test_layer_ranks_and_spectra_stacked():
    a = torch.zeros(2, 4, 6)
    a[0, :2, :2] = torch.eye(2)  # rank 2, stable rank 2
    a[1] = torch.randn(4, 6)
    out = layer_ranks({"w": a}, ["w"])
    assert out["rank"][0].item() == 2 and out["srank"][0].item() == pytest.approx(2.0)
    assert out["rank/w"][1].item() == 4
    sp = spectra({"w": a}, ["w"], member=0)["w"]
    assert sp[0].item() == 1.0 and sp[2].item() == 0.0


def test_top_alignment():
    u = torch.tensor([1.0, 0.0, 0.0])
    W1 = torch.outer(u, torch.tensor([0.0, 1.0]))  # top left singular vector e1
    W2 = torch.outer(
        torch.tensor([1.0]), torch.tensor([0.6, 0.8, 0.0])
    )  # top right singular vector (.6,.8,0)
    assert top_alignment(W1, W2).item() == pytest.approx(0.6)
    with pytest.raises(ValueError):
        top_alignment(W1, torch.randn(2, 2))
