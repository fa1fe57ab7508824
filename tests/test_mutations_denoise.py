"""Chapter 4's checks fail when its phenomenon is broken on purpose (tiny sizes, one seed).

Each mutation reruns the phenomenon module's experiment (:mod:`convbias.denoise`) with
one natural change and asserts the named check FAILS; the unmutated tiny run passes.
"""

from __future__ import annotations

import dataclasses

import pytest

from convbias.checks import failed
from convbias.data.real import load_image
from convbias.denoise import (
    add_noise,
    architecture_checks,
    compressive_sensing_checks,
    compressive_sensing_sweep,
    denoising_experiment,
    early_stopping_checks,
    fit_targets,
    overfitting_checks,
    uniform_noise,
)
from convbias.models.deep_decoder import (
    DeepDecoder,
    TransposedConvGenerator,
    make_generator,
)

SIZE, K, DEPTH, STEPS, FIT_STEPS = (
    32,
    64,
    4,
    1000,
    150,
)  # the quick profile's denoising run


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """These runs are calibrated on one torch thread."""


@pytest.fixture(scope="module")
def images():
    clean = load_image("camera", SIZE, gray=True)[None]
    return clean, add_noise(clean, 25 / 255, seed=1), uniform_noise(clean.shape, seed=2)


def deep_decoder(k=K, depth=DEPTH):
    return lambda: DeepDecoder(1, channels=k, depth=depth, output_size=SIZE, seed=0)


def denoise(images, make_net, steps=STEPS, **kw):
    return denoising_experiment(make_net, *images, steps, FIT_STEPS, log_every=25, **kw)


@pytest.fixture(scope="module")
def denoising(images):
    return denoise(images, deep_decoder())


def test_unmutated_denoising_passes(denoising):
    assert failed(early_stopping_checks(denoising)) == []


def test_no_early_stopping_fails_the_gain(denoising):
    # same fits, but the image kept is where the fit ended instead of the best iterate
    checks = early_stopping_checks(dataclasses.replace(denoising, early_stopping=False))
    assert "denoise_gain_db" in failed(checks)


def test_too_few_steps_fails_the_decline(images, denoising):
    short = denoise(
        images, deep_decoder(), steps=denoising.noisy_fit.best_step
    )  # stopped at the peak
    assert "psnr_decline_db" in failed(early_stopping_checks(short))


def test_transposed_conv_net_fails_the_noise_image_ratio(images):
    swapped = denoise(
        images,
        lambda: TransposedConvGenerator(
            1, channels=16, depth=DEPTH, output_size=SIZE, seed=0
        ),
        steps=FIT_STEPS,
    )
    assert "noise_image_ratio" in failed(early_stopping_checks(swapped))


@pytest.fixture(scope="module")
def arch_ratios(images):
    clean, _, noise = images
    ratios = {}
    for name in ("deep_decoder", "fixed_kernel", "conv3x3", "transposed"):
        fits = fit_targets(
            lambda name=name: make_generator(
                name, out_channels=1, channels=16, depth=DEPTH, output_size=SIZE, seed=0
            ),
            {"image": clean, "noise": noise},
            FIT_STEPS,
            log_every=25,
        )
        ratios[name] = fits["noise"].late_loss() / fits["image"].late_loss()
    return ratios


def test_unmutated_architectures_pass(arch_ratios):
    assert failed(architecture_checks(arch_ratios)) == []


@pytest.mark.parametrize(
    "slot, swapped_in, check",
    [
        (
            "deep_decoder",
            "transposed",
            "deep_decoder_ratio",
        ),  # fixed upsampling -> trainable transposed convs
        (
            "fixed_kernel",
            "conv3x3",
            "fixed_kernel_ratio",
        ),  # fixed [1,3,3,1] filter -> trainable 3x3
        ("conv3x3", "fixed_kernel", "conv3x3_ratio"),  # trainable 3x3 -> fixed filter
        (
            "transposed",
            "deep_decoder",
            "transposed_ratio",
        ),  # transposed convs -> fixed upsampling
    ],
)
def test_swapped_architecture_fails(arch_ratios, slot, swapped_in, check):
    assert check in failed(
        architecture_checks({**arch_ratios, slot: arch_ratios[swapped_in]})
    )


@pytest.fixture(scope="module")
def over(images):
    clean, noisy, _ = images
    return {
        k: fit_targets(
            deep_decoder(k, 3), {"noisy": noisy}, 300, clean=clean, log_every=25
        )["noisy"]
        for k in (16, 64)
    }


def test_unmutated_overfitting_passes(over):
    assert failed(overfitting_checks(over)) == []


def test_no_overparameterization_fails_the_overfitting_checks(over):
    # the wide network replaced by the narrow one: nothing over-fits more
    assert {"overfit_drop_db", "overfit_gap_db"} <= set(
        failed(overfitting_checks({16: over[16], 64: over[16]}))
    )


@pytest.fixture(scope="module")
def cs():
    image = load_image("shepp_logan_phantom", 64, gray=True)[None]
    n = image.numel()
    return compressive_sensing_sweep(
        image,
        [int(0.05 * n), int(0.3 * n)],
        lambda: DeepDecoder(channels=32, depth=5, output_size=64, seed=0),
        600,
        lr=0.005,
        baseline_iters=150,
    )


def test_unmutated_compressive_sensing_passes(cs):
    assert failed(compressive_sensing_checks(cs)) == []


def test_sparse_dct_baseline_fails_the_compressive_sensing_checks(cs):
    # the deep decoder's recovery replaced by the classical sparse-DCT recovery
    assert set(failed(compressive_sensing_checks(cs, method="baseline"))) == {
        "cs_rise_vs_baseline_db",
        "cs_over_baseline_db",
    }
