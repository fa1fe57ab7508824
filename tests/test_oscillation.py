"""Known answers for gradient oscillation and sharpness (convbias.oscillation, convbias.sharpness)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convbias.models.layered import layered_cnn, layered_mlp
from convbias.oscillation import (
    adjacent_cosines,
    layer_index,
    layer_sums,
    oscillating_part,
    oscillation_share,
    train_recording,
)
from convbias.sharpness import (
    flat_loss,
    hvp_operator,
    lanczos,
    power_iteration,
    sharpness,
)


class Quadratic(nn.Module):
    """``f(x) = w`` with loss ``mean((w - 0)^2)``: the MSE loss is ``(1/d) sum w_i^2``, Hessian ``(2/d) I``.

    Scaling the coordinates by ``a`` gives ``(1/d) sum a_i^2 w_i^2`` with Hessian ``diag(2 a_i^2 / d)``.
    """

    def __init__(self, scales):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(scales, dtype=torch.float32))
        self.w = nn.Parameter(torch.ones(len(scales)))

    def forward(self, x):
        return (self.a * self.w).expand(len(x), -1)


def quadratic(scales):
    model = Quadratic(scales)
    X, y = torch.zeros(1, 1), torch.zeros(1, len(scales))
    return model, X, y


def test_lanczos_and_power_iteration_find_the_top_eigenvalue_of_a_known_matrix():
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    evals = torch.linspace(-1.0, 5.0, 30, dtype=torch.float64)
    A = Q @ torch.diag(evals) @ Q.T
    ritz, vec = lanczos(lambda v: A @ v, 30, k=30, generator=gen, dtype=torch.float64)
    assert float(ritz[0]) == pytest.approx(5.0, abs=1e-8)
    assert abs(float(vec @ Q[:, -1])) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(
        np.sort(ritz.numpy()), evals.numpy(), atol=1e-8
    )  # k = dim: the whole spectrum
    lam, v = power_iteration(
        lambda v: A @ v, 30, iters=2000, tol=1e-14, generator=gen, dtype=torch.float64
    )
    assert lam == pytest.approx(5.0, rel=1e-6)


def test_sharpness_of_a_quadratic_is_its_top_hessian_eigenvalue():
    model, X, y = quadratic([1.0, 2.0, 3.0])
    lam, vec = sharpness(model, X, y, loss="mse", k=3)
    assert lam == pytest.approx(2 * 9.0 / 3, rel=1e-5)  # diag(2 a^2 / d), top a = 3
    assert abs(float(vec[2])) == pytest.approx(1.0, abs=1e-5)


def test_hessian_vector_products_match_the_explicit_hessian_of_a_small_net():
    torch.manual_seed(0)
    model = layered_mlp(4, [3], 2)
    X, y = torch.randn(7, 4), torch.randint(0, 2, (7,))
    f, theta = flat_loss(model, X, y, "mse")
    H = torch.func.hessian(f)(theta)  # explicit, only in the test
    v = torch.randn(theta.numel())
    assert torch.allclose(hvp_operator(f, theta)(v), H @ v, atol=1e-5)
    lam, _ = sharpness(model, X, y, "mse", k=theta.numel())
    assert lam == pytest.approx(float(torch.linalg.eigvalsh(H.double())[-1]), rel=1e-4)


def test_cross_entropy_hvp_matches_the_explicit_hessian():
    torch.manual_seed(1)
    model = layered_mlp(3, [4], 3)
    X, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    f, theta = flat_loss(model, X, y, "ce")
    H = torch.func.hessian(f)(theta)
    v = torch.randn(theta.numel())
    assert torch.allclose(hvp_operator(f, theta)(v), H @ v, atol=1e-5)


def test_gd_beyond_two_over_eta_oscillates_with_cosine_minus_one():
    # Hessian diag(2 a^2 / d) = diag(2/3, 8/3, 6); lr 0.34 > 2/6: the top coordinate flips and grows,
    # the others shrink without flipping, so the gradient turns to the top direction and c -> -1
    model, X, y = quadratic([1.0, 2.0, 3.0])
    tr = train_recording(
        model,
        X,
        y,
        lr=0.34,
        steps=60,
        sharpness_every=20,
        lanczos_steps=3,
        progress=False,
    )
    assert np.allclose(tr.cos[-10:], -1.0, atol=1e-4)
    assert np.allclose(tr.sharp, 6.0, rtol=1e-4)
    assert tr.sharpness_ratio() == pytest.approx(6.0 / (2 / 0.34), rel=1e-4)
    # below 2/eta (and below 1/eta for every direction) the gradient never reverses
    model, X, y = quadratic([1.0, 2.0, 3.0])
    tr = train_recording(
        model,
        X,
        y,
        lr=0.1,
        steps=30,
        sharpness_every=10,
        lanczos_steps=3,
        progress=False,
    )
    assert (tr.cos > 0.9).all() and tr.osc_share_total == 0.0
    assert tr.rises() == 0.0 and tr.loss_drop() > 1


def test_decomposition_of_a_known_two_step_sequence():
    # one layer, g(0) = (3, 4), g(1) = (-3, 0): g1_hat = (-1, 0), <g0, g1_hat> = -3, so
    # o(0) = -3 * g1_hat = (3, 0) (what the next step undoes), d(0) = (0, 4); the split is
    # orthogonal and ||o||^2 / ||g||^2 = 9 / 25
    g0, g1 = torch.tensor([3.0, 4.0]), torch.tensor([-3.0, 0.0])
    index = torch.zeros(2, dtype=torch.long)
    o = oscillating_part(g0, g1, index, 1)
    assert torch.allclose(o, torch.tensor([3.0, 0.0]))
    assert float(torch.dot(o, g0 - o)) == pytest.approx(0.0)
    dots, sq = np.array([[float(g0 @ g1)]]), np.array([[25.0], [9.0]])
    assert oscillation_share(dots, sq)[0] == pytest.approx(9 / 25)
    # a step followed by one that does not point back has no oscillating part
    assert torch.equal(oscillating_part(g0, -g1, index, 1), torch.zeros(2))
    assert oscillation_share(-dots, sq)[0] == 0.0


def test_per_layer_cosines_equal_a_naive_loop_over_modules():
    torch.manual_seed(0)
    model = layered_cnn(1, 8, [3, 4], 5)
    names, index = layer_index(model)
    assert names == ["conv1", "conv2", "out"]
    G = torch.randn(6, index.numel())
    fast = adjacent_cosines(G, index, len(names))
    sizes = [p.numel() for p in model.parameters()]
    owners = [n.rsplit(".", 1)[0] for n, _ in model.named_parameters()]
    for t in range(5):
        chunks = torch.split(G[t], sizes), torch.split(G[t + 1], sizes)
        for k, name in enumerate(names):
            a = torch.cat([c for c, o in zip(chunks[0], owners) if o == name])
            b = torch.cat([c for c, o in zip(chunks[1], owners) if o == name])
            assert float(fast[t, k]) == pytest.approx(
                float(a @ b / (a.norm() * b.norm())), abs=1e-5
            )
    assert torch.allclose(layer_sums(G, index, 3).sum(1), G.sum(1), atol=1e-4)


def test_recorded_layer_statistics_match_stored_gradients():
    torch.manual_seed(0)
    model = layered_mlp(6, [5, 4], 3)
    X, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    f, theta = flat_loss(model, X, y, "mse")
    names, index = layer_index(model)
    G, th = [], theta.clone()
    for _ in range(8):  # the same GD run by hand, storing every gradient
        g = torch.func.grad(f)(th)
        G.append(g)
        th = th - 0.5 * g
    tr = train_recording(
        model,
        X,
        y,
        lr=0.5,
        steps=8,
        sharpness_every=100,
        lanczos_steps=2,
        progress=False,
    )
    assert np.allclose(
        tr.cos, adjacent_cosines(torch.stack(G), index, 3).double().numpy(), atol=1e-5
    )
    assert np.allclose(tr.sq[-1], tr.module_sq_last, rtol=1e-5)
    assert torch.allclose(
        flat_loss(model, X, y, "mse")[1], th, atol=1e-5
    )  # the model holds the final weights


def test_train_recording_refuses_bad_input():
    model, X, y = quadratic([1.0])
    with pytest.raises(ValueError, match="optimizer"):
        train_recording(
            model, X, y, lr=0.1, steps=5, optimizer="rmsprop", progress=False
        )
    with pytest.raises(ValueError, match="lr > 0"):
        train_recording(model, X, y, lr=0.0, steps=5, progress=False)
    with pytest.raises(FloatingPointError, match="diverged"):
        train_recording(*quadratic([3.0, 3.0, 3.0]), lr=5.0, steps=400, progress=False)


def test_layered_models_name_their_layers_input_first_and_refuse_bad_shapes():
    mlp = layered_mlp(64, [8, 4], 10)
    assert layer_index(mlp)[0] == ["fc1", "fc2", "out"]
    assert mlp(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    cnn = layered_cnn(1, 8, [2, 3], 10)
    assert cnn(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    # parameters: conv1 1*2*9+2, conv2 2*3*9+3, out 3*4*4*10+10
    assert layer_sums(
        torch.ones(sum(p.numel() for p in cnn.parameters())), layer_index(cnn)[1], 3
    ).tolist() == [20.0, 57.0, 490.0]
    with pytest.raises(ValueError, match="pool"):
        layered_cnn(1, 7, [2], 10, pool=2)
    with pytest.raises(ValueError, match="activation"):
        layered_mlp(4, [3], 2, activation="sigmoid")
