"""Chapter 1's checks fail when its phenomenon is broken on purpose.

Each test runs the chapter's experiment (:func:`run_sigma_sweep` on the patch model,
:func:`run_noise_sweep` on MNIST) at a tiny size, one seed, with one mutation, and
asserts that the named checks of :mod:`convbias.intrinsic_dimension` FAIL; the
unmutated tiny runs pass every check. The matrix (mutation x check) is in
``SYNTHETIC_FAILS`` and ``MNIST_FAILS``: the checks each mutation must fail.
"""

from __future__ import annotations

import pytest

from convbias import intrinsic_dimension, train
from convbias import intrinsic_dimension as ID
from convbias.checks import failed
from convbias.data.background import add_background_noise
from convbias.data.patches import PatchDataModel
from convbias.data.real import Split, load_mnist
from convbias.intrinsic_dimension import run_noise_sweep, run_sigma_sweep
from convbias.sweep import stack_members

SIGMAS = [0.0, 0.5, 1.5]
SYNTHETIC = dict(
    n_train=200, n_test=500, m=20, kappa=0.5, init_std=0.01, lr=1.0, steps=300
)

#: mutation -> (changes to the experiment, checks that must fail)
SYNTHETIC_FAILS = {
    "too_few_steps": (dict(steps=5), {"filter_srank_max", "filter_signal_subspace"}),
    "large_init": (dict(init_std=0.5), {"filter_srank_max", "filter_signal_subspace"}),
    "few_samples": (dict(n_train=50), {"filter_signal_subspace", "test_accuracy"}),
    "noise_only": (
        dict(mu_norm=1e-4),
        {"filter_srank_max", "filter_signal_subspace", "test_accuracy"},
    ),
    "very_large_noise": (
        dict(sigmas=[0.0, 0.5, 1.5, 3.0], regime=3.0),
        {"filter_srank_growth"},
    ),
    "too_little_noise": (dict(sigmas=[0.0, 0.25], regime=0.25), {"data_srank_growth"}),
}


def synthetic_checks(sigmas=SIGMAS, regime=ID.REGIME, mu_norm=5.0, **change):
    data = PatchDataModel(d=100, P=4, K=3, mu_norm=mu_norm)
    sweep = run_sigma_sweep(
        data, sigmas, [0], progress=False, **{**SYNTHETIC, **change}
    )
    return ID.synthetic_checks(sweep, regime)


def test_unmutated_tiny_synthetic_run_passes_every_check():
    checks = synthetic_checks()
    assert [c.name for c in checks] == [
        "data_srank_growth",
        "filter_srank_growth",
        "filter_srank_max",
        "filter_signal_subspace",
        "test_accuracy",
    ]
    assert failed(checks) == []


@pytest.mark.parametrize("mutation", sorted(SYNTHETIC_FAILS))
def test_synthetic_mutation_fails_its_checks(mutation):
    change, must_fail = SYNTHETIC_FAILS[mutation]
    assert must_fail <= set(failed(synthetic_checks(**change))), mutation


def test_every_synthetic_check_is_failed_by_some_mutation():
    covered = set().union(*(fails for _, fails in SYNTHETIC_FAILS.values()))
    assert covered == {c.name for c in synthetic_checks(steps=5)}


# ----------------------------------------------------------------------------- MNIST
MNIST_SIGMAS = [0.0, 1.0]


@pytest.fixture(scope="module")
def mnist():
    split = load_mnist(source="offline")
    return Split(
        split.X_train[:2000],
        split.y_train[:2000],
        split.X_test[:1000],
        split.y_test[:1000],
        split.source,
    )


def mnist_checks(mnist, sigmas=MNIST_SIGMAS, **model_kw):
    sweep = run_noise_sweep(
        mnist,
        sigmas,
        [0],
        add_background_noise,
        model_kw=dict(width=8, **model_kw),
        epochs=4,
        progress=False,
    )
    return ID.mnist_checks(sweep)


def test_unmutated_tiny_mnist_run_passes_every_check(mnist):
    checks = mnist_checks(mnist)
    assert [c.name for c in checks] == [
        "mnist_data_srank_growth",
        "mnist_filter_vs_clean_data",
        "mnist_test_accuracy",
    ]
    assert failed(checks) == []


def test_untrained_mnist_net_fails(mnist, monkeypatch):
    def untrained(make_model, X, y, *, seeds, **kw):
        kw.update(epochs=None, steps=1)
        result = train.fit_ensemble(make_model, X, y, seeds=seeds, **kw)
        result.params = stack_members(make_model, seeds)  # the filters as initialised
        return result

    monkeypatch.setattr(intrinsic_dimension, "fit_ensemble", untrained)
    assert {"mnist_filter_vs_clean_data", "mnist_test_accuracy"} <= set(
        failed(mnist_checks(mnist))
    )


def test_large_first_layer_init_fails(mnist):
    """Three times PyTorch's default scale (the chapter uses a tenth of it). At the default
    scale itself the filters end at 1.5 times the clean patches' stable rank: still passing."""
    assert "mnist_filter_vs_clean_data" in failed(
        mnist_checks(mnist, first_init_scale=3.0)
    )


def test_too_little_background_noise_fails(mnist):
    assert "mnist_data_srank_growth" in failed(mnist_checks(mnist, sigmas=[0.0, 0.1]))


def test_signal_subspace_overlap_known_answers():
    import torch

    U = torch.eye(6)[:, :2]  # span of e_1, e_2 in R^6
    inside = torch.tensor(
        [[3.0, 0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0, 0], [0, 0, 0, 0, 0.1, 0]]
    )
    assert ID.signal_subspace_overlap(inside, U) == pytest.approx(1.0)
    outside = torch.tensor(
        [[0, 0, 3.0, 0, 0, 0], [0, 0, 0, 2.0, 0, 0], [1.0, 0, 0, 0, 0, 0]]
    )
    assert ID.signal_subspace_overlap(outside, U) == pytest.approx(0.0, abs=1e-12)
    half = torch.tensor([[1.0, 0, 1.0, 0, 0, 0]])
    assert ID.signal_subspace_overlap(half, U, k=1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k must lie"):
        ID.signal_subspace_overlap(half, U, k=3)
