"""Grid sweeps over (batch size B, learning rate mu, weight decay lambda), run as ensembles.

Every run of a grid is a small independent training run. Runs that share a
batch size are trained together as one :func:`convbias.train.fit_ensemble`
(one vmapped step for all ``len(lrs) * len(weight_decays) * len(seeds)``
members); one ensemble per batch size, since the mini-batch shape must be the
same inside a vmap. Members with the same seed share their initialisation and
their batch order, so cells of the grid are paired comparisons.

Runs are compared at **equal epochs** (``epochs=``: a smaller batch takes more
steps, as in Galanti et al.) or at **equal steps** (``steps=``). Learning-rate
milestones are fractions of the run (their one meaning:
:func:`convbias.train.check_milestones`) and multiply the rate by ``gamma``. The
result holds tidy tables: one row per run (``final``) and one row per run and record
(``curves``), with the mean rank and stable rank of the hidden weights
(:func:`convbias.lowrank.layer_ranks`) and the accuracies.

Used by chapter 2.
"""

from __future__ import annotations

import functools
import itertools
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .cache import fingerprint
from .config import device as default_device
from .executors import submit
from .lowrank import hidden_weight_names, rank_metrics, spectra
from .train import (
    EnsembleResult,
    build_members,
    check_milestones,
    fit_ensemble,
    steps_per_epoch,
)

Tensor = torch.Tensor
KEYS = ("batch_size", "lr", "weight_decay", "seed")


@dataclass
class SweepResult:
    """Tidy results of :func:`run_sweep`."""

    final: pd.DataFrame
    curves: pd.DataFrame
    layer_names: list[str]
    compare: str
    ensembles: dict[int, EnsembleResult] = field(repr=False)
    seconds: dict[int, float] = field(default_factory=dict)

    def grid(
        self,
        value: str = "rank",
        rows: str = "weight_decay",
        cols: str = "batch_size",
        agg: str = "mean",
        **fixed: float,
    ) -> pd.DataFrame:
        """A ``rows x cols`` table of ``value`` (aggregated over seeds and any free key),
        after selecting ``fixed`` values, e.g. ``grid("rank", "weight_decay", "lr", batch_size=8)``."""
        frame = self._select(self.final, fixed)
        return frame.pivot_table(index=rows, columns=cols, values=value, aggfunc=agg)

    def runs(self, **fixed: float) -> pd.DataFrame:
        """Rows of ``final`` matching ``fixed`` keys."""
        return self._select(self.final, fixed)

    def curve(self, value: str = "rank", **fixed: float) -> pd.DataFrame:
        """Rows of ``curves`` matching ``fixed`` keys (one row per record and run)."""
        return self._select(self.curves, fixed)[["epoch", "step", "seed", value]]

    def spectra(
        self, batch_size: int, lr: float, weight_decay: float, seed: int
    ) -> dict[str, Tensor]:
        """Normalised singular values ``s_i / s_1`` of each hidden weight of one run."""
        row = self._select(
            self.final,
            dict(batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed),
        )
        if len(row) != 1:
            raise ValueError(
                f"no single run with B={batch_size}, lr={lr}, lambda={weight_decay}, seed={seed}"
            )
        return spectra(
            self.ensembles[batch_size].params,
            self.layer_names,
            member=int(row["member"].iloc[0]),
        )

    @staticmethod
    def _select(frame: pd.DataFrame, fixed: dict) -> pd.DataFrame:
        for key, val in fixed.items():
            if key not in frame:
                raise KeyError(f"unknown key {key!r}; use one of {list(KEYS)}")
            frame = frame[np.isclose(frame[key].astype(float), float(val))]
        if frame.empty:
            raise ValueError(f"no run matches {fixed}")
        return frame


def run_sweep(
    make_model: Callable[[], nn.Module],
    X: Tensor,
    y: Tensor,
    *,
    batch_sizes: Sequence[int],
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    seeds: Sequence[int] = (0,),
    epochs: int | None = None,
    steps: int | None = None,
    milestones: Sequence[float] = (),
    gamma: float = 0.2,
    layers: Sequence[str] | None = None,
    tol: float = 1e-3,
    records: int = 10,
    loss: str = "ce",
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    cache: str | None = None,
    executor: Executor | None = None,
) -> SweepResult:
    """Train every ``(B, lr, lambda, seed)`` of the grid with SGD (momentum 0) and weight decay.

    ``layers`` names the weights to rank (default: every weight except the
    classifier, i.e. all but the last parameter with >= 2 dimensions).
    ``records`` rank measurements are taken along each run (at the same epochs
    for every batch size when comparing at equal epochs). ``cache`` names the sweep
    in the results cache (:mod:`convbias.cache`): each batch size's ensemble is
    stored once trained, and a rerun, or a run resumed after an interruption,
    restores it instead of training again. ``executor`` (any ``concurrent.futures.Executor``;
    default: here, one batch size after the other) trains the batch sizes' ensembles as
    separate tasks, each stored in the results cache by the process that ran it
    (``convbias.executors``).
    """
    if (epochs is None) == (steps is None):
        raise ValueError(
            "give exactly one of epochs= (compare at equal epochs) or steps= (equal steps)"
        )
    if not (batch_sizes and lrs and weight_decays and seeds):
        raise ValueError(
            "batch_sizes, lrs, weight_decays and seeds must each hold at least one value"
        )
    milestones = check_milestones(milestones)
    if records < 1:
        raise ValueError(f"records must be >= 1, got {records}")
    for B in batch_sizes:
        if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
            raise ValueError(f"batch sizes must be positive integers, got {B!r}")
    if any(not np.isfinite(v) or v < 0 for v in [*lrs, *weight_decays]):
        raise ValueError(
            f"learning rates and weight decays must be finite and >= 0, got lrs={list(lrs)}, "
            f"weight_decays={list(weight_decays)}"
        )
    if len(X) != len(y):
        raise ValueError(
            f"X has {len(X)} examples but y has {len(y)}: give one target per example"
        )
    compare = "epochs" if epochs is not None else "steps"
    n = len(X)
    probe = make_model()
    names = list(layers) if layers is not None else hidden_weight_names(probe)
    members = list(itertools.product(lrs, weight_decays, seeds))
    initial = (
        initial_weights_fingerprint(make_model, [m[2] for m in members])
        if cache
        else None
    )
    finals, curves, ensembles, seconds = [], [], {}, {}
    futures, per_epochs = {}, {}
    for B in batch_sizes:
        per_epoch = steps_per_epoch(n, B)
        if compare == "epochs":
            log_every = per_epoch * max(1, epochs // records)
        else:
            log_every = max(1, steps // records)

        train = functools.partial(
            _train_ensemble,
            make_model,
            X,
            y,
            seeds=[m[2] for m in members],
            lr=[m[0] for m in members],
            weight_decay=[m[1] for m in members],
            momentum=0.0,
            loss=loss,
            batch_size=None if B >= n else B,
            **({"epochs": epochs} if compare == "epochs" else {"steps": steps}),
            milestones=milestones,
            gamma=gamma,
            log_every=log_every,
            X_test=X_test,
            y_test=y_test,
            names=names,
            tol=tol,
            device=device,
            progress=progress and executor is None,
            desc=f"B={B}",
        )

        config = dict(
            batch_size=B,
            members=members,
            epochs=epochs,
            steps=steps,
            milestones=list(milestones),
            gamma=gamma,
            layers=names,
            tol=tol,
            loss=loss,
            log_every=log_every,
            model=repr(probe),
            initial_weights=initial,
            X=X,
            y=y,
            X_test=X_test,
            y_test=y_test,
            device=str(
                torch.device(device) if device is not None else default_device()
            ),
        )
        futures[B] = submit(executor, cache and f"{cache}-B{B}", config, train)
        per_epochs[B] = per_epoch
    for B in batch_sizes:
        per_epoch = per_epochs[B]
        ens, seconds[B] = futures[B].result()
        ensembles[B] = ens
        hist = ens
        metric_keys = [k for k in hist.keys()]
        step = hist["step"]
        for e, (lr, wd, seed) in enumerate(members):
            base = dict(batch_size=B, lr=lr, weight_decay=wd, seed=seed, member=e)
            for r, s in enumerate(step):
                curves.append(
                    {
                        **base,
                        "step": int(s),
                        "epoch": s / per_epoch,
                        **{k: float(hist[k][r, e]) for k in metric_keys},
                    }
                )
            finals.append(
                {
                    **base,
                    "steps": int(step[-1]),
                    "epochs": step[-1] / per_epoch,
                    **{k: float(hist[k][-1, e]) for k in metric_keys},
                }
            )
    return SweepResult(
        final=pd.DataFrame(finals),
        curves=pd.DataFrame(curves),
        layer_names=names,
        compare=compare,
        ensembles=ensembles,
        seconds=seconds,
    )


def _train_ensemble(
    make_model: Callable[[], nn.Module],
    X: Tensor,
    y: Tensor,
    *,
    names: Sequence[str],
    tol: float,
    **fit_kw,
) -> tuple[EnsembleResult, float]:
    """One batch size's ensemble and its training time (a module-level function, so executors can pickle it)."""
    start = time.perf_counter()
    ens = fit_ensemble(make_model, X, y, metrics=rank_metrics(names, tol), **fit_kw)
    return ens, time.perf_counter() - start


def initial_weights_fingerprint(
    make_model: Callable[[], nn.Module], seeds: Sequence[int]
) -> dict[str, str]:
    """``{seed: fingerprint}`` of the initial weights (and architecture) of each member, built as
    :func:`convbias.train.fit_ensemble` builds them: the results-cache key of a sweep, so that a
    changed initialisation (a scale, a distribution) is trained again, never restored.

    The global random state is left as it was."""
    state = torch.random.get_rng_state()
    try:
        unique = sorted({int(s) for s in seeds})
        return {
            str(s): fingerprint(m)
            for s, m in zip(unique, build_members(make_model, unique))
        }
    finally:
        torch.random.set_rng_state(state)


def stack_members(
    make_model: Callable[[], nn.Module], seeds: Sequence[int]
) -> dict[str, Tensor]:
    """Stacked initial parameters ``{name: (E, ...)}`` of the members :func:`convbias.train.fit_ensemble`
    builds (:func:`convbias.train.build_members`). Its result records step 0 itself
    (``result["step"][0] == 0``), so this is needed only for the parameters, not their metrics."""
    members = [dict(m.named_parameters()) for m in build_members(make_model, seeds)]
    return {n: torch.stack([m[n].detach() for m in members]) for n in members[0]}
