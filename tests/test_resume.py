"""The package's sweeps, given a cache name, store each item and resume an interrupted sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convbias import cache as rc
from convbias.data.canvas import load_canvas, standardize
from convbias.data.mixtures import gaussian_mixture
from convbias.data.patches import PatchDataModel
from convbias.data.real import Split
from convbias.models.canvas_cnn import canvas_cnn
from convbias.models.mlp import MLP


class Interrupt(Exception):
    pass


def interrupt_on_call(monkeypatch, module, name: str, n: int) -> list:
    """Patch ``module.name`` so that its ``n``-th call raises :class:`Interrupt`; returns the call log."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_fingerprint_and_key_of_data_and_modules():
    a = torch.arange(6.0)
    assert rc.fingerprint(a) == rc.fingerprint(a.clone()) == rc.fingerprint(a.numpy())
    assert (
        rc.fingerprint(a)
        != rc.fingerprint(a.reshape(2, 3))
        != rc.fingerprint(a.double())
    )
    torch.manual_seed(0)
    m1, m2 = nn.Linear(3, 2), nn.Linear(3, 2)
    assert rc.fingerprint(m1) != rc.fingerprint(m2)  # same architecture, other weights
    m2.load_state_dict(m1.state_dict())
    assert rc.fingerprint(m1) == rc.fingerprint(m2)
    k = rc.cache_key(
        "x", {"X": a, "n": np.int64(3), "shape": (1, 2), "dev": torch.device("cpu")}
    )
    assert k == rc.cache_key(
        "x", {"X": a.clone(), "n": 3, "shape": [1, 2], "dev": "cpu"}
    )
    assert k != rc.cache_key("x", {"X": a + 1, "n": 3, "shape": [1, 2], "dev": "cpu"})
    with pytest.raises(TypeError, match="fingerprint"):
        rc.fingerprint([1, 2])


def test_resumable_without_name_just_computes(results_cache):
    assert rc.resumable(None, {"a": 1}, lambda: 5) == 5
    assert not list(results_cache.iterdir())


def test_lowrank_sweep_resumes_by_batch_size(results_cache, monkeypatch):
    from convbias import sweep

    data = gaussian_mixture(n_train=64, n_test=32, d=8, n_classes=3, seed=0)
    kw = dict(
        batch_sizes=[8, 16, 32],
        lrs=[0.1],
        weight_decays=[0.0, 1e-2],
        seeds=[0],
        epochs=2,
        records=2,
        progress=False,
        cache="t-sweep",
    )
    make = lambda: MLP(8, [16, 16], 3)
    calls = interrupt_on_call(monkeypatch, sweep, "fit_ensemble", 3)
    with pytest.raises(Interrupt):
        sweep.run_sweep(make, data.X_train, data.y_train, **kw)
    assert len(list(results_cache.rglob("t-sweep-B*.pt"))) == 2 and not list(
        results_cache.rglob("*.tmp")
    )
    calls.clear()
    resumed = sweep.run_sweep(make, data.X_train, data.y_train, **kw)
    assert len(calls) == 1  # only B = 32 trained again
    monkeypatch.undo()
    fresh = sweep.run_sweep(make, data.X_train, data.y_train, **{**kw, "cache": None})
    cols = ["batch_size", "weight_decay", "rank", "srank", "train_acc"]
    assert np.allclose(
        resumed.final[cols].to_numpy(float),
        fresh.final[cols].to_numpy(float),
        atol=1e-5,
    )


def test_noise_sweep_resumes_by_noise_level(results_cache, monkeypatch):
    from convbias import intrinsic_dimension
    from convbias.data.background import add_background_noise

    g = torch.Generator().manual_seed(0)
    split = Split(
        torch.rand(64, 1, 12, 12, generator=g),
        torch.arange(64) % 2,
        torch.rand(32, 1, 12, 12, generator=g),
        torch.arange(32) % 2,
        "random",
    )
    kw = dict(
        model_kw=dict(width=4), epochs=1, batch_size=32, progress=False, cache="t-noise"
    )
    calls = interrupt_on_call(monkeypatch, intrinsic_dimension, "fit_ensemble", 2)
    with pytest.raises(Interrupt):
        intrinsic_dimension.run_noise_sweep(
            split, [0.0, 0.5], [0, 1], add_background_noise, **kw
        )
    calls.clear()
    resumed = intrinsic_dimension.run_noise_sweep(
        split, [0.0, 0.5], [0, 1], add_background_noise, **kw
    )
    assert len(calls) == 1
    monkeypatch.undo()
    fresh = intrinsic_dimension.run_noise_sweep(
        split, [0.0, 0.5], [0, 1], add_background_noise, **{**kw, "cache": None}
    )
    assert np.allclose(resumed.filter_srank, fresh.filter_srank, atol=1e-5)
    assert np.allclose(resumed.test_acc, fresh.test_acc)


def test_sigma_sweep_restored_whole(results_cache, monkeypatch):
    from convbias import intrinsic_dimension

    model = PatchDataModel(d=20, P=3, K=2)
    kw = dict(
        n_train=20,
        n_test=40,
        m=4,
        steps=20,
        log_every=10,
        progress=False,
        cache="t-sigma",
    )
    first = intrinsic_dimension.run_sigma_sweep(model, [0.0, 1.0], [0], **kw)
    calls = interrupt_on_call(monkeypatch, intrinsic_dimension, "fit_gd", 1)
    again = intrinsic_dimension.run_sigma_sweep(model, [0.0, 1.0], [0], **kw)
    assert not calls and np.array_equal(first.filter_srank, again.filter_srank)
    with pytest.raises(Interrupt):  # another configuration is not served from the cache
        intrinsic_dimension.run_sigma_sweep(
            model, [0.0, 1.0], [0], **{**kw, "steps": 30}
        )


def test_compressive_sensing_resumes_by_measurements(results_cache, monkeypatch):
    from convbias import denoise
    from convbias.models.deep_decoder import DeepDecoder

    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    make = lambda: DeepDecoder(channels=4, depth=2, output_size=16, seed=0)
    kw = dict(steps=5, baseline_iters=5, cache="t-cs")
    calls = interrupt_on_call(monkeypatch, denoise, "fit_generator", 2)
    with pytest.raises(Interrupt):
        denoise.compressive_sensing_sweep(image, [40, 120], make, **kw)
    calls.clear()
    resumed = denoise.compressive_sensing_sweep(image, [40, 120], make, **kw)
    assert len(calls) == 1
    monkeypatch.undo()
    fresh = denoise.compressive_sensing_sweep(
        image, [40, 120], make, **{**kw, "cache": None}
    )
    for key in ("net_final", "net_best", "net_late", "baseline"):
        assert np.allclose(resumed[key], fresh[key], atol=1e-4)


def test_fit_targets_restores_each_target(results_cache, monkeypatch):
    from convbias import denoise
    from convbias.models.deep_decoder import DeepDecoder

    g = torch.Generator().manual_seed(1)
    targets = {
        "a": torch.rand(1, 1, 16, 16, generator=g),
        "b": torch.rand(1, 1, 16, 16, generator=g),
    }
    make = lambda: DeepDecoder(channels=4, depth=2, output_size=16, seed=0)
    first = denoise.fit_targets(make, targets, steps=4, log_every=2, cache="t-fit")
    calls = interrupt_on_call(monkeypatch, denoise, "fit_generator", 1)
    again = denoise.fit_targets(make, targets, steps=4, log_every=2, cache="t-fit")
    assert not calls and all(
        np.array_equal(first[k].loss, again[k].loss) for k in targets
    )
    other = lambda: DeepDecoder(
        channels=4, depth=2, output_size=16, seed=1
    )  # other initial weights: recomputed
    with pytest.raises(Interrupt):
        denoise.fit_targets(other, targets, steps=4, log_every=2, cache="t-fit")


def test_relax_protocol_restores_a_seed(results_cache, monkeypatch):
    from convbias import relax

    data = standardize(load_canvas("digits", 10, 100, 60))
    make = lambda: canvas_cnn((1, 10, 10), width=4)
    kw = dict(
        input_shape=(1, 10, 10),
        epochs=1,
        relax_epochs=[0, 1],
        relax_train_epochs=1,
        lr=0.05,
        batch_size=50,
        progress=False,
        device=torch.device("cpu"),
        cache="t-relax",
    )
    first = relax.relax_protocol(make, data, seed=0, **kw)
    calls = interrupt_on_call(monkeypatch, relax, "_relax_protocol", 1)
    again = relax.relax_protocol(make, data, seed=0, **kw)
    assert not calls and np.array_equal(first.efcn_acc, again.efcn_acc)
    with pytest.raises(Interrupt):
        relax.relax_protocol(make, data, seed=1, **kw)


def test_fit_one_example_restores_history_and_weights(results_cache, monkeypatch):
    from convbias import one_example
    from convbias.data.signals import random_input, step_signal
    from convbias.models.conv1d import DeepConv1d

    x, y = random_input(1, 32, seed=0), step_signal(32)

    def net(seed=0):
        torch.manual_seed(seed)
        return DeepConv1d(4, kernel_size=5, norm="channel", members=2)

    trained = net()
    first = one_example.fit_one_example(
        trained, y, x, steps=20, log_every=5, cache="t-one"
    )
    calls = interrupt_on_call(monkeypatch, one_example, "_fit", 1)
    restored = net()
    again = one_example.fit_one_example(
        restored, y, x, steps=20, log_every=5, cache="t-one"
    )
    assert not calls and np.array_equal(first["loss"], again["loss"])
    for a, b in zip(trained.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)  # the restored model is the trained one
    with pytest.raises(Interrupt):  # another initialisation is another run
        one_example.fit_one_example(
            net(seed=1), y, x, steps=20, log_every=5, cache="t-one"
        )
