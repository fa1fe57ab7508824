"""Training entry points refuse bad input in one clear error instead of training something else silently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convbias.one_example import fit_one_example
from convbias.sweep import run_sweep
from convbias.train import fit, fit_ensemble


def _data(n=64, d=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _mlp(d=4, out=3):
    return nn.Sequential(nn.Linear(d, 6), nn.ReLU(), nn.Linear(6, out))


def test_logistic_loss_refuses_zero_one_labels():
    X, _ = _data()
    y01 = (X[:, 0] > 0).long()
    with pytest.raises(ValueError, match="2 \\* y - 1"):
        fit(_mlp(out=1), X, y01.float(), loss="logistic", steps=2, progress=False)
    with pytest.raises(ValueError, match="-1, \\+1"):
        fit_ensemble(
            lambda: _mlp(out=1),
            X,
            y01.float(),
            seeds=[0],
            loss="logistic",
            steps=2,
            progress=False,
        )
    h = fit(
        _mlp(out=1), X, 2 * y01.float() - 1, loss="logistic", steps=2, progress=False
    )  # ±1 still trains
    assert h.step == [0, 2]


def test_one_definition_of_an_epoch():
    X, y = _data(n=64)
    sweep = run_sweep(
        lambda: _mlp(),
        X,
        y,
        batch_sizes=[10],
        lrs=[0.1],
        weight_decays=[0.0],
        epochs=6,
        records=3,
        progress=False,
    )
    assert (
        sweep.final["steps"].iloc[0] == 36 and sweep.final["epochs"].iloc[0] == 6
    )  # 6 epochs of 64 // 10 steps
    h = fit(_mlp(), X, y, epochs=2, batch_size=10, log_every=1, progress=False)
    assert h.step[-1] == 12
    ens = fit_ensemble(
        lambda: _mlp(),
        X,
        y,
        seeds=[0],
        epochs=2,
        batch_size=10,
        log_every=1,
        progress=False,
    )
    assert ens.history.step[-1] == 12


@pytest.mark.parametrize("trainer", ["fit", "ensemble"])
@pytest.mark.parametrize(
    "case, kwargs, error, match",
    [
        ("negative lr", dict(lr=-0.1), ValueError, "lr must be finite and >= 0"),
        ("log_every=0", dict(log_every=0), ValueError, "log_every must be >= 1"),
        ("X_test alone", dict(X_test="X"), ValueError, "together"),
        (
            "float batch",
            dict(batch_size=10.0),
            TypeError,
            "batch_size must be an integer",
        ),
        ("short y", dict(y="short"), ValueError, "X has 64 examples but y has 63"),
    ],
)
def test_bad_training_input_is_a_clear_error(trainer, case, kwargs, error, match):
    X, y = _data()
    kwargs = dict(kwargs)
    if kwargs.get("X_test") == "X":
        kwargs["X_test"] = X
    if kwargs.pop("y", None) == "short":
        y = y[:-1]
    with pytest.raises(error, match=match):
        if trainer == "fit":
            fit(_mlp(), X, y, steps=3, progress=False, **kwargs)
        else:
            fit_ensemble(
                lambda: _mlp(), X, y, seeds=[0, 1], steps=3, progress=False, **kwargs
            )


def test_model_without_parameters_is_a_clear_error():
    X, y = _data()
    with pytest.raises(ValueError, match="no parameters"):
        fit(nn.Sequential(nn.Identity()), X, y, steps=1, progress=False)
    with pytest.raises(ValueError, match="no parameters"):
        fit_ensemble(
            lambda: nn.Sequential(nn.Identity()),
            X,
            y,
            seeds=[0],
            steps=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit_one_example(
            nn.Sequential(nn.Identity()), torch.zeros(1, 3), torch.zeros(1, 3), steps=1
        )


def test_dropout_inside_an_ensemble_is_named():
    X, y = _data()
    make = lambda: nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 3))
    with pytest.raises(ValueError, match="module 1 is a Dropout"):
        fit_ensemble(make, X, y, seeds=[0, 1], steps=2, progress=False)


def test_one_example_refuses_negative_lr_and_float_steps():
    net = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="lr must be finite"):
        fit_one_example(net, torch.zeros(1, 3), torch.zeros(1, 3), steps=2, lr=-1.0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        fit_one_example(net, torch.zeros(1, 3), torch.zeros(1, 3), steps=2.5)


def test_relax_protocol_checks_its_settings():
    from convbias.data.real import Split
    from convbias.relax import relax_protocol

    X, y = torch.randn(20, 1, 4, 4), torch.randint(0, 2, (20,))
    data = Split(X, y, X, y, "test")
    make = lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    base = dict(
        input_shape=(1, 4, 4),
        epochs=1,
        relax_epochs=[0],
        relax_train_epochs=1,
        lr=0.1,
        batch_size=5,
        seed=0,
        progress=False,
    )
    for bad, match in [
        (dict(lr=-0.1), "lr must be finite"),
        (dict(batch_size=50), "exceeds"),
        (dict(batch_size=2.5), "batch_size must be a positive integer"),
        (dict(log_every=0), "log_every"),
    ]:
        with pytest.raises(ValueError, match=match):
            relax_protocol(make, data, **{**base, **bad})


def test_sweep_cache_key_follows_the_initial_weights(results_cache, monkeypatch):
    from convbias import sweep as sweep_module

    X, y = _data()
    trained = []
    real_fit = sweep_module.fit_ensemble
    monkeypatch.setattr(
        sweep_module,
        "fit_ensemble",
        lambda *a, **k: trained.append(1) or real_fit(*a, **k),
    )

    def make(scale):
        def build():
            net = _mlp()
            with torch.no_grad():
                net[0].weight.mul_(scale)
            return net

        return build

    kw = dict(
        batch_sizes=[16],
        lrs=[0.1],
        weight_decays=[0.0],
        epochs=1,
        records=1,
        progress=False,
        cache="s",
    )
    a = run_sweep(make(1.0), X, y, **kw)
    b = run_sweep(
        make(3.0), X, y, **kw
    )  # same repr(model), other initial weights: must train again
    assert len(trained) == 2 and not np.allclose(a.final["loss"], b.final["loss"])
    c = run_sweep(make(1.0), X, y, **kw)  # the first run is restored, not retrained
    assert len(trained) == 2 and np.allclose(a.final["loss"], c.final["loss"])
