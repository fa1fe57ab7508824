"""Chapter 6's checks fail when its phenomena are broken (tiny sizes, a few seconds each).

Each mutation breaks one thing the chapter claims: the wrong regularizer in the convex
program, too few arrangements, no weight decay, gradient descent stopped early, a dense
contrast that is secretly circular, an untrained network, an embedding of the wrong
network, labels that are not randomized, or a bound measured on untrained weights.

The landscape statistics (share of GD runs reaching the optimum, filters of the best run)
are reported, not checked: a test shows them change while the convex checks still pass.
"""

from __future__ import annotations

import copy

import pytest
import torch

from convbias import capacity as cap
from convbias import convex_cnn as cc
from convbias import spectral as sp
from convbias.checks import failed
from convbias.data.real import Split, load_digits
from convbias.efcn import to_fcn

TINY_CONVEX = dict(
    n=6, d=8, h=2, stride=2, m=8, runs=8, steps=1500, seed=0, progress=False
)
TINY_SPECTRAL = dict(n=12, d=16, freqs=(2,), steps=600, seed=0)


@pytest.fixture(scope="module")
def convex_base():
    return cc.convex_vs_gd(**TINY_CONVEX)


def test_unmutated_convex_experiment_passes_at_tiny_size(convex_base):
    assert failed(cc.convex_checks(convex_base)) == []


@pytest.mark.parametrize(
    "mutation,check",
    [
        (dict(regularizer="squared_l2"), "recovered_objective_relerr"),
        (dict(regularizer="squared_l2"), "recovered_filters"),
        (dict(sampled=2), "convex_lower_bound"),
    ],
)
def test_convex_checks_fail_under_mutation(mutation, check):
    r = cc.convex_vs_gd(**{**TINY_CONVEX, **mutation})
    assert check in failed(cc.convex_checks(r))


def test_landscape_statistics_are_reported_not_required(convex_base):
    """GD stopped early reaches the optimum in no run: the statistic drops to 0 while the
    theorem's checks (lower bound, recovery) still pass."""
    base = cc.landscape_statistics(convex_base)
    assert base["gd_success_fraction"] > 0 and base["best_gd_run_filters"] == 1.0
    early = cc.convex_vs_gd(**{**TINY_CONVEX, "steps": 30})
    assert cc.landscape_statistics(early)["gd_success_fraction"] == 0.0
    assert failed(cc.convex_checks(early)) == []
    names = {c.name for c in cc.convex_checks(early)}
    assert names.isdisjoint({"gd_success_fraction", "best_gd_run_filters"})


@pytest.fixture(scope="module")
def spectral_base():
    return sp.spectral_experiment(**TINY_SPECTRAL)


def test_unmutated_spectral_experiment_passes_at_tiny_size(spectral_base):
    assert failed(sp.spectral_checks(spectral_base)) == []


@pytest.mark.parametrize(
    "mutation,check",
    [
        (dict(regularizer="spectral_l1_unitary_scale"), "spectral_objective_gap"),
        (dict(regularizer="spectral_l1_unitary_scale"), "spectrum_mismatch"),
        (
            dict(weight_decay=False, n=20, d=32, freqs=(1, 3), steps=1500),
            "cnn_spectral_support",
        ),
        (dict(weight_decay=False), "dense_objective_gap"),
        (dict(steps=40), "spectral_objective_gap"),
        (dict(contrast="circular"), "dense_spectral_fraction"),
    ],
)
def test_spectral_checks_fail_under_mutation(mutation, check):
    r = sp.spectral_experiment(**{**TINY_SPECTRAL, **mutation})
    assert check in failed(sp.spectral_checks(r))


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return Split(
        d.X_train[:400], d.y_train[:400], d.X_test[:200], d.y_test[:200], d.source
    )


TINY_CAPACITY = dict(channels=8, epochs=10, progress=False)


def test_unmutated_capacity_experiment_passes_at_tiny_size(digits):
    assert (
        failed(cap.capacity_checks(cap.capacity_experiment(digits, **TINY_CAPACITY)))
        == []
    )


def _embed_an_untrained_copy(model, shape):
    other = copy.deepcopy(model)
    torch.manual_seed(123)
    for p in other.parameters():
        p.data.normal_(0, 0.3)
    return to_fcn(other, shape)


@pytest.mark.parametrize(
    "mutation,check",
    [
        (dict(epochs=0), "cnn_test_acc"),
        (dict(embed=_embed_an_untrained_copy), "efcn_exact_relerr"),
    ],
)
def test_capacity_checks_fail_under_mutation(digits, mutation, check):
    r = cap.capacity_experiment(digits, **{**TINY_CAPACITY, **mutation})
    assert check in failed(cap.capacity_checks(r))


TINY_LABELS = dict(n_train=128, epochs=40, milestones=(0.625, 0.8), progress=False)


@pytest.fixture(scope="module")
def labels_base(digits):
    return cap.labels_experiment(digits, **TINY_LABELS)


def test_unmutated_labels_experiment_passes_at_tiny_size(labels_base):
    assert failed(cap.labels_checks(labels_base)) == []


@pytest.mark.parametrize(
    "mutation,check",
    [
        (dict(randomize=False), "random_label_gap_increase"),
        (dict(randomize=False), "kernel_bound_random_vs_true"),
        (dict(trained=False), "random_labels_fitted"),
        (dict(trained=False), "kernel_bound_random_vs_true"),
        (dict(epochs=2, milestones=None), "random_labels_fitted"),
    ],
)
def test_labels_checks_fail_under_mutation(digits, mutation, check):
    r = cap.labels_experiment(digits, **{**TINY_LABELS, **mutation})
    assert check in failed(cap.labels_checks(r))
