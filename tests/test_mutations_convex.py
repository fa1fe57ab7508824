"""Chapter 6's checks fail when its phenomena are broken (tiny sizes, a few seconds each).

Each mutation breaks one thing the chapter claims: the wrong regularizer in the convex
program, too few arrangements, no weight decay, gradient descent stopped early, a dense
contrast that is secretly circular, zero instead of circular padding, a shallow network,
an untrained network, or an embedding of the wrong network.
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
        (dict(weight_decay=False), "gd_success_fraction"),
        (dict(weight_decay=False), "best_gd_run_filters"),
        (dict(steps=30), "gd_success_fraction"),
    ],
)
def test_convex_checks_fail_under_mutation(mutation, check):
    r = cc.convex_vs_gd(**{**TINY_CONVEX, **mutation})
    assert check in failed(cc.convex_checks(r))


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
        (dict(padding_mode="zeros"), "rho_ratio_vs_sqrt_positions"),
        (dict(depth=1), "bound_orders_of_magnitude"),
        (dict(epochs=0), "cnn_test_acc"),
        (dict(embed=_embed_an_untrained_copy), "efcn_exact_relerr"),
    ],
)
def test_capacity_checks_fail_under_mutation(digits, mutation, check):
    r = cap.capacity_experiment(digits, **{**TINY_CAPACITY, **mutation})
    assert check in failed(cap.capacity_checks(r))
