"""Two-layer ReLU CNNs trained with weight decay as a convex program (Ergen & Pilanci).

A sample is split into ``K`` patches; ``X_k`` (``n x h``) stacks patch ``k`` of every
sample. The CNN with ``m`` filters ``u_j`` and output weights ``alpha_j`` (patches
summed, i.e. average pooling up to a constant) is

.. math:: f(X) = \\sum_j \\alpha_j \\sum_k (X_k u_j)_+ ,

trained on ``1/2 ||f(X) - y||^2 + beta/2 sum_j (||u_j||^2 + alpha_j^2)``.
Its convex equivalent runs over the sign patterns ``D_i = diag(1[X_all u >= 0])`` of
the stacked patch matrix ``X_all = [X_1; ...; X_K]`` (the hyperplane arrangement):

.. math:: \\min_{v_i, w_i} \\tfrac12 \\|\\sum_i \\sum_k D_{ik} X_k (v_i - w_i) - y\\|^2
          + \\beta \\sum_i (\\|v_i\\|_2 + \\|w_i\\|_2)
          \\quad\\text{s.t.}\\quad (2D_{ik} - I) X_k v_i \\ge 0,\\ (2D_{ik} - I) X_k w_i \\ge 0 .

:func:`enumerate_patterns` lists every pattern of a generic patch matrix exactly
(each cell of the central arrangement has an extreme ray on ``h - 1`` of its
hyperplanes); :func:`sample_patterns` draws them from random filters, a subset.
:func:`solve_convex` builds and solves the program with cvxpy (Clarabel),
:func:`recover_cnn` maps its blocks back to filters (``u = v / sqrt||v||``,
``alpha = +-sqrt||v||``) and :func:`train_gd` trains many random initialisations of
the non-convex CNN by full-batch gradient descent at once. Used by chapter 6.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .checks import Check, at_least, at_most
from .config import cap_steps, recording, require_extra, step_starts


# ----------------------------------------------------------------------------- data
def patches_1d(signals: np.ndarray, h: int, stride: int) -> np.ndarray:
    """Patches of ``signals`` (``n x d``): an array ``(K, n, h)``, patch ``k`` starting at ``k*stride``."""
    signals = np.asarray(signals, dtype=float)
    if signals.ndim != 2:
        raise ValueError(f"signals must be (n, d), got shape {signals.shape}")
    n, d = signals.shape
    if h < 1 or stride < 1 or h > d:
        raise ValueError(
            f"need 1 <= h <= d={d} and stride >= 1, got h={h}, stride={stride}"
        )
    starts = range(0, d - h + 1, stride)
    return np.stack([signals[:, s : s + h] for s in starts])


@dataclass
class PatchProblem:
    """A tiny regression instance: patches ``X`` (``K x n x h``), targets ``y`` (``n``)."""

    X: np.ndarray
    y: np.ndarray
    teacher: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.X.shape)  # (K, n, h)

    @property
    def stacked(self) -> np.ndarray:
        """``X_all = [X_1; ...; X_K]``, shape ``(K n, h)``."""
        K, n, h = self.X.shape
        return self.X.reshape(K * n, h)


def teacher_problem(
    n: int,
    d: int,
    h: int,
    stride: int,
    n_teacher: int = 2,
    noise: float = 0.1,
    seed: int = 0,
) -> PatchProblem:
    """Gaussian signals, targets from a teacher CNN with ``n_teacher`` filters of alternating sign, plus noise."""
    rng = np.random.default_rng(seed)
    signals = rng.standard_normal((n, d))
    X = patches_1d(signals, h, stride)
    U = rng.standard_normal((n_teacher, h))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    signs = np.array([(-1.0) ** j for j in range(n_teacher)])
    y = cnn_forward(X, U, signs)
    y = y + noise * np.std(y) * rng.standard_normal(n)
    return PatchProblem(X, y, teacher=U * signs[:, None])


def cnn_forward(X: np.ndarray, U: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``f(X) = sum_j alpha_j sum_k (X_k u_j)_+`` for patches ``X`` (``K x n x h``)."""
    pre = np.einsum("knh,mh->knm", X, U)
    return np.maximum(pre, 0).sum(0) @ alpha


def cnn_objective(
    X: np.ndarray, y: np.ndarray, U: np.ndarray, alpha: np.ndarray, beta: float
) -> float:
    """``1/2 ||f(X) - y||^2 + beta/2 sum_j (||u_j||^2 + alpha_j^2)``."""
    r = cnn_forward(X, U, alpha) - y
    return float(0.5 * r @ r + 0.5 * beta * (np.sum(U**2) + np.sum(alpha**2)))


# ----------------------------------------------------------------------------- arrangements
def _patterns_of(A: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Rows ``1[A u >= 0]`` for each column filter ``u`` in ``U`` (``h x M``), as bools ``(M, N)``."""
    return (A @ U >= 0).T


def enumerate_patterns(A: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Every sign pattern ``1[A u >= 0]`` of a full-dimensional cell of the arrangement of ``A``'s rows.

    ``A`` is ``N x h`` with rows in general position (no ``h`` of them linearly dependent;
    Gaussian data are, with probability one). Each cell of the central arrangement is a
    pointed cone whose extreme rays lie on ``h - 1`` hyperplanes: for every such subset,
    its null direction ``+-r`` fixes the other rows' signs, and the subset's own signs take
    all ``2^(h-1)`` values. Returns a bool array ``(P, N)``, unique rows, sorted. Cost:
    ``O(N^(h-1) 2^(h-1))`` candidates, which is why only tiny ``h`` are enumerated.
    """
    A = np.asarray(A, dtype=float)
    N, h = A.shape
    if h == 1:
        pats = np.stack([A[:, 0] >= 0, A[:, 0] <= 0])
        return np.unique(pats, axis=0)
    found = set()
    for subset in itertools.combinations(range(N), h - 1):
        S = A[list(subset)]
        _, s, vt = np.linalg.svd(S)
        if s[-1] < tol * max(s[0], 1.0):
            raise ValueError(
                "rows of the patch matrix are not in general position; add a little noise"
            )
        r = vt[-1]
        base = A @ r
        if np.any(
            np.abs(np.delete(base, list(subset)))
            < tol * np.linalg.norm(A, axis=1).max()
        ):
            raise ValueError(
                "rows of the patch matrix are not in general position; add a little noise"
            )
        for sign in (1.0, -1.0):
            pat = sign * base > 0
            for bits in itertools.product((False, True), repeat=h - 1):
                p = pat.copy()
                p[list(subset)] = bits
                found.add(p.tobytes())
    pats = np.array([np.frombuffer(b, dtype=bool) for b in found])
    return pats[np.lexsort(pats.T[::-1])]


def cell_count(N: int, h: int) -> int:
    """Cells of a central arrangement of ``N`` generic hyperplanes in ``R^h``: ``2 sum_{k<h} C(N-1, k)``."""
    return 2 * sum(math.comb(N - 1, k) for k in range(h))


def sample_patterns(A: np.ndarray, n_samples: int, seed: int = 0) -> np.ndarray:
    """Distinct patterns ``1[A u >= 0]`` of ``n_samples`` Gaussian filters ``u`` (a subset of all patterns)."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((A.shape[1], n_samples))
    pats = np.unique(_patterns_of(A, U), axis=0)
    return pats[np.lexsort(pats.T[::-1])]


# ----------------------------------------------------------------------------- convex program
@dataclass
class ConvexSolution:
    """The solved convex program: blocks ``V``, ``W`` (``P x h``), its objective and solve time."""

    V: np.ndarray
    W: np.ndarray
    patterns: np.ndarray
    objective: float
    solve_seconds: float
    build_seconds: float
    status: str
    regularizer: str
    n_variables: int
    n_constraints: int


def solve_convex(
    problem: PatchProblem,
    beta: float,
    patterns: np.ndarray,
    regularizer: str = "group_l2",
    solver: str = "CLARABEL",
) -> ConvexSolution:
    """Solve the group-lasso convex program of the two-layer ReLU CNN over ``patterns``.

    ``regularizer="group_l2"`` is the equivalent program, ``beta sum_i (||v_i|| + ||w_i||)``;
    ``"squared_l2"`` (``beta/2 sum ||v_i||^2 + ||w_i||^2``) is a deliberately wrong one, for tests.
    """
    import scipy.sparse as sp

    cp = require_extra("cvxpy", "convex", "the convex program of a two-layer ReLU CNN")

    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if regularizer not in ("group_l2", "squared_l2"):
        raise ValueError(
            f"regularizer must be 'group_l2' or 'squared_l2', got {regularizer!r}"
        )
    t0 = time.perf_counter()
    K, n, h = problem.X.shape
    Xall = problem.stacked
    pats = np.asarray(patterns, dtype=bool)
    P = len(pats)
    D = pats.reshape(P, K, n).astype(float)  # D[i, k, s] = 1[x_{s,k} . u >= 0]
    Amat = np.einsum("pks,ksh->sph", D, problem.X).reshape(n, P * h)  # [A_1 ... A_P]
    signs = 2.0 * pats - 1.0  # (P, K n)
    G = sp.block_diag(
        [sp.csr_matrix(signs[i][:, None] * Xall) for i in range(P)], format="csr"
    )
    v = cp.Variable(P * h)
    w = cp.Variable(P * h)
    Vb, Wb = cp.reshape(v, (P, h), order="C"), cp.reshape(w, (P, h), order="C")
    if regularizer == "group_l2":
        penalty = beta * (
            cp.sum(cp.norm(Vb, 2, axis=1)) + cp.sum(cp.norm(Wb, 2, axis=1))
        )
    else:
        penalty = 0.5 * beta * (cp.sum_squares(v) + cp.sum_squares(w))
    objective = 0.5 * cp.sum_squares(Amat @ (v - w) - problem.y) + penalty
    prob = cp.Problem(cp.Minimize(objective), [G @ v >= 0, G @ w >= 0])
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    prob.solve(solver=solver)
    solve = time.perf_counter() - t1
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"convex program not solved: status {prob.status}")
    V = np.asarray(v.value).reshape(P, h)
    W = np.asarray(w.value).reshape(P, h)
    return ConvexSolution(
        V,
        W,
        pats,
        float(prob.value),
        solve,
        build,
        prob.status,
        regularizer,
        2 * P * h,
        2 * G.shape[0],
    )


def recover_cnn(
    sol: ConvexSolution, rel_tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Filters ``U`` (``m x h``) and output weights ``alpha`` from the nonzero blocks.

    ``u = v / sqrt(||v||)``, ``alpha = sqrt(||v||)``; the ``w`` blocks give ``alpha < 0``.
    Blocks below ``rel_tol`` times the largest are dropped.
    """
    blocks = np.concatenate([sol.V, sol.W])
    sign = np.concatenate([np.ones(len(sol.V)), -np.ones(len(sol.W))])
    norms = np.linalg.norm(blocks, axis=1)
    keep = norms > rel_tol * max(norms.max(), 1e-300)
    U = blocks[keep] / np.sqrt(norms[keep])[:, None]
    alpha = sign[keep] * np.sqrt(norms[keep])
    return U, alpha


def active_filters(
    U: np.ndarray, alpha: np.ndarray, rel_tol: float = 1e-2, cos_tol: float = 1e-3
) -> int:
    """Distinct active neurons of a CNN with filters ``U`` and output weights ``alpha``.

    Parallel copies (same direction within ``cos_tol``, same output sign) are one neuron split
    in two, so they are merged first, adding their sizes ``|alpha| ||u||``; a merged neuron is
    active when its size is at least ``rel_tol`` times the largest.
    """
    U, alpha = np.asarray(U, float), np.asarray(alpha, float)
    size = np.abs(alpha) * np.linalg.norm(U, axis=1)
    if size.size == 0 or size.max() == 0:
        return 0
    idx = np.flatnonzero(size > 1e-9 * size.max())
    idx = idx[np.argsort(-size[idx])]
    dirs = U[idx] / np.linalg.norm(U[idx], axis=1, keepdims=True)
    reps: list[list] = []  # [direction, sign, merged size]
    for i, d in zip(idx, dirs):
        for rep in reps:
            if np.sign(alpha[i]) == rep[1] and d @ rep[0] > 1 - cos_tol:
                rep[2] += size[i]
                break
        else:
            reps.append([d, np.sign(alpha[i]), size[i]])
    merged = np.array([rep[2] for rep in reps])
    return int(np.sum(merged >= rel_tol * merged.max()))


# ----------------------------------------------------------------------------- gradient descent
@dataclass
class GDRuns:
    """``E`` runs of full-batch GD from random initialisations: final objectives, filters, curves."""

    objectives: np.ndarray  # (E,)
    U: np.ndarray  # (E, m, h)
    alpha: np.ndarray  # (E, m)
    curves: np.ndarray  # (E, n_logged)
    steps_logged: np.ndarray
    seconds: float


def train_gd(
    problem: PatchProblem,
    beta: float,
    m: int,
    runs: int,
    steps: int,
    lr: float,
    init_scale: float = 0.5,
    weight_decay: bool = True,
    seed: int = 0,
    log_every: int = 50,
    momentum: float = 0.9,
    progress: bool = True,
) -> GDRuns:
    """Train ``runs`` CNNs with ``m`` filters at once by full-batch GD (float64) on the regularized loss.

    ``weight_decay=False`` drops the ``beta/2`` penalty from the training loss (the
    returned objectives still include it, so they are comparable with the convex optimum).
    """
    from .live import progress as progress_bar

    if runs < 1 or m < 1 or steps < 0:
        raise ValueError(
            f"need runs >= 1, m >= 1, steps >= 0; got runs={runs}, m={m}, steps={steps}"
        )
    t0 = time.perf_counter()
    X = torch.as_tensor(problem.X, dtype=torch.float64)
    y = torch.as_tensor(problem.y, dtype=torch.float64)
    K, n, h = X.shape
    gen = torch.Generator().manual_seed(seed)
    U = (
        init_scale
        * torch.randn(runs, m, h, generator=gen, dtype=torch.float64)
        / math.sqrt(h)
    )
    a = (
        init_scale
        * torch.randn(runs, m, generator=gen, dtype=torch.float64)
        / math.sqrt(m)
    )
    U.requires_grad_(True)
    a.requires_grad_(True)
    wd = beta if weight_decay else 0.0

    def objective(U, a, coef):
        pre = torch.einsum("knh,emh->eknm", X, U).clamp_min(0).sum(1)  # (E, n, m)
        r = torch.einsum("enm,em->en", pre, a) - y
        return 0.5 * (r**2).sum(1) + 0.5 * coef * ((U**2).sum((1, 2)) + (a**2).sum(1))

    steps = cap_steps(steps, log_every)  # a smoke run stops after a few steps
    bU, ba = torch.zeros_like(U), torch.zeros_like(a)
    curves, logged = [], []
    for step in progress_bar(range(steps + 1), desc="GD runs", enabled=progress):
        if step % log_every == 0 or step == steps:
            with torch.no_grad(), recording():
                curves.append(objective(U, a, beta).numpy().copy())
            logged.append(step)
        if step == steps:
            break
        step_starts()
        obj = objective(U, a, wd)  # after the record: the last pass only evaluates
        gU, ga = torch.autograd.grad(obj.sum(), (U, a))
        step_lr = lr * 0.5 * (1 + math.cos(math.pi * step / steps))  # cosine decay to 0
        with torch.no_grad():
            bU.mul_(momentum).add_(gU)
            ba.mul_(momentum).add_(ga)
            U -= step_lr * bU
            a -= step_lr * ba
    with torch.no_grad(), recording(once=True):
        final = objective(U, a, beta).numpy()
    return GDRuns(
        final,
        U.detach().numpy(),
        a.detach().numpy(),
        np.array(curves).T,
        np.array(logged),
        time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------- experiment + checks
@dataclass
class ConvexVsGD:
    """Everything the chapter reports: the convex optimum, its recovered CNN, and the GD runs."""

    problem: PatchProblem
    beta: float
    sol: ConvexSolution
    recovered_objective: float
    recovered_filters: int
    gd: GDRuns
    gd_filters: np.ndarray  # distinct active neurons per GD run
    enumerated: bool
    n_patterns: int
    success_tol: float

    @property
    def gaps(self) -> np.ndarray:
        """Relative gaps ``(GD objective - convex optimum) / convex optimum`` per run."""
        return (self.gd.objectives - self.sol.objective) / abs(self.sol.objective)

    @property
    def success(self) -> np.ndarray:
        return self.gaps <= self.success_tol


def convex_vs_gd(
    n: int = 8,
    d: int = 12,
    h: int = 3,
    stride: int = 3,
    n_teacher: int = 2,
    noise: float = 0.0,
    beta: float = 1.0,
    m: int = 16,
    runs: int = 32,
    steps: int = 3000,
    lr: float = 0.004,
    momentum: float = 0.9,
    init_scale: float = 0.5,
    sampled: int | None = None,
    regularizer: str = "group_l2",
    weight_decay: bool = True,
    seed: int = 0,
    success_tol: float = 1e-3,
    progress: bool = True,
) -> ConvexVsGD:
    """The chapter's first experiment: convex program (enumerated, or ``sampled`` random
    arrangements) vs ``runs`` GD trainings of the same CNN (``m`` filters) on one instance."""
    problem = teacher_problem(n, d, h, stride, n_teacher, noise, seed)
    A = problem.stacked
    pats = (
        enumerate_patterns(A) if sampled is None else sample_patterns(A, sampled, seed)
    )
    sol = solve_convex(problem, beta, pats, regularizer)
    U, alpha = recover_cnn(sol)
    rec_obj = cnn_objective(problem.X, problem.y, U, alpha, beta)
    gd = train_gd(
        problem,
        beta,
        m,
        runs,
        steps,
        lr,
        init_scale,
        weight_decay,
        seed + 1000,
        momentum=momentum,
        progress=progress,
    )
    gd_filters = np.array([active_filters(gd.U[e], gd.alpha[e]) for e in range(runs)])
    return ConvexVsGD(
        problem,
        beta,
        sol,
        rec_obj,
        active_filters(U, alpha),
        gd,
        gd_filters,
        sampled is None,
        len(pats),
        success_tol,
    )


def convex_checks(
    r: ConvexVsGD,
    lower_tol: float = 1e-6,
    recover_tol: float = 1e-6,
) -> list[Check]:
    """The convex optimum lower-bounds every GD run and the recovered CNN attains it with at
    most ``n + 1`` neurons: the theorem. How many GD runs reach the optimum is a property of
    this instance, reported by :func:`landscape_statistics`, not checked."""
    n = r.problem.X.shape[1]
    rel_rec = abs(r.recovered_objective - r.sol.objective) / abs(r.sol.objective)
    return [
        at_least(
            "convex_lower_bound",
            float(r.gaps.min()),
            -lower_tol,
            "no GD run ends below the convex optimum (relative gap)",
        ),
        at_most(
            "recovered_objective_relerr",
            rel_rec,
            recover_tol,
            "the CNN recovered from the convex solution attains the convex objective",
        ),
        at_most(
            "recovered_filters",
            r.recovered_filters,
            n + 1,
            "active neurons of the convex solution (Caratheodory: at most n + 1)",
        ),
    ]


def landscape_statistics(r: ConvexVsGD) -> dict[str, float]:
    """Statistics of this instance's landscape, reported beside the checks, not required:
    the share of GD runs within ``success_tol`` of the convex optimum
    (``gd_success_fraction``) and whether the best GD run has the convex solution's number
    of active neurons (``best_gd_run_filters``, 1 or 0). They change with the instance (with
    random targets the equivalence still holds while they drop) without the theorem failing."""
    best = int(np.argmin(r.gaps))
    return {
        "gd_success_fraction": float(r.success.mean()),
        "best_gd_run_filters": float(int(r.gd_filters[best]) == r.recovered_filters),
    }
