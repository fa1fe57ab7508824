"""Weight decay on a two-layer linear circular CNN is an l1 penalty on the DFT of its filter.

Signals ``x in R^d``; the network ``f(x) = <w2, w1 (*) x>`` (circular convolution
``(w1 (*) x)_t = sum_s w1_s x_{t-s mod d}``) computes ``<h, x>`` with the end-to-end filter
``h_u = sum_s w1_s w2_{u+s}``, whose DFT (``F_{fu} = exp(-2 pi i f u / d)``, unnormalised)
is ``h^ = conj(w1^) w2^``. Parseval (``||F w||^2 = d ||w||^2``) and ``|a|^2 + |b|^2 >= 2|ab|``
give, with equality at a balanced factorisation,

.. math:: \\min_{w_1 \\star w_2 = h} \\tfrac{\\lambda}{2}(\\|w_1\\|^2 + \\|w_2\\|^2)
          = \\tfrac{\\lambda}{d}\\|F h\\|_1 = \\tfrac{\\lambda}{\\sqrt d}\\|F_u h\\|_1,

``F_u = F / sqrt(d)`` the unitary DFT. Training the CNN on
``1/2 ||X h - y||^2 + lambda/2 (||w1||^2 + ||w2||^2)`` is therefore the convex program
``1/2 ||X h - y||^2 + lambda/sqrt(d) ||F_u h||_1``: sparse in frequency. The same weight
decay on a two-layer *dense* linear network ``f(x) = a^T W x`` gives ``lambda ||h||_2``
(rotation invariant, no preferred basis): no spectral sparsity. Used by chapter 6.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .checks import Check, at_least, at_most
from .config import cap_steps, recording, require_extra, step_starts


def dft_matrices(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts ``(C, S)`` of the unnormalised DFT: ``F h = C h + i S h``."""
    f = np.arange(d)[:, None] * np.arange(d)[None, :]
    return np.cos(2 * np.pi * f / d), -np.sin(2 * np.pi * f / d)


def end_to_end_filter(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """``h`` with ``h^ = conj(w1^) w2^`` (last dimension is the signal), i.e. ``<h, x> = <w2, w1 (*) x>``."""
    d = w1.shape[-1]
    return torch.fft.irfft(torch.conj(torch.fft.rfft(w1)) * torch.fft.rfft(w2), n=d)


def circular_conv(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(w (*) x)_t = sum_s w_s x_{t-s mod d}``, computed directly (no FFT), for tests."""
    d = x.shape[-1]
    idx = (torch.arange(d)[:, None] - torch.arange(d)[None, :]) % d  # [t, s] -> t - s
    return (x[..., idx] * w).sum(-1)


def spectral_l1(h: np.ndarray) -> float:
    """``||F_u h||_1`` with the unitary DFT (sum over all ``d`` frequencies of ``|h^_f| / sqrt(d)``)."""
    h = np.asarray(h, dtype=float)
    return float(np.abs(np.fft.fft(h)).sum() / math.sqrt(h.shape[-1]))


def dft_magnitudes(h: np.ndarray) -> np.ndarray:
    """``|F_u h|``: magnitudes of the unitary DFT of ``h``."""
    h = np.asarray(h, dtype=float)
    return np.abs(np.fft.fft(h)) / math.sqrt(h.shape[-1])


def spectral_support(h: np.ndarray, threshold: float = 1e-2) -> int:
    """Frequencies ``f`` (of ``d``) with ``|h^_f| >= threshold * max_f |h^_f|``."""
    mag = dft_magnitudes(h)
    return int(np.sum(mag >= threshold * mag.max())) if mag.max() > 0 else 0


@dataclass
class SpectralProblem:
    X: np.ndarray  # (n, d)
    y: np.ndarray  # (n,)
    h_true: np.ndarray  # (d,)


def frequency_sparse_problem(
    n: int = 20,
    d: int = 32,
    freqs: tuple[int, ...] = (1, 3),
    noise: float = 0.05,
    seed: int = 0,
) -> SpectralProblem:
    """Gaussian signals and ``y = <h*, x> + noise`` with ``h*`` a sum of cosines at ``freqs``
    (random phases): its DFT lives on ``2 len(freqs)`` of the ``d`` frequencies."""
    rng = np.random.default_rng(seed)
    t = np.arange(d)
    h = sum(np.cos(2 * np.pi * f * t / d + rng.uniform(0, 2 * np.pi)) for f in freqs)
    h = h / np.linalg.norm(h)
    X = rng.standard_normal((n, d))
    y = X @ h
    y = y + noise * np.std(y) * rng.standard_normal(n)
    return SpectralProblem(X, y, h)


def solve_spectral_program(
    problem: SpectralProblem,
    lam: float,
    regularizer: str = "spectral_l1",
    solver: str = "CLARABEL",
) -> tuple[np.ndarray, float]:
    """Solve ``1/2 ||X h - y||^2 + R(h)``; returns ``(h, objective)``.

    ``regularizer``: ``"spectral_l1"`` (``lam/sqrt(d) ||F_u h||_1``, the circular CNN's),
    ``"l2_norm"`` (``lam ||h||_2``, the dense network's), or ``"spectral_l1_unitary_scale"``
    (``lam ||F_u h||_1``, a wrong DFT normalisation kept for tests).
    """
    cp = require_extra("cvxpy", "convex", "the convex program of a linear CNN")
    n, d = problem.X.shape
    C, S = dft_matrices(d)
    h = cp.Variable(d)
    fit = 0.5 * cp.sum_squares(problem.X @ h - problem.y)
    mags = cp.norm(cp.vstack([C @ h, S @ h]), 2, axis=0) / math.sqrt(d)  # |F_u h|
    if regularizer == "spectral_l1":
        reg = lam / math.sqrt(d) * cp.sum(mags)
    elif regularizer == "spectral_l1_unitary_scale":
        reg = lam * cp.sum(mags)
    elif regularizer == "l2_norm":
        reg = lam * cp.norm(h, 2)
    else:
        raise ValueError(f"unknown regularizer {regularizer!r}")
    prob = cp.Problem(cp.Minimize(fit + reg))
    prob.solve(solver=solver)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"spectral program not solved: status {prob.status}")
    return np.asarray(h.value), float(prob.value)


def train_linear(
    problem: SpectralProblem,
    lam: float,
    kind: str,
    steps: int,
    lr: float,
    momentum: float = 0.9,
    init_scale: float = 0.1,
    weight_decay: bool = True,
    seed: int = 0,
) -> dict:
    """Full-batch GD (float64, heavy ball, cosine-decayed step ``lr / ||X||_2^2``) on a
    two-layer linear network.

    ``kind="circular"``: ``f(x) = <w2, w1 (*) x>`` (``2d`` weights); ``kind="dense"``:
    ``f(x) = a^T W x`` (``d^2 + d`` weights). Objective
    ``1/2 ||X h - y||^2 + lam/2 ||theta||^2`` (without the penalty in training when
    ``weight_decay=False``; the returned ``objective`` includes it). Returns ``h``,
    ``objective`` and the objective curve.
    """
    X = torch.as_tensor(problem.X, dtype=torch.float64)
    y = torch.as_tensor(problem.y, dtype=torch.float64)
    n, d = X.shape
    lr = lr / float(torch.linalg.matrix_norm(X, 2)) ** 2  # in units of 1 / ||X||_2^2
    gen = torch.Generator().manual_seed(seed)
    if kind == "circular":
        params = [
            init_scale
            * torch.randn(d, generator=gen, dtype=torch.float64)
            / math.sqrt(d)
            for _ in range(2)
        ]

        def filt(p):
            return end_to_end_filter(p[0], p[1])
    elif kind == "dense":
        params = [
            init_scale
            * torch.randn(d, d, generator=gen, dtype=torch.float64)
            / math.sqrt(d),
            init_scale
            * torch.randn(d, generator=gen, dtype=torch.float64)
            / math.sqrt(d),
        ]

        def filt(p):
            return p[0].T @ p[1]
    else:
        raise ValueError(f"kind must be 'circular' or 'dense', got {kind!r}")
    for p in params:
        p.requires_grad_(True)
    bufs = [torch.zeros_like(p) for p in params]
    coef = lam if weight_decay else 0.0

    def objective(p, c):
        r = X @ filt(p) - y
        return 0.5 * r @ r + 0.5 * c * sum((q**2).sum() for q in p)

    curve = []
    t0 = time.perf_counter()
    steps = cap_steps(steps, 50)  # a smoke run stops after a few steps
    for step in range(steps):
        step_starts()
        obj = objective(params, coef)
        if step % 50 == 0:
            with torch.no_grad(), recording():
                curve.append(float(objective(params, lam)))
        grads = torch.autograd.grad(obj, params)
        step_lr = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        with torch.no_grad():
            for p, b, g in zip(params, bufs, grads):
                b.mul_(momentum).add_(g)
                p -= step_lr * b
    with torch.no_grad(), recording(once=True):
        h = filt(params).numpy()
        final = float(objective(params, lam))
    curve.append(final)
    return dict(
        h=h,
        objective=final,
        curve=np.array(curve),
        seconds=time.perf_counter() - t0,
        params=[p.detach().numpy() for p in params],
    )


@dataclass
class SpectralResult:
    problem: SpectralProblem
    lam: float
    threshold: float
    cnn: dict
    dense: dict
    convex_h: np.ndarray
    convex_objective: float
    dense_convex_h: np.ndarray
    dense_convex_objective: float
    solve_seconds: float

    @property
    def cnn_gap(self) -> float:
        return (self.cnn["objective"] - self.convex_objective) / abs(
            self.convex_objective
        )

    @property
    def dense_gap(self) -> float:
        return (self.dense["objective"] - self.dense_convex_objective) / abs(
            self.dense_convex_objective
        )

    def support(self, h: np.ndarray) -> int:
        return spectral_support(h, self.threshold)


def spectral_experiment(
    n: int = 20,
    d: int = 32,
    freqs: tuple[int, ...] = (1, 3),
    noise: float = 0.05,
    lam: float = 0.5,
    steps: int = 1500,
    lr: float = 1.0,
    threshold: float = 0.05,
    regularizer: str = "spectral_l1",
    weight_decay: bool = True,
    seed: int = 0,
    contrast: str = "dense",
) -> SpectralResult:
    """The chapter's second experiment: circular CNN and dense network trained by GD with weight
    decay ``lam``, against their convex programs (spectral l1, and l2 norm). ``contrast`` names
    the architecture of the contrast network (``"circular"`` only for tests)."""
    problem = frequency_sparse_problem(n, d, freqs, noise, seed)
    cnn = train_linear(
        problem, lam, "circular", steps, lr, weight_decay=weight_decay, seed=seed + 1
    )
    dense = train_linear(
        problem, lam, contrast, steps, lr, weight_decay=weight_decay, seed=seed + 2
    )
    t0 = time.perf_counter()
    h_c, obj_c = solve_spectral_program(problem, lam, regularizer)
    h_d, obj_d = solve_spectral_program(problem, lam, "l2_norm")
    return SpectralResult(
        problem,
        lam,
        threshold,
        cnn,
        dense,
        h_c,
        obj_c,
        h_d,
        obj_d,
        time.perf_counter() - t0,
    )


def spectral_checks(
    r: SpectralResult,
    gap_tol: float = 1e-4,
    max_support: int | None = None,
    dense_min_fraction: float = 0.8,
    spectrum_tol: float = 1e-2,
) -> list[Check]:
    """GD on the circular CNN reaches the spectral-l1 optimum and its filter's DFT is as sparse
    as the program's; the dense network's is not."""
    d = r.problem.X.shape[1]
    cvx_support = r.support(r.convex_h)
    limit = cvx_support if max_support is None else max_support
    ref = dft_magnitudes(r.convex_h)
    mismatch = float(np.abs(dft_magnitudes(r.cnn["h"]) - ref).max() / ref.max())
    return [
        at_most(
            "spectral_objective_gap",
            abs(r.cnn_gap),
            gap_tol,
            "GD on the circular CNN attains the spectral-l1 program's optimum (relative)",
        ),
        at_most(
            "spectrum_mismatch",
            mismatch,
            spectrum_tol,
            "max_f | |h^_GD| - |h^_program| | / max |h^_program|: the same spectrum",
        ),
        at_most(
            "cnn_spectral_support",
            r.support(r.cnn["h"]),
            limit,
            f"frequencies above {r.threshold:g} x max in the CNN's end-to-end filter",
        ),
        at_least(
            "dense_spectral_fraction",
            r.support(r.dense["h"]) / d,
            dense_min_fraction,
            "the dense network's filter uses most frequencies",
        ),
        at_most(
            "dense_objective_gap",
            abs(r.dense_gap),
            gap_tol,
            "GD on the dense network attains the l2-norm program's optimum (relative)",
        ),
    ]
