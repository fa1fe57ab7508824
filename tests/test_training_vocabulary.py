"""The five training loops speak one language: History results that start at step 0, one metrics
callable, TrainingDiverged on a NaN loss, and the same numbers as before they were unified."""

import numpy as np
import pytest
import torch
from torch import nn

from convbias.data.patches import PatchDataModel
from convbias.data.signals import random_input, step_signal
from convbias.denoise import FitResult, add_noise, fit_generator
from convbias.models.conv1d import DeepConv1d
from convbias.models.deep_decoder import DeepDecoder
from convbias.models.patch_cnn import PatchCNN
from convbias.one_example import fit_one_example
from convbias.train import (
    EnsembleResult,
    History,
    TrainingDiverged,
    fit,
    fit_ensemble,
    fit_gd,
)


def _blobs(n=48, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, d, generator=g)
    y = torch.arange(n) % classes
    return centers[y] + torch.randn(n, d, generator=g), y


def _mlp():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _weight_norm(target):
    """A metric for any loop: the norm of the first weight (of the model, or per member of the stacked params)."""
    if isinstance(target, dict):
        return {"w": next(iter(target.values())).flatten(1).norm(dim=1)}
    return {"w": next(target.parameters()).norm()}


def run_fit(metrics=None, nan=False):
    X, y = _blobs()
    torch.manual_seed(0)
    return fit(
        _mlp(),
        X * float("nan") if nan else X,
        y,
        steps=7,
        log_every=3,
        batch_size=10,
        metrics=metrics,
        progress=False,
    )


def run_ensemble(metrics=None, nan=False):
    X, y = _blobs()
    return fit_ensemble(
        _mlp,
        X * float("nan") if nan else X,
        y,
        seeds=[0, 1],
        steps=7,
        log_every=3,
        batch_size=10,
        metrics=metrics,
        progress=False,
    )


def run_one_example(metrics=None, nan=False):
    torch.manual_seed(0)
    y = step_signal(32) * (float("nan") if nan else 1.0)
    return fit_one_example(
        DeepConv1d(3, kernel_size=5, members=2),
        y,
        random_input(1, 32, seed=0),
        steps=7,
        log_every=3,
        metrics=metrics,
        progress=False,
    )


def run_generator(metrics=None, nan=False):
    clean = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    target = add_noise(clean, 0.1, seed=1) * (float("nan") if nan else 1.0)
    net = DeepDecoder(out_channels=1, channels=4, depth=3, output_size=16, seed=0)
    return fit_generator(
        net, target, 7, clean=clean, log_every=3, metrics=metrics, progress=False
    )


def run_gd(metrics=None, nan=False):
    data = PatchDataModel(d=12, P=3, K=2, mu_norm=3.0, sigma_p=0.5).sample(20, seed=0)
    X = data.X * float("nan") if nan else data.X
    return fit_gd(
        PatchCNN(12, 4, seeds=[0, 1]),
        X,
        data.y,
        steps=7,
        log_every=3,
        metrics=metrics,
        progress=False,
    )


LOOPS = {
    "fit": run_fit,
    "fit_ensemble": run_ensemble,
    "fit_one_example": run_one_example,
    "fit_generator": run_generator,
    "fit_gd": run_gd,
}


@pytest.mark.parametrize("loop", LOOPS)
def test_every_loop_returns_a_history_from_step_0_to_the_last_step(loop):
    hist = LOOPS[loop]()
    assert isinstance(hist, History)
    assert hist.step == [0, 3, 6, 7]
    assert hist["loss"].shape[0] == 4 and np.isfinite(hist["loss"]).all()


@pytest.mark.parametrize("loop", LOOPS)
def test_every_loop_records_the_same_metrics_callable_at_every_record(loop):
    hist = LOOPS[loop](metrics=_weight_norm)
    w = hist["w"]
    assert len(w) == len(hist.step) == 4
    assert np.isfinite(w).all() and not np.allclose(
        w[0], w[-1]
    )  # measured along training, not once
    if loop == "fit_ensemble":
        assert w.shape == (4, 2)  # one value per member


@pytest.mark.parametrize("loop", LOOPS)
def test_every_loop_refuses_a_mapping_of_metric_callables(loop):
    with pytest.raises(TypeError, match="one callable"):
        LOOPS[loop](metrics={"w": lambda m: 0.0})


@pytest.mark.parametrize("loop", LOOPS)
def test_every_loop_raises_training_diverged_on_a_nan_loss(loop):
    with pytest.raises(TrainingDiverged, match="NaN or infinite"):
        LOOPS[loop](nan=True)


def test_results_that_carry_more_are_histories():
    ens, gen = run_ensemble(), run_generator()
    assert isinstance(ens, EnsembleResult) and ens.history is ens and ens.params
    assert (
        isinstance(gen, FitResult)
        and gen.best_image is not None
        and 0 <= gen.best_step <= 7
    )
    assert gen.loss.dtype == np.float32 and np.array_equal(
        gen.loss, gen["loss"].astype(np.float32)
    )


def test_step_0_is_the_untrained_model():
    X, y = _blobs()
    torch.manual_seed(0)
    model = _mlp()
    before = nn.functional.cross_entropy(model(X), y).item()
    hist = fit(model, X, y, steps=3, log_every=3, progress=False)
    assert hist["loss"][0] == pytest.approx(before) and hist["train_loss"][
        0
    ] == pytest.approx(before)
    ens = fit_ensemble(_mlp, X, y, seeds=[0], steps=3, log_every=3, progress=False)
    assert ens["loss"][0, 0] == pytest.approx(
        before, rel=1e-6
    )  # the member built under seed 0 is `model`


def test_no_loop_draws_its_own_progress_bar():
    """Bars go through convbias.live.progress (off in a static build), not tqdm directly."""
    import inspect

    import convbias.denoise  # noqa: E401
    import convbias.one_example
    import convbias.relax
    import convbias.train

    for module in (
        convbias.train,
        convbias.one_example,
        convbias.denoise,
        convbias.relax,
    ):
        assert "tqdm" not in inspect.getsource(module), module.__name__


# Numbers first: each loop's last recorded loss (float hex) on a fixed tiny problem, measured
# before the loops were unified. Same seed, same numbers: the refactoring changed none of them.
FINGERPRINT = {
    "fit": ["0x1.323c640000000p-7"],
    "fit_ensemble": ["0x1.f54faa0000000p-14", "0x1.5c1f180000000p-9"],
    "fit_one_example": ["0x1.1874500000000p-3", "0x1.0066020000000p-2"],
    "fit_generator": ["0x1.6cfc6a0000000p-4"],
    "fit_gd": ["0x1.64923a0000000p-2", "0x1.6e49d40000000p-2"],
}


def _fingerprint_losses() -> dict[str, list[float]]:
    X, y = _blobs()
    torch.manual_seed(0)
    h = fit(
        _mlp(),
        X,
        y,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-3,
        epochs=4,
        batch_size=10,
        milestones=[0.5],  # of 4 epochs: from epoch 2
        log_every=3,
        X_test=X[:12],
        y_test=y[:12],
        progress=False,
    )
    e = fit_ensemble(
        _mlp,
        X,
        y,
        seeds=[0, 1],
        lr=[0.1, 0.05],
        weight_decay=[0, 1e-3],
        momentum=0.9,
        epochs=4,
        batch_size=10,
        log_every=3,
        X_test=X[:12],
        y_test=y[:12],
        progress=False,
    )
    torch.manual_seed(0)
    one = fit_one_example(
        DeepConv1d(4, kernel_size=5, norm="channel", members=2),
        step_signal(32),
        random_input(1, 32, seed=0),
        steps=30,
        log_every=7,
        progress=False,
    )
    clean = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    gen = fit_generator(
        DeepDecoder(out_channels=1, channels=4, depth=3, output_size=16, seed=0),
        add_noise(clean, 0.1, seed=1),
        25,
        lr=0.01,
        clean=clean,
        log_every=5,
        progress=False,
    )
    dm = PatchDataModel(d=12, P=3, K=2, mu_norm=3.0, sigma_p=0.5)
    tr, te = dm.sample(20, seed=0), dm.sample(30, seed=1)
    gd = fit_gd(
        PatchCNN(12, 4, seeds=[0, 1], kappa=0.5, init_std=0.05),
        tr.X,
        tr.y,
        lr=0.5,
        steps=23,
        log_every=5,
        X_test=te.X,
        y_test=te.y,
        progress=False,
    )
    return {
        "fit": [h["loss"][-1]],
        "fit_ensemble": list(e["loss"][-1]),
        "fit_one_example": list(one["loss"][-1]),
        "fit_generator": [gen["loss"][-1]],
        "fit_gd": list(gd["loss"][-1]),
    }


@pytest.mark.skipif(
    not torch.__version__.startswith("2.13"),
    reason="pinned on the torch the numbers came from",
)
def test_loops_give_the_numbers_they_gave_before_unification():
    got = _fingerprint_losses()
    for loop, expected in FINGERPRINT.items():
        want = [float.fromhex(v) for v in expected]
        assert got[loop] == pytest.approx(want, rel=1e-12, abs=0), loop
