"""Gradient oscillation: how gradient descent moves, layer by layer.

Along a run :math:`\\theta(t+1) = \\theta(t) - \\eta\\, g(t)` record, for every layer
:math:`l` (the parameters of one module), the cosine between adjacent gradients

.. math::  c_l(t) = \\frac{\\langle g_l(t), g_l(t+1) \\rangle}{\\|g_l(t)\\|\\,\\|g_l(t+1)\\|},

*gradient oscillation* when :math:`c_l(t)` is near :math:`-1` (the next step undoes
the last). Each gradient is split into the part that the next step reverses and the
rest (the *drift*),

.. math::  o_l(t) = \\min\\big(0, \\langle g_l(t), \\hat g_l(t+1)\\rangle\\big)\\, \\hat g_l(t+1),
           \\qquad d_l(t) = g_l(t) - o_l(t), \\qquad \\hat g = g / \\|g\\|,

orthogonal, so the linearised loss decrease of a step,
:math:`\\eta\\|g(t)\\|^2 = \\eta\\|o(t)\\|^2 + \\eta\\|d(t)\\|^2`, splits exactly. The
*oscillation share* :math:`\\rho_l = \\sum_t \\|o_l(t)\\|^2 / \\sum_t \\|g_l(t)\\|^2` is the
part of that first-order progress carried by oscillation, and :math:`1 - \rho_l` the
part carried by the drift.

Everything per layer is computed on the flat gradient vector at once
(:func:`layer_sums`, an ``index_add`` over a parameter-to-layer index), never by
looping over layers. :func:`train_recording` runs GD (or mini-batch SGD, heavy-ball
momentum, Adam) and records these sums at every step and the sharpness
(:mod:`convbias.sharpness`) every few steps; :func:`chapter_checks` turns two runs
(a large and a small learning rate) into the chapter's checks. Used by chapter 7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .checks import Check, at_least, at_most, between
from .config import cap_steps, recording, step_starts
from .live import progress as progress_bar
from .losses import LOSSES, accuracy
from .sharpness import flat_loss, flat_parameters, hvp_operator, lanczos, unflatten

Tensor = torch.Tensor
OPTIMIZERS = ("gd", "momentum", "adam")


# ----------------------------------------------------------------------------- layers
def layer_index(model: nn.Module) -> tuple[list[str], Tensor]:
    """Layer names in parameter order (input layer first) and the layer of every flat parameter entry.

    A layer is the module that owns a parameter (``conv1.weight`` and ``conv1.bias`` are
    layer ``conv1``). Returns ``(names, index)`` with ``index`` of shape ``(P,)``.
    """
    names: list[str] = []
    parts = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = name.rsplit(".", 1)[0] if "." in name else name
        if layer not in names:
            names.append(layer)
        parts.append(torch.full((p.numel(),), names.index(layer), dtype=torch.long))
    if not parts:
        raise ValueError("the model has no trainable parameters")
    return names, torch.cat(parts)


def layer_sums(x: Tensor, index: Tensor, n_layers: int) -> Tensor:
    """Sum ``x`` (shape ``(..., P)``) over the entries of each layer: shape ``(..., n_layers)``."""
    if x.shape[-1] != index.numel():
        raise ValueError(
            f"x has {x.shape[-1]} entries per row, the index {index.numel()}"
        )
    out = x.new_zeros(*x.shape[:-1], n_layers)
    return out.index_add_(-1, index.to(x.device), x)


def adjacent_cosines(G: Tensor, index: Tensor, n_layers: int) -> Tensor:
    """``c_l(t)`` for a stored gradient sequence ``G`` of shape ``(T, P)``: shape ``(T - 1, n_layers)``."""
    if G.ndim != 2 or len(G) < 2:
        raise ValueError(f"G must be (T >= 2, P), got {tuple(G.shape)}")
    dots = layer_sums(G[:-1] * G[1:], index, n_layers)
    sq = layer_sums(G * G, index, n_layers)
    return dots / (sq[:-1] * sq[1:]).sqrt()


def oscillating_part(g: Tensor, g_next: Tensor, index: Tensor, n_layers: int) -> Tensor:
    """``o(t)``: per layer, the projection of ``g`` on ``g_next`` where it points back (else zero)."""
    dots = layer_sums(g * g_next, index, n_layers)
    sq_next = layer_sums(g_next * g_next, index, n_layers)
    coef = torch.where(
        sq_next > 0,
        dots.clamp(max=0) / sq_next.clamp(min=1e-38),
        torch.zeros_like(dots),
    )
    return coef[index.to(g.device)] * g_next


def oscillation_share(dots: Tensor | np.ndarray, sq: Tensor | np.ndarray) -> np.ndarray:
    """``rho_l = sum_t ||o_l(t)||^2 / sum_t ||g_l(t)||^2`` from adjacent dots ``(T-1, L)`` and squared norms ``(T, L)``.

    The sums run over the ``T - 1`` steps that have a next step. Columns may also be
    totals over layers (sum the dots and norms first).
    """
    dots, sq = np.asarray(dots, dtype=np.float64), np.asarray(sq, dtype=np.float64)
    if dots.shape[0] != sq.shape[0] - 1 or dots.shape[1:] != sq.shape[1:]:
        raise ValueError(
            f"dots must be (T-1, L) and sq (T, L), got {dots.shape} and {sq.shape}"
        )
    o_sq = np.minimum(dots, 0.0) ** 2 / np.maximum(sq[1:], 1e-300)
    return o_sq.sum(0) / sq[:-1].sum(0)


# ----------------------------------------------------------------------------- training
@dataclass
class Trajectory:
    """What :func:`train_recording` measured along one run.

    ``loss`` ``(T,)`` is the training loss at ``theta(t)`` (all training data);
    ``sq`` ``(T, L)`` the squared layer norms ``||g_l(t)||^2``; ``dots`` ``(T-1, L)``
    the adjacent products ``<g_l(t), g_l(t+1)>``; the sharpness ``sharp`` measured at
    ``sharp_steps``.
    """

    names: list[str]
    lr: float
    optimizer: str
    batch_size: int | None
    loss: np.ndarray
    sq: np.ndarray
    dots: np.ndarray
    sharp_steps: np.ndarray
    sharp: np.ndarray
    train_acc: float
    module_sq_last: np.ndarray
    test_acc: float = math.nan
    info: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def cos(self) -> np.ndarray:
        """``c_l(t)``, shape ``(T - 1, L)``."""
        return self.dots / np.sqrt(np.maximum(self.sq[:-1] * self.sq[1:], 1e-300))

    @property
    def cos_total(self) -> np.ndarray:
        """The cosine between adjacent whole-network gradients, shape ``(T - 1,)``."""
        return self.dots.sum(1) / np.sqrt(
            np.maximum(self.sq[:-1].sum(1) * self.sq[1:].sum(1), 1e-300)
        )

    @property
    def osc_share(self) -> np.ndarray:
        """``rho_l`` per layer, shape ``(L,)``."""
        return oscillation_share(self.dots, self.sq)

    @property
    def osc_share_total(self) -> float:
        """``rho`` of the whole network (each layer's reversed part, summed over layers)."""
        o_sq = (np.minimum(self.dots, 0.0) ** 2 / np.maximum(self.sq[1:], 1e-300)).sum(
            1
        )
        return float(o_sq.sum() / self.sq[:-1].sum())

    @property
    def edge(self) -> float:
        """``2 / lr``: the sharpness above which GD on a quadratic diverges."""
        return 2.0 / self.lr

    def window(self, start: float = 0.0, stop: float = 1.0) -> slice:
        """The steps from fraction ``start`` to ``stop`` of the run, as a slice of ``cos``."""
        n = len(self.dots)
        return slice(
            int(round(start * n)), max(int(round(stop * n)), int(round(start * n)) + 1)
        )

    def median_cos(self, start: float = 0.0, stop: float = 1.0) -> np.ndarray:
        """Per layer, the median of ``c_l(t)`` over the window: below zero when most steps reverse."""
        return np.median(self.cos[self.window(start, stop)], axis=0)

    def fraction_below(
        self, level: float, start: float = 0.0, stop: float = 1.0
    ) -> np.ndarray:
        """Per layer, the fraction of steps in the window with ``c_l(t) < level``."""
        return (self.cos[self.window(start, stop)] < level).mean(0)

    def onset(self, level: float = -0.5, run: int = 10) -> int | None:
        """First step from which the whole-network cosine stays below ``level`` for ``run`` steps (None: never)."""
        below = self.cos_total < level
        for t in range(len(below) - run + 1):
            if below[t : t + run].all():
                return t
        return None

    def sharpness_ratio(self, start: float = 0.5) -> float:
        """Median sharpness over the last ``1 - start`` of the run, divided by ``2 / lr``."""
        late = self.sharp_steps >= start * self.steps
        return (
            float(np.median(self.sharp[late]) / self.edge) if late.any() else math.nan
        )

    def loss_drop(self, frac: float = 0.05) -> float:
        """Median loss of the first ``frac`` of steps over that of the last ``frac`` (> 1: the loss fell)."""
        k = max(1, int(round(frac * self.steps)))
        return float(np.median(self.loss[:k]) / np.median(self.loss[-k:]))

    def rises(self) -> float:
        """Fraction of steps at which the loss went up (0 for a monotone descent)."""
        return float((np.diff(self.loss) > 0).mean())


def _batches(n: int, batch_size: int | None, steps: int, generator: torch.Generator):
    """Index tensors of the mini-batches, epoch by epoch without replacement; ``None`` for full batch."""
    if batch_size is None or batch_size >= n:
        for _ in range(steps):
            yield None
        return
    done = 0
    while done < steps:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            if done == steps:
                return
            yield order[start : start + batch_size]
            done += 1


def train_recording(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    lr: float,
    steps: int,
    loss: str = "mse",
    optimizer: str = "gd",
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    batch_size: int | None = None,
    sharpness_every: int = 50,
    lanczos_steps: int = 20,
    sharpness_samples: int | None = None,
    shuffle_layers: bool = False,
    seed: int = 0,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    progress: bool = True,
    desc: str = "training",
) -> Trajectory:
    """Train ``model`` in place and record per-layer adjacent-gradient statistics and the sharpness.

    ``optimizer``: ``"gd"`` (plain steps ``-lr * g``; with ``batch_size`` mini-batch SGD),
    ``"momentum"`` (heavy ball as ``torch.optim.SGD``: ``b = momentum * b + g``,
    ``theta -= lr * b``) or ``"adam"``. The gradients recorded are those the optimizer
    received (of the mini-batch for SGD); ``loss`` is always on all of ``(X, y)``.
    Sharpness: top Hessian eigenvalue of the full-data loss (its first
    ``sharpness_samples`` examples if given) by ``lanczos_steps`` Lanczos steps on
    Hessian-vector products, every ``sharpness_every`` steps and at the end.
    ``shuffle_layers`` assigns parameters to layers at random (a control: it mixes the
    layers' statistics). ``module_sq_last`` holds the last recorded gradient's squared
    norms summed module by module in a plain loop, to compare with ``sq[-1]``.
    Raises ``FloatingPointError`` if the loss diverges.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {OPTIMIZERS}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use one of {LOSSES}")
    if not lr > 0 or steps < 2:
        raise ValueError(
            f"need lr > 0 and at least 2 steps, got lr={lr}, steps={steps}"
        )
    if sharpness_every < 1 or lanczos_steps < 1:
        raise ValueError("sharpness_every and lanczos_steps must be at least 1")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if batch_size is not None and not 1 <= batch_size <= len(X):
        raise ValueError(f"batch_size must lie in [1, {len(X)}], got {batch_size}")
    steps = cap_steps(steps, sharpness_every)  # a smoke run stops after a few steps
    names, index = layer_index(model)
    L = len(names)
    gen = torch.Generator().manual_seed(seed)
    if shuffle_layers:
        index = index[torch.randperm(index.numel(), generator=gen)]
    index = index.to(X.device)
    f, theta = flat_loss(model, X, y, loss)
    n_s = len(X) if sharpness_samples is None else min(sharpness_samples, len(X))
    f_sharp, _ = flat_loss(model, X[:n_s], y[:n_s], loss)

    def step_fn(flat: Tensor, **batch: Tensor) -> tuple[Tensor, Tensor]:
        # plain reverse mode on a leaf copy: a third of torch.func.grad's overhead on small nets
        flat = flat.detach().requires_grad_(True)
        value = f(flat, **batch)
        return torch.autograd.grad(value, flat)[0], value.detach()

    theta = theta.clone()
    buf = torch.zeros_like(theta)
    m2 = torch.zeros_like(theta)
    losses = torch.empty(steps, dtype=torch.float64)
    sq = torch.empty(steps, L, dtype=theta.dtype, device=theta.device)
    dots = torch.empty(steps - 1, L, dtype=theta.dtype, device=theta.device)
    sharp_steps, sharp = [], []
    v = None
    prev = None
    batches = _batches(len(X), batch_size, steps, gen)

    @recording()
    def measure(t: int) -> None:
        nonlocal v
        evals, v = lanczos(
            hvp_operator(f_sharp, theta),
            theta.numel(),
            k=lanczos_steps,
            v0=v,
            generator=gen,
            dtype=theta.dtype,
            device=theta.device,
        )
        sharp_steps.append(t)
        sharp.append(float(evals[0]))

    for t in progress_bar(range(steps), desc=desc, enabled=progress):
        step_starts()
        if t % sharpness_every == 0:
            measure(t)
        idx = next(batches)
        if idx is None:
            g, value = step_fn(theta)
        else:
            idx = idx.to(X.device)
            g, _ = step_fn(theta, X=X[idx], y=y[idx])
            with torch.no_grad():
                value = f(theta)
        losses[t] = float(value)
        if not math.isfinite(losses[t]):
            raise FloatingPointError(
                f"{desc}: the loss diverged at step {t} (lr={lr}, {optimizer})"
            )
        sq[t] = layer_sums(g * g, index, L)
        if prev is not None:
            dots[t - 1] = layer_sums(prev * g, index, L)
        prev = g
        if optimizer == "gd":
            theta = theta - lr * g
        elif optimizer == "momentum":
            buf = momentum * buf + g
            theta = theta - lr * buf
        else:
            b1, b2 = betas
            buf = b1 * buf + (1 - b1) * g
            m2 = b2 * m2 + (1 - b2) * g * g
            m_hat, v_hat = buf / (1 - b1 ** (t + 1)), m2 / (1 - b2 ** (t + 1))
            theta = theta - lr * m_hat / (v_hat.sqrt() + 1e-8)
    measure(steps)
    _, layout = flat_parameters(model)
    module_sq = np.zeros(L)
    for name, part in unflatten(prev, layout).items():  # the naive per-module sums
        module_sq[names.index(name.rsplit(".", 1)[0] if "." in name else name)] += (
            float((part * part).sum())
        )
    with torch.no_grad(), recording(once=True):
        for name, value in unflatten(theta, layout).items():
            model.get_parameter(name).copy_(value)
        acc = float(accuracy(loss, model(X), y))
        test_acc = (
            float(accuracy(loss, model(X_test), y_test))
            if X_test is not None
            else math.nan
        )
    return Trajectory(
        names=names,
        lr=float(lr),
        optimizer=optimizer,
        batch_size=batch_size,
        loss=losses.numpy(),
        sq=sq.cpu().double().numpy(),
        dots=dots.cpu().double().numpy(),
        sharp_steps=np.asarray(sharp_steps),
        sharp=np.asarray(sharp),
        train_acc=acc,
        module_sq_last=module_sq,
        test_acc=test_acc,
        info=dict(loss=loss, steps=steps, shuffle_layers=shuffle_layers, seed=seed),
    )


# ----------------------------------------------------------------------------- experiment
def run_rates(
    make_model: Callable[[], nn.Module],
    X: Tensor,
    y: Tensor,
    lrs: dict[str, float],
    *,
    steps: int,
    seed: int = 0,
    desc: str = "",
    **train_kw,
) -> dict[str, Trajectory]:
    """One run per learning rate from the same initialisation (``torch.manual_seed(seed)`` then
    ``make_model()``); ``train_kw`` go to :func:`train_recording`. Keys are those of ``lrs``."""
    if not lrs:
        raise ValueError("give at least one learning rate")
    out = {}
    for label, lr in lrs.items():
        torch.manual_seed(seed)
        model = make_model().to(X.device)
        out[label] = train_recording(
            model,
            X,
            y,
            lr=lr,
            steps=steps,
            seed=seed,
            desc=f"{desc} lr={lr:g}".strip(),
            **train_kw,
        )
    return out


def layer_table(
    runs: dict[tuple[str, str], Trajectory], start: float = 0.2, level: float = -0.5
):
    """Per layer of every run: median ``c_l``, share of steps with ``c_l < level`` and ``rho_l``.

    ``runs`` maps ``(network, rate label)`` to a trajectory; windows start at ``start``.
    Returns a pandas DataFrame, one row per (network, rate, layer).
    """
    import pandas as pd

    rows = []
    for (net, rate), tr in runs.items():
        med, frac, rho = (
            tr.median_cos(start),
            tr.fraction_below(level, start),
            tr.osc_share,
        )
        for k, name in enumerate(tr.names):
            rows.append(
                {
                    "network": net,
                    "rate": rate,
                    "lr": tr.lr,
                    "layer": name,
                    "median c_l": med[k],
                    f"share c_l<{level:g}": frac[k],
                    "rho_l": rho[k],
                }
            )
    return pd.DataFrame(rows)


def input_minus_output(tr: Trajectory, start: float = 0.2) -> float:
    """Median ``c_l`` of the input layer minus that of the output layer (< 0: the input layer oscillates more)."""
    med = tr.median_cos(start)
    return float(med[0] - med[-1])


def reversed_layers(tr: Trajectory) -> Trajectory:
    """The same run with its layers listed output first (a control: swaps input and output labels)."""
    from dataclasses import replace

    return replace(
        tr,
        names=tr.names[::-1],
        sq=tr.sq[:, ::-1].copy(),
        dots=tr.dots[:, ::-1].copy(),
        module_sq_last=tr.module_sq_last[::-1].copy(),
    )


def _batch(tr: Trajectory) -> str:
    return f", batch {tr.batch_size}" if tr.batch_size else ""


# ----------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Margins:
    """The bounds of :func:`chapter_checks` (calibrated on seeds; see the chapter)."""

    osc_level: float = -0.5  # c_l(t) below this counts as an oscillating step
    osc_fraction: float = (
        0.5  # at the large rate, in every layer, at least this share of steps oscillate
    )
    edge_band: tuple[float, float] = (
        0.85,
        1.25,
    )  # late sharpness / (2 / lr) at the large rate
    loss_drop: float = 1.5  # first-5% loss over last-5% loss, at least
    rises: float = (
        0.05  # at the large rate the loss goes up at this share of steps, at least
    )
    start: float = (
        0.2  # windows begin after this fraction of the run (progressive sharpening)
    )
    layer_tol: float = (
        1e-4  # relative difference of vectorised and per-module layer norms
    )


def chapter_checks(
    large: Trajectory,
    small: Trajectory,
    margins: Margins = Margins(),
    prefix: str = "",
    claim4: Trajectory | None = None,
) -> list[Check]:
    """The chapter's checks on a run at a large and at a small learning rate.

    - ``{prefix}osc_every_layer``: at the large rate the least-oscillating layer still has
      ``c_l(t) < osc_level`` at ``osc_fraction`` of the steps after ``start``;
    - ``{prefix}sharpness_at_edge``: late sharpness within ``edge_band`` of ``2 / lr``;
    - ``{prefix}loss_falls``: the large-rate loss drops by ``loss_drop`` over the run;
    - ``{prefix}loss_non_monotone``: ... while rising at ``rises`` of the steps;
    - ``{prefix}small_rate_calm``: at the small rate no layer oscillates at ``osc_fraction``
      of the steps;
    - ``{prefix}layers_are_modules``: the vectorised per-layer squared gradient norms of
      the last step equal the module-by-module sums (relative difference);
    - ``{prefix}input_over_output`` (only with ``claim4``, a small-rate run, e.g. mini-batch
      SGD): its input layer has a lower median ``c_l`` than its output layer.
    """
    m = margins
    frac_large = large.fraction_below(m.osc_level, m.start)
    frac_small = small.fraction_below(m.osc_level, m.start)
    layer_err = max(
        float(
            np.max(
                np.abs(tr.sq[-1] - tr.module_sq_last)
                / np.maximum(tr.module_sq_last, 1e-300)
            )
        )
        for tr in (large, small)
    )
    checks = [
        at_least(
            f"{prefix}osc_every_layer",
            float(frac_large.min()),
            m.osc_fraction,
            f"at lr={large.lr:g} every layer has c_l(t) < {m.osc_level:g} at most steps",
        ),
        between(
            f"{prefix}sharpness_at_edge",
            large.sharpness_ratio(),
            *m.edge_band,
            f"at lr={large.lr:g} the late sharpness is near 2/lr = {large.edge:.3g}",
            scale="ratio",
        ),
        at_least(
            f"{prefix}loss_falls",
            large.loss_drop(),
            m.loss_drop,
            f"at lr={large.lr:g} the loss still falls (first/last 5% of steps)",
            scale="ratio",
        ),
        at_least(
            f"{prefix}loss_non_monotone",
            large.rises(),
            m.rises,
            f"at lr={large.lr:g} the loss goes up at some steps",
        ),
        at_most(
            f"{prefix}small_rate_calm",
            float(frac_small.max()),
            m.osc_fraction,
            f"at lr={small.lr:g} no layer oscillates at most steps",
        ),
        at_most(
            f"{prefix}layers_are_modules",
            layer_err,
            m.layer_tol,
            "per-layer numbers are each module's own (vectorised = per-module loop)",
        ),
    ]
    if claim4 is not None:
        checks.append(
            at_most(
                f"{prefix}input_over_output",
                input_minus_output(claim4, m.start),
                0.0,
                f"at lr={claim4.lr:g}{_batch(claim4)} the input layer's median c_l is "
                "below the output layer's",
            )
        )
    return checks
