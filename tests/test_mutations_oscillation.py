"""Break the phenomenon on purpose: the chapter's named checks must fail.

The chapter's experiment (:func:`convbias.oscillation.run_rates` + ``chapter_checks``) at
tiny size: an MLP on 8x8 digits, full-batch GD at a small and a large learning rate.
Unmutated, every check passes; each mutation removes one part of the phenomenon.
"""

from __future__ import annotations

import pytest
import torch

from convbias.checks import failed
from convbias.data import load_digits
from convbias.models.layered import layered_mlp
from convbias.oscillation import (
    chapter_checks,
    input_minus_output,
    reversed_layers,
    run_rates,
)

LRS = dict(small=0.3, large=1.5)
KW = dict(steps=300, sharpness_every=50, lanczos_steps=8, progress=False)


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    d = load_digits()
    return d.X_train[:256], d.y_train[:256]


def runs(digits, lrs=LRS, **kw):
    X, y = digits
    return run_rates(
        lambda: layered_mlp(64, [16, 16], 10), X, y, lrs, seed=0, **{**KW, **kw}
    )


@pytest.fixture(scope="module")
def baseline(digits):
    return runs(digits)


def test_unmutated_tiny_experiment_passes_every_check(baseline):
    checks = chapter_checks(baseline["large"], baseline["small"])
    assert failed(checks) == [], [c.describe() for c in checks]


def test_learning_rate_far_below_two_over_sharpness_removes_the_oscillation(
    digits, baseline
):
    slow = runs(digits, dict(large=0.1))["large"]  # 2/lr = 20, sharpness below 2
    bad = failed(chapter_checks(slow, baseline["small"]))
    assert {"osc_every_layer", "sharpness_at_edge", "loss_non_monotone"} <= set(bad)


def test_momentum_moves_the_edge_and_damps_the_oscillation(digits, baseline):
    heavy = runs(digits, dict(large=LRS["large"]), optimizer="momentum", momentum=0.9)[
        "large"
    ]
    bad = failed(chapter_checks(heavy, baseline["small"]))
    assert {"osc_every_layer", "sharpness_at_edge"} <= set(
        bad
    )  # its edge is 2(1 + beta)/lr


def test_adam_does_not_sit_at_two_over_eta(digits, baseline):
    adam = runs(digits, dict(large=0.01), optimizer="adam")["large"]
    assert "sharpness_at_edge" in failed(chapter_checks(adam, baseline["small"]))


def test_shuffled_layer_labels_are_caught(digits, baseline):
    shuffled = runs(digits, dict(large=LRS["large"]), shuffle_layers=True)["large"]
    assert "layers_are_modules" in failed(chapter_checks(shuffled, baseline["small"]))


def test_a_small_rate_at_the_edge_is_not_calm(digits, baseline):
    # swapping in the large run as the "small" one: the calm check must notice
    assert "small_rate_calm" in failed(
        chapter_checks(baseline["large"], baseline["large"])
    )


def test_input_layer_claim_fails_when_input_and_output_labels_swap():
    # the chapter's own mini-batch SGD run at the small rate (its claim-4 check), then the
    # same run with its layers listed output first
    d = load_digits()
    X, y = d.X_train[:512], d.y_train[:512]
    sgd = run_rates(
        lambda: layered_mlp(64, [32, 32], 10),
        X,
        y,
        {"s": 0.3},
        steps=1000,
        seed=0,
        batch_size=32,
        sharpness_every=10**6,
        lanczos_steps=2,
        progress=False,
    )["s"]
    large = sgd  # the other checks are not under test here
    assert input_minus_output(sgd) < 0
    assert "input_over_output" not in failed(chapter_checks(large, sgd, claim4=sgd))
    assert "input_over_output" in failed(
        chapter_checks(large, sgd, claim4=reversed_layers(sgd))
    )
