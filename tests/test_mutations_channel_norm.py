"""Chapter 3's checks fail when its phenomenon is broken on purpose (tiny sizes, one seed).

Each mutation reruns the phenomenon module's experiment (:mod:`convbias.gradients`) with one
natural change and asserts the named check FAILS; the unmutated tiny run passes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch.nn.functional as F

from convbias.checks import failed
from convbias.data.real import load_image
from convbias.data.signals import random_input, step_signal
from convbias.gradients import (
    ARMS,
    ENERGY_ARMS,
    batch_norm_gap,
    channel_norm_checks,
    energy_init_checks,
    fit_arms,
    gradient_norms_vs_depth,
    init_spectra,
)
from convbias.models.deep_decoder import DeepDecoder
from convbias.one_example import fit_one_example

N, KERNEL, DEPTH, STEPS, MEMBERS = 128, 15, 10, 400, 2
GRAD_DEPTHS = (5, 10, 30)
CONFIG = f"linear, depth {DEPTH}"
BOTH = {"channel": "channel", "bias": "channel"}  # CN in both arms
NEITHER = {"channel": "bias", "bias": "bias"}  # CN in neither arm


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """These runs are calibrated on one torch thread."""


@lru_cache(maxsize=None)
def linear_nets(arms: tuple) -> tuple[dict, dict]:
    """Final losses at depth 10 and median first-layer gradients at init, for both arms."""
    arms = dict(arms)
    x, y = random_input(1, N, seed=0), step_signal(N)
    curves = fit_arms(
        [(CONFIG, dict(depth=DEPTH, kernel_size=KERNEL), x, y, MEMBERS, DEPTH, STEPS)],
        0,
        arms=arms,
        progress=False,
    )
    final = {key: h["loss"][-1] for key, h in curves.items()}
    grads = {
        arm: gradient_norms_vs_depth(
            GRAD_DEPTHS, x, y, members=4, seed=0, norm=norm, kernel_size=KERNEL
        )
        for arm, norm in arms.items()
    }
    first = {
        arm: np.array([np.median(g[d][0]) for d in GRAD_DEPTHS])
        for arm, g in grads.items()
    }
    return final, first


@lru_cache(maxsize=None)
def deep_decoder(normalize: bool) -> float:
    image = F.interpolate(
        load_image("camera", 64, gray=True)[None], size=32, mode="area"
    )
    net = DeepDecoder(
        1, channels=16, depth=3, output_size=32, normalize=normalize, seed=0
    )
    return float(
        fit_one_example(net, image, steps=150, lr=0.1, momentum=0.9, log_every=5)[
            "loss"
        ][-1, 0]
    )


def checks(arms=ARMS, dd=(True, False), unbiased=False, gain=1.0):
    final, first = linear_nets(tuple(arms.items()))
    return channel_norm_checks(
        final,
        first,
        GRAD_DEPTHS,
        ratio_config=CONFIG,
        escape_configs=[CONFIG],
        bn_gap=batch_norm_gap(unbiased=unbiased),
        spectrum_peak=float(np.median(init_spectra(30, KERNEL, N, 8, 30, gain).max(1))),
        dd_final={True: deep_decoder(dd[0]), False: deep_decoder(dd[1])},
        min_escaped=1,
    )


def test_unmutated_passes():
    assert failed(checks()) == []


def test_channel_norm_in_both_arms_fails():
    assert {"depth10_ratio", "escaped_without_cn"} <= set(failed(checks(arms=BOTH)))


def test_channel_norm_in_neither_arm_fails():
    assert {"depth10_ratio", "escaped_with_cn", "grad_drop_with_cn"} <= set(
        failed(checks(arms=NEITHER))
    )


def test_deep_decoder_without_normalization_in_both_fails():
    assert "deep_decoder_ratio" in failed(checks(dd=(False, False)))


def test_unbiased_variance_is_not_batch_norm():
    # channel norm with the N-1 variance (the authors' code) differs from batch norm on one example
    assert "batchnorm_is_cn" in failed(checks(unbiased=True))


def test_energy_preserving_init_fails_the_spectrum_check():
    # filters scaled by sqrt(3): each layer's expected energy is 1 and the product no longer collapses
    assert "spectrum_peak_deep" in failed(checks(gain=3**0.5))


def test_grad_drop_without_cn_fails_with_cn_in_both_arms():
    assert "grad_drop_without_cn" in failed(checks(arms=BOTH))


@lru_cache(maxsize=None)
def energy_arm(
    train_norm: str = "bias", grad_norm: str = "bias", init: str = "energy"
) -> tuple[dict, np.ndarray]:
    """The energy arm at depth 10: final losses and median first-layer gradients at init.

    Unmutated, its nets have no CN and start from the same filters as :func:`linear_nets`'s
    arms times the energy gain; the arguments put CN back or leave the gain out.
    """
    x, y = random_input(1, N, seed=0), step_signal(N)
    arch = dict(depth=DEPTH, kernel_size=KERNEL, init=init)
    curves = fit_arms(
        [(CONFIG, arch, x, y, MEMBERS, DEPTH, STEPS)],
        0,
        arms={name: train_norm for name in ENERGY_ARMS},
        progress=False,
    )
    grads = gradient_norms_vs_depth(
        GRAD_DEPTHS,
        x,
        y,
        members=4,
        seed=0,
        norm=grad_norm,
        init=init,
        kernel_size=KERNEL,
    )
    first = np.array([np.median(grads[d][0]) for d in GRAD_DEPTHS])
    return {key: h["loss"][-1] for key, h in curves.items()}, first


def energy_checks(**mutation):
    final, first = linear_nets(tuple(ARMS.items()))
    energy_final, energy_first = energy_arm(**mutation)
    return energy_init_checks(
        {**final, **energy_final}, {**first, "energy": energy_first}, GRAD_DEPTHS
    )


def test_energy_init_unmutated_passes():
    assert failed(energy_checks()) == []


def test_energy_init_scale_not_applied_fails():
    # the "energy" nets drawn with the default init: their gradients vanish like the control's
    assert {"energy_init_gradient_gain", "energy_init_gradients_do_not_vanish"} <= set(
        failed(energy_checks(init="default"))
    )


def test_energy_init_gradients_measured_on_the_cn_net_fail():
    # CN is scale invariant: its gradient does not gain sqrt(3)^(L-1) from the scaled filters
    assert "energy_init_gradient_gain" in failed(energy_checks(grad_norm="channel"))


def test_energy_init_nets_trained_with_cn_fail():
    # with CN put back the scaled nets escape, and the "no escape without CN" check sees it
    assert "energy_init_escaped_without_cn" in failed(
        energy_checks(train_norm="channel")
    )
