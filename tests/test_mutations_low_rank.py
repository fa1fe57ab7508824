"""Chapter 2's checks fail when its phenomenon is broken on purpose.

Each test runs one of the chapter's experiments at a tiny size (a small Gaussian
mixture and MLP, one seed) with one mutation and asserts that the named checks of
:func:`convbias.lowrank.grid_checks`, :func:`convbias.lowrank.le_jegelka_checks`,
:func:`convbias.collapse.collapse_checks` and
:func:`convbias.lowrank.weight_decay_srank_check` FAIL; the unmutated tiny runs pass
every check. One mutation is expected to pass: full-batch gradient descent in place
of SGD at equal steps, because the chapter finds no effect of batch noise on the rank.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convbias.checks import failed
from convbias.collapse import collapse_checks, collapse_metrics
from convbias.data.mixtures import gaussian_mixture, separable
from convbias.lowrank import (
    grid_checks,
    layer_ranks,
    le_jegelka_checks,
    top_alignment,
    weight_decay_srank_check,
)
from convbias.models.mlp import MLP
from convbias.sweep import run_sweep
from convbias.train import fit_ensemble

D, C, WIDTHS = 16, 4, [32, 32]
FULL_RANK = (16 + 32) / 2
B_SMALL, B_LARGE, LR, WD, EPOCHS = 8, 64, 0.3, 0.06, 32


@pytest.fixture(scope="module")
def mixture():
    return _mixture()


@functools.lru_cache(maxsize=None)
def _mixture():
    return gaussian_mixture(
        n_train=128, n_test=256, d=D, n_classes=C, separation=4.0, seed=0
    )


@functools.lru_cache(maxsize=None)
def _sweep(batch_sizes, weight_decays, epochs=None, steps=None, init_scale=1.0):
    """One tiny run of the chapter's sweep (cached: mutations share their unmutated parts)."""
    data = _mixture()
    return run_sweep(
        lambda: MLP(D, WIDTHS, C, init_scale=init_scale),
        data.X_train,
        data.y_train,
        batch_sizes=list(batch_sizes),
        lrs=[LR],
        weight_decays=list(weight_decays),
        seeds=[0],
        epochs=epochs,
        steps=steps,
        milestones=[0.75],
        records=2,
        X_test=data.X_test,
        y_test=data.y_test,
        progress=False,
    )


def grid(
    mixture,
    *,
    weight_decay=WD,
    epochs=EPOCHS,
    control_steps=None,
    init_scale=1.0,
    gd=False,
):
    """The chapter's grid (equal epochs) and its equal-steps control (full-batch GD), tiny.

    ``gd=True`` trains every batch size of the grid with full-batch GD for the steps that
    batch size would take (SGD replaced by GD at equal steps)."""
    n = len(mixture.X_train)
    sweep = _sweep(
        (B_SMALL, B_LARGE), (0.0, weight_decay), epochs=epochs, init_scale=init_scale
    )
    if gd:
        sweep = copy.copy(sweep)
        sweep.final = sweep.final.copy()
        for B in (B_SMALL, B_LARGE):
            alone = _sweep(
                (n,),
                (0.0, weight_decay),
                steps=epochs * (n // B),
                init_scale=init_scale,
            ).final
            rows = sweep.final.batch_size == B
            for key in ("rank", "srank", "test_acc"):
                sweep.final.loc[rows, key] = alone[key].to_numpy()
    control = _sweep(
        (n,),
        (weight_decay,),
        steps=control_steps or epochs * (n // B_SMALL),
        init_scale=init_scale,
    )
    return grid_checks(sweep, control, FULL_RANK)


GRID_FAILS = {
    "weight_decay_off": (
        dict(weight_decay=1e-12),
        {"rank_cut_corner", "rank_drop_smallest_batch", "batch_trend_equal_epochs"},
    ),
    "too_few_steps": (dict(epochs=4), {"rank_cut_corner", "batch_trend_equal_epochs"}),
    "weight_decay_too_large": (dict(weight_decay=1.0), {"accuracy_corner"}),
    "small_init": (dict(init_scale=0.05), {"rank_lambda0_full"}),
    "control_not_at_equal_steps": (dict(control_steps=EPOCHS), {"equal_steps_gap"}),
}


def test_unmutated_tiny_grid_passes_every_check(mixture):
    checks = grid(mixture)
    assert [c.name for c in checks] == [
        "rank_lambda0_full",
        "rank_cut_corner",
        "rank_drop_smallest_batch",
        "accuracy_corner",
        "batch_trend_equal_epochs",
        "equal_steps_gap",
    ]
    assert failed(checks) == []


@pytest.mark.parametrize("mutation", sorted(GRID_FAILS))
def test_grid_mutation_fails_its_checks(mixture, mutation):
    change, must_fail = GRID_FAILS[mutation]
    assert must_fail <= set(failed(grid(mixture, **change))), mutation


def test_full_batch_gd_at_equal_steps_passes_as_the_chapter_says(mixture):
    """No check depends on SGD's batch noise: GD at the same steps reproduces every claim."""
    assert failed(grid(mixture, gd=True)) == []


# ----------------------------------------------------------------------------- Le & Jegelka
def le_jegelka(steps=2000, negative_margin=10.0, init_scale=0.1):
    sep = separable(48, 200, d=8, margin=0.5, negative_margin=negative_margin, seed=0)
    make = lambda: MLP(8, [16, 16, 16], 1, bias=False, init_scale=init_scale)
    names = [n for n, _ in make().named_parameters()]

    def metrics(params):
        out = layer_ranks(params, names[1:-1])
        out["align"] = torch.stack(
            [
                top_alignment(params[a], params[b])
                for a, b in zip(names[:-2], names[1:-1])
            ]
        ).mean(0)
        return out

    h = fit_ensemble(
        make,
        sep.X_train,
        sep.y_train,
        seeds=[0],
        lr=1.0,
        loss="logistic",
        steps=steps,
        log_every=steps,
        metrics=metrics,
        progress=False,
    )
    return le_jegelka_checks(
        h["srank"][0], h["srank"][-1], h["align"][0], h["align"][-1]
    )  # step 0 and the end


def test_unmutated_tiny_le_jegelka_passes():
    assert failed(le_jegelka()) == []


@pytest.mark.parametrize(
    "mutation, change, must_fail",
    [
        (
            "too_few_steps",
            dict(steps=20),
            {"lj_srank_end", "lj_srank_drop", "lj_alignment", "lj_alignment_gain"},
        ),
        ("equal_margins", dict(negative_margin=0.5), {"lj_srank_end"}),
        ("large_init", dict(init_scale=1.0), {"lj_srank_end", "lj_srank_drop"}),
    ],
)
def test_le_jegelka_mutation_fails_its_checks(mutation, change, must_fail):
    assert must_fail <= set(failed(le_jegelka(**change))), mutation


# ----------------------------------------------------------------------------- neural collapse
def collapse(steps=1000, weight_decays=(5e-3, 0.0)):
    """The chapter's collapse experiment at its quick size, one seed per arm.

    Whether NC1 falls further with or without weight decay depends on the size: on the
    tiny 4-class mixture with two layers of 32 the order reverses, so this test keeps the
    chapter's 8-class mixture and three layers of 64."""
    data = _collapse_mixture()
    make = lambda: MLP(32, [64, 64, 64], 8)
    metrics = collapse_metrics(make(), data.X_train, data.y_train, 8)
    Y = F.one_hot(data.y_train, 8).float()
    h = fit_ensemble(
        make,
        data.X_train,
        Y,
        seeds=[0, 0],
        lr=0.2,
        weight_decay=list(weight_decays),
        loss="mse",
        batch_size=64,
        steps=steps,
        log_every=steps,
        metrics=metrics,
        progress=False,
    )
    return collapse_checks(
        h["nc1"][0],
        h["nc1"][-1],
        h["etf_distance"][0],
        h["etf_distance"][-1],
        [True, False],
    )


@functools.lru_cache(maxsize=None)
def _collapse_mixture():
    return gaussian_mixture(
        n_train=256, n_test=64, d=32, n_classes=8, separation=4.0, seed=0
    )


def test_unmutated_collapse_passes():
    assert failed(collapse()) == []


@pytest.mark.parametrize(
    "mutation, change, must_fail",
    [
        ("too_few_steps", dict(steps=10), {"nc1_drop_wd", "etf_distance_drop_wd"}),
        (
            "weight_decay_in_both_arms",
            dict(weight_decays=(5e-3, 5e-3)),
            {"nc1_further_without_wd"},
        ),
    ],
)
def test_collapse_mutation_fails_its_checks(mutation, change, must_fail):
    assert must_fail <= set(failed(collapse(**change))), mutation


# ----------------------------------------------------------------------------- weight decay, stable rank
def mlp_srank_check(mixture, weight_decay=3e-2):
    sweep = run_sweep(
        lambda: MLP(D, [64, 64], C),
        mixture.X_train,
        mixture.y_train,
        batch_sizes=[16],
        lrs=[0.2],
        weight_decays=[0.0, weight_decay],
        seeds=[0],
        epochs=20,
        records=1,
        progress=False,
    )
    srank = sweep.final.set_index("weight_decay")["srank"]
    return weight_decay_srank_check(srank[0.0], srank[weight_decay])


def test_weight_decay_lowers_the_mlp_stable_rank_and_fails_without_it(mixture):
    assert failed(mlp_srank_check(mixture)) == []
    assert failed(mlp_srank_check(mixture, weight_decay=1e-12)) == [
        "mnist_mlp_srank_wd"
    ]


def test_checks_refuse_mismatched_inputs(mixture):
    with pytest.raises(ValueError, match="as many runs"):
        collapse_checks(
            np.ones(3), np.ones(3), np.ones(3), np.ones(3), [True, True, False]
        )
