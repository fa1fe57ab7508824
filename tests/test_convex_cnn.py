"""Known answers for chapter 6's modules: arrangements, the convex program, spectral l1, capacity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from convbias import capacity as cap
from convbias import convex_cnn as cc
from convbias import spectral as sp
from convbias.efcn import to_fcn


# ----------------------------------------------------------------------------- arrangements
@pytest.mark.parametrize("N,h", [(7, 2), (9, 3), (6, 4)])
def test_enumerated_patterns_match_the_cell_count_formula_and_brute_force(N, h):
    A = np.random.default_rng(N * h).standard_normal((N, h))
    pats = cc.enumerate_patterns(A)
    assert len(pats) == cc.cell_count(N, h) == len({p.tobytes() for p in pats})
    # brute force: of all 2^N sign vectors, exactly these have a non-empty open cell
    from scipy.optimize import linprog

    brute = set()
    for bits in itertools.product((False, True), repeat=N):
        s = 2.0 * np.array(bits) - 1.0
        res = linprog(
            np.zeros(h),
            A_ub=-(s[:, None] * A),
            b_ub=-np.ones(N),
            bounds=[(None, None)] * h,
        )
        if res.status == 0:
            brute.add(np.array(bits).tobytes())
    assert brute == {p.tobytes() for p in pats}
    # random filters only ever find some of them
    assert {p.tobytes() for p in cc.sample_patterns(A, 2000, seed=1)} <= brute


def test_cell_count_known_values():
    assert cc.cell_count(5, 2) == 10  # 2N lines through the origin of the plane
    assert cc.cell_count(4, 3) == 2 * (1 + 3 + 3) == 14
    assert cc.cell_count(3, 3) == 8  # three generic planes: the 8 octants


def test_every_pattern_is_realised_by_a_filter_strictly_inside_its_cell():
    A = np.random.default_rng(0).standard_normal((8, 3))
    for p in cc.enumerate_patterns(A):
        s = 2.0 * p - 1.0
        # a feasibility LP: s_j a_j . u >= 1 has a solution iff the open cell is non-empty
        from scipy.optimize import linprog

        res = linprog(
            np.zeros(3),
            A_ub=-(s[:, None] * A),
            b_ub=-np.ones(len(A)),
            bounds=[(None, None)] * 3,
        )
        assert res.status == 0


def test_degenerate_rows_are_refused_with_a_clear_error():
    A = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="general position"):
        cc.enumerate_patterns(A)


def test_patches_1d_shapes_and_values():
    x = np.arange(12.0).reshape(1, 12)
    P = cc.patches_1d(x, 3, 3)
    assert P.shape == (4, 1, 3)
    np.testing.assert_array_equal(P[2, 0], [6, 7, 8])
    with pytest.raises(ValueError):
        cc.patches_1d(x, 13, 1)


# ----------------------------------------------------------------------------- convex program
@pytest.fixture(scope="module")
def tiny():
    problem = cc.teacher_problem(n=6, d=8, h=2, stride=2, noise=0.0, seed=0)
    pats = cc.enumerate_patterns(problem.stacked)
    return problem, pats


def test_recovered_cnn_attains_the_convex_objective(tiny):
    problem, pats = tiny
    for beta in (0.1, 1.0):
        sol = cc.solve_convex(problem, beta, pats)
        U, alpha = cc.recover_cnn(sol)
        rec = cc.cnn_objective(problem.X, problem.y, U, alpha, beta)
        assert abs(rec - sol.objective) <= 1e-6 * abs(sol.objective)


def test_convex_optimum_lower_bounds_random_and_trained_cnns(tiny):
    problem, pats = tiny
    beta = 1.0
    sol = cc.solve_convex(problem, beta, pats)
    rng = np.random.default_rng(0)
    for _ in range(
        200
    ):  # any CNN, any width, is feasible for the convex program after regrouping
        m = int(rng.integers(1, 6))
        U, a = rng.standard_normal((m, 2)), rng.standard_normal(m)
        assert (
            cc.cnn_objective(problem.X, problem.y, U, a, beta) >= sol.objective - 1e-7
        )
    gd = cc.train_gd(
        problem, beta, m=8, runs=8, steps=1500, lr=0.004, seed=1000, progress=False
    )
    assert gd.objectives.min() >= sol.objective * (1 - 1e-6)
    assert gd.objectives.min() <= sol.objective * (1 + 1e-3)


def test_gd_objective_is_the_regularised_loss(tiny):
    problem, _ = tiny
    gd = cc.train_gd(problem, 0.5, m=3, runs=2, steps=0, lr=0.01, progress=False)
    for e in range(2):
        want = cc.cnn_objective(problem.X, problem.y, gd.U[e], gd.alpha[e], 0.5)
        assert gd.objectives[e] == pytest.approx(want, rel=1e-12)


def test_sampled_arrangements_give_an_upper_bound(tiny):
    problem, pats = tiny
    full = cc.solve_convex(problem, 0.3, pats)
    few = cc.solve_convex(problem, 0.3, cc.sample_patterns(problem.stacked, 3, seed=0))
    assert few.objective >= full.objective - 1e-7


def test_active_filters_merges_parallel_copies():
    U = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1e-6, 1.0]])
    alpha = np.array([1.0, 0.5, -1.0, 1e-9])
    assert cc.active_filters(U, alpha) == 2
    assert (
        cc.active_filters(U, -np.array([1.0, -0.5, 1.0, 0.0])) == 3
    )  # same direction, other sign
    # copies each below the threshold still make one neuron when their sizes add up
    U2 = np.array([[1.0, 0.0]] + [[0.0, 1.0]] * 3)
    assert cc.active_filters(U2, np.array([1.0, 0.006, 0.006, 0.006])) == 2
    assert cc.active_filters(U2, np.array([1.0, 0.003, 0.003, 0.003])) == 1


# ----------------------------------------------------------------------------- spectral l1
def test_end_to_end_filter_is_the_circular_cnn():
    torch.manual_seed(0)
    d = 10
    w1, w2, x = (
        torch.randn(d, dtype=torch.float64),
        torch.randn(d, dtype=torch.float64),
        torch.randn(4, d, dtype=torch.float64),
    )
    h = sp.end_to_end_filter(w1, w2)
    direct = (sp.circular_conv(w1, x) * w2).sum(-1)
    torch.testing.assert_close(x @ h, direct)
    # circular_conv is the textbook sum
    y = sp.circular_conv(w1, x[0])
    want = torch.stack(
        [sum(w1[s] * x[0, (t - s) % d] for s in range(d)) for t in range(d)]
    )
    torch.testing.assert_close(y, want)


def test_weight_decay_of_a_balanced_factorisation_is_the_spectral_l1_with_its_dft_normalisation():
    rng = np.random.default_rng(1)
    d, lam = 16, 0.7
    h = rng.standard_normal(d)
    H = np.fft.fft(h)
    w1_hat = np.sqrt(np.abs(H))  # real, even: a real w1
    w2_hat = H / np.where(w1_hat > 0, w1_hat, 1)
    w1, w2 = np.fft.ifft(w1_hat).real, np.fft.ifft(w2_hat).real
    h_back = sp.end_to_end_filter(torch.tensor(w1), torch.tensor(w2)).numpy()
    np.testing.assert_allclose(h_back, h, atol=1e-10)
    penalty = lam / 2 * (w1 @ w1 + w2 @ w2)
    assert penalty == pytest.approx(lam / math.sqrt(d) * sp.spectral_l1(h), rel=1e-10)
    assert penalty == pytest.approx(lam / d * np.abs(H).sum(), rel=1e-10)
    # any other factorisation pays at least as much
    for _ in range(20):
        g = rng.standard_normal(d)
        G = np.fft.fft(g)
        # w1 with DFT G (nonzero everywhere a.s.), w2 with DFT H / conj(G)
        w2b = np.fft.ifft(H / np.conj(G)).real
        assert lam / 2 * (g @ g + w2b @ w2b) >= penalty - 1e-9


def test_dft_matrices_are_the_fft():
    d = 8
    C, S = sp.dft_matrices(d)
    h = np.random.default_rng(0).standard_normal(d)
    np.testing.assert_allclose(C @ h + 1j * (S @ h), np.fft.fft(h), atol=1e-12)


def test_spectral_support_of_a_cosine():
    d = 32
    h = np.cos(2 * np.pi * 3 * np.arange(d) / d)
    assert sp.spectral_support(h, 0.05) == 2


def test_gd_on_the_circular_cnn_solves_the_spectral_l1_program():
    r = sp.spectral_experiment(
        n=12, d=16, freqs=(2,), lam=0.5, steps=1200, lr=1.0, seed=0
    )
    assert abs(r.cnn_gap) < 1e-5
    assert abs(r.dense_gap) < 1e-5
    np.testing.assert_allclose(
        sp.dft_magnitudes(r.cnn["h"]), sp.dft_magnitudes(r.convex_h), atol=1e-3
    )
    assert r.support(r.cnn["h"]) < r.support(r.dense["h"])


# ----------------------------------------------------------------------------- capacity
@pytest.mark.parametrize(
    "shape,c_in,c_out,k", [((6, 6), 1, 3, 3), ((5, 7), 2, 4, 3), ((8, 8), 3, 2, 5)]
)
def test_dense_norm_of_a_circular_conv_is_sqrt_positions_times_the_kernel_norm(
    shape, c_in, c_out, k
):
    torch.manual_seed(0)
    conv = nn.Conv2d(
        c_in, c_out, k, padding=k // 2, padding_mode="circular", bias=False
    ).double()
    dense = to_fcn(nn.Sequential(conv), (c_in, *shape))
    W = [m for m in dense if isinstance(m, nn.Linear)][0].weight.detach()
    want = math.sqrt(shape[0] * shape[1]) * float(conv.weight.detach().norm())
    assert float(W.norm()) == pytest.approx(want, rel=1e-12)


def test_zero_padding_breaks_the_exact_sqrt_positions_identity():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False).double()
    W = [m for m in to_fcn(nn.Sequential(conv), (1, 6, 6)) if isinstance(m, nn.Linear)][
        0
    ].weight.detach()
    assert float(W.norm()) < 6 * float(conv.weight.detach().norm()) * 0.99


def test_capacity_counts_and_bound_formula():
    torch.manual_seed(0)
    model = cap.circular_cnn((1, 6, 6), channels=3, depth=2, n_classes=4)
    X = torch.randn(10, 1, 6, 6, dtype=torch.float64)
    c = cap.capacity(model, (1, 6, 6), X)
    np.testing.assert_array_equal(c.positions, [36, 36, 1])
    assert c.predicted_ratio == 36.0
    assert c.rho_dense / c.rho_kernel == pytest.approx(36.0, rel=1e-9)
    B = float(X.flatten(1).norm(dim=1).max())  # float64, as capacity() computes it
    assert c.bound_kernel == pytest.approx(
        B * (math.sqrt(6 * math.log(2)) + 1) * c.rho_kernel / math.sqrt(10), rel=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 7.0])
def test_rho_ratio_is_8_cubed_for_three_circular_layers_on_8x8_maps(seed, scale):
    """An identity, not a finding: any weights (any seed, rescaled as training would)."""
    torch.manual_seed(seed)
    model = cap.circular_cnn((1, 8, 8), channels=4, depth=3, n_classes=10)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    c = cap.capacity(model, (1, 8, 8), torch.randn(5, 1, 8, 8))
    assert c.predicted_ratio == 8.0**3
    assert c.rho_dense / c.rho_kernel == pytest.approx(8.0**3, rel=1e-9)
    assert c.bound_dense / c.bound_kernel == pytest.approx(8.0**3, rel=1e-9)


def test_margins_are_the_correct_logit_minus_the_largest_other():
    model = nn.Sequential(nn.Identity())
    out = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0], [1.0, 1.0, 4.0]])
    y = torch.tensor([0, 0, 2])
    np.testing.assert_allclose(cap.margins(model, out, y), [1.0, -5.0, 3.0])


def test_margin_normalized_bound_divides_by_gamma_and_is_infinite_without_a_margin():
    torch.manual_seed(0)
    model = cap.circular_cnn((1, 6, 6), channels=3, depth=2, n_classes=4)
    c = cap.capacity(model, (1, 6, 6), torch.randn(10, 1, 6, 6))
    fit = cap.LabelFit("true", c, 2.5, 0.1, 1.0, 0.9)
    assert fit.bound_kernel == pytest.approx(c.bound_kernel / 2.5)
    assert fit.bound_dense == pytest.approx(c.bound_dense / 2.5)
    assert fit.gap == pytest.approx(0.1)
    assert cap.LabelFit("random", c, 0.0, 0.1, 0.5, 0.1).bound_kernel == math.inf
    assert fit.kernel_bound_over_gap == pytest.approx(c.bound_kernel / 2.5 / 0.1)
    no_gap = cap.LabelFit("true", c, 2.5, 0.1, 0.9, 0.9)
    assert no_gap.kernel_bound_over_gap == math.inf
    assert cap.LabelsResult(no_gap, fit, 10, 0).gap_ratio == math.inf
    assert cap.LabelsResult(fit, fit, 10, 0).bound_ratio == pytest.approx(1.0)


def test_random_labels_depend_only_on_the_seed():
    a, b = cap.random_labels(500, 10, 3), cap.random_labels(500, 10, 3)
    assert torch.equal(a, b) and not torch.equal(a, cap.random_labels(500, 10, 4))
    assert set(a.tolist()) == set(range(10))
