import numpy as np
import pytest
import torch
from torch import nn

from convbias.train import (
    BatchSampler,
    History,
    TrainingDiverged,
    fit,
    fit_ensemble,
    loss_value,
)


def blobs(n=96, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, d, generator=g)
    y = torch.arange(n) % classes
    X = centers[y] + torch.randn(n, d, generator=g)
    return X, y


def mlp(d=5, classes=3):
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, classes))


def test_fit_learns_separable_blobs():
    X, y = blobs()
    torch.manual_seed(0)
    hist = fit(mlp(), X, y, lr=0.1, epochs=30, batch_size=16, progress=False)
    assert hist["loss"][-1] < 0.25 * hist["loss"][0]
    assert hist.last("train_acc") > 0.95


def test_fit_is_deterministic_for_a_seed():
    X, y = blobs()
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = mlp()
        fit(model, X, y, lr=0.1, epochs=3, batch_size=8, seed=4, progress=False)
        runs.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_fit_records_test_metrics_and_callbacks():
    X, y = blobs()
    torch.manual_seed(0)
    model = mlp()
    hist = fit(
        model,
        X,
        y,
        lr=0.1,
        steps=20,
        log_every=5,
        X_test=X[:10],
        y_test=y[:10],
        metrics=lambda m: {"w_norm": m[0].weight.norm()},
        progress=False,
    )
    assert hist.step == [0, 5, 10, 15, 20]
    assert {"loss", "train_acc", "test_acc", "test_loss", "w_norm"} <= set(hist.keys())
    assert hist.last("w_norm") == pytest.approx(model[0].weight.norm().item())


def test_fit_stops_with_clear_message_on_divergence():
    X, y = blobs()
    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        fit(mlp(), X * 1e3, y, lr=1e6, steps=50, log_every=5, progress=False)


@pytest.mark.parametrize(
    "kwargs", [dict(steps=0), dict(steps=1, epochs=1), dict(steps=5, batch_size=1000)]
)
def test_fit_rejects_bad_schedules(kwargs):
    X, y = blobs()
    with pytest.raises(ValueError):
        fit(mlp(), X, y, progress=False, **kwargs)


def test_losses():
    out = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 1])
    assert loss_value("ce", out, y).item() == pytest.approx(np.log(1 + np.exp(-2.0)))
    f, s = torch.tensor([1.0, -2.0]), torch.tensor([1.0, 1.0])
    expected = (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(2.0))) / 2
    assert loss_value("logistic", f, s).item() == pytest.approx(expected)
    assert loss_value("mse", out, y).item() == pytest.approx(((2 - 1) ** 2 * 2 + 0) / 4)
    with pytest.raises(ValueError, match="unknown loss"):
        loss_value("hinge", out, y)


def test_batch_sampler_covers_each_epoch_once():
    s = BatchSampler(10, 5, seed=0, device=torch.device("cpu"))
    seen = torch.cat([s.next(), s.next()])
    assert sorted(seen.tolist()) == list(range(10))


def test_history_array_and_errors():
    h = History()
    h.record(1, a=1.0)
    h.record(2, a=3.0)
    assert h["a"].tolist() == [1.0, 3.0] and h["step"].tolist() == [1, 2]
    with pytest.raises(KeyError, match="recorded"):
        h["b"]


# ----------------------------------------------------------------------------- ensembles
def params_of(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_ensemble_equals_members_trained_one_by_one(momentum):
    X, y = blobs()
    seeds, lrs, wds = [0, 1, 2, 3], [0.05, 0.1, 0.1, 0.2], [0.0, 1e-3, 1e-2, 0.0]
    kw = dict(
        momentum=momentum,
        epochs=4,
        batch_size=16,
        milestones=[0.5],  # of 4 epochs: from epoch 2
        gamma=0.5,
        progress=False,
        log_every=6,
    )
    ens = fit_ensemble(mlp, X, y, seeds=seeds, lr=lrs, weight_decay=wds, **kw)
    for e, (s, lr, wd) in enumerate(zip(seeds, lrs, wds)):
        torch.manual_seed(s)
        alone = mlp()
        hist = fit(alone, X, y, lr=lr, weight_decay=wd, seed=s, **kw)
        assert torch.allclose(params_of(ens.member(e)), params_of(alone), atol=1e-5), (
            f"member {e}"
        )
        assert np.allclose(ens.history["loss"][:, e], hist["loss"], atol=1e-5)
        assert np.allclose(ens.history["train_acc"][:, e], hist["train_acc"])


def test_ensemble_of_one_equals_ensemble_member():
    X, y = blobs()
    big = fit_ensemble(
        mlp, X, y, seeds=[5, 6, 7], lr=0.1, steps=15, batch_size=12, progress=False
    )
    one = fit_ensemble(
        mlp, X, y, seeds=[6], lr=0.1, steps=15, batch_size=12, progress=False
    )
    assert torch.allclose(params_of(big.member(1)), params_of(one.member(0)), atol=1e-6)


def test_ensemble_metrics_forward_and_config():
    X, y = blobs()
    ens = fit_ensemble(
        mlp,
        X,
        y,
        seeds=[0, 1],
        lr=[0.1, 0.2],
        steps=10,
        log_every=5,
        X_test=X,
        y_test=y,
        metrics=lambda p: {"w0": p["0.weight"].flatten(1).norm(dim=1)},
        progress=False,
    )
    assert ens.size == 2
    assert ens.history["w0"].shape == (3, 2)  # steps 0, 5, 10
    assert ens["test_acc"].shape == (3, 2)
    assert ens.forward(X).shape == (2, len(X), 3)
    assert torch.allclose(ens.forward(X)[1], ens.member(1)(X), atol=1e-6)
    assert ens.config["lr"].tolist() == pytest.approx([0.1, 0.2])


def test_ensemble_rejects_running_batchnorm_and_bad_vectors():
    X, y = blobs()
    with pytest.raises(ValueError, match="track_running_stats=False"):
        fit_ensemble(
            lambda: nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)),
            X,
            y,
            seeds=[0],
            steps=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="one value per member"):
        fit_ensemble(
            mlp, X, y, seeds=[0, 1], lr=[0.1, 0.2, 0.3], steps=1, progress=False
        )


def test_ensemble_works_with_batchnorm_without_running_stats():
    X, y = blobs()
    make = lambda: nn.Sequential(
        nn.Linear(5, 8),
        nn.BatchNorm1d(8, track_running_stats=False),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    ens = fit_ensemble(
        make, X, y, seeds=[0, 1], lr=0.1, epochs=10, batch_size=16, progress=False
    )
    torch.manual_seed(1)
    alone = make()
    fit(alone, X, y, lr=0.1, epochs=10, batch_size=16, seed=1, progress=False)
    assert torch.allclose(params_of(ens.member(1)), params_of(alone), atol=1e-5)


def test_ensemble_square_loss_with_integer_labels_matches_one_hot_targets():
    X, y = blobs()
    onehot = torch.nn.functional.one_hot(y, 3).float()
    kw = dict(
        seeds=[0, 1], lr=0.05, loss="mse", steps=12, batch_size=16, progress=False
    )
    a = fit_ensemble(mlp, X, y, **kw)
    b = fit_ensemble(mlp, X, onehot, **kw)
    assert torch.allclose(params_of(a.member(1)), params_of(b.member(1)), atol=1e-6)
    assert np.allclose(a.history["train_acc"], b.history["train_acc"])


@pytest.mark.parametrize("batchnorm", [False, True])
def test_full_batch_ensemble_equals_members_trained_one_by_one(batchnorm):
    X, y = blobs()
    make = (
        (
            lambda: nn.Sequential(
                nn.Linear(5, 8),
                nn.BatchNorm1d(8, track_running_stats=False),
                nn.ReLU(),
                nn.Linear(8, 3),
            )
        )
        if batchnorm
        else mlp
    )
    ens = fit_ensemble(
        make,
        X,
        y,
        seeds=[0, 1, 2],
        lr=[0.05, 0.1, 0.2],
        steps=20,
        log_every=10,
        progress=False,
    )
    for e, (s, lr) in enumerate(zip([0, 1, 2], [0.05, 0.1, 0.2])):
        torch.manual_seed(s)
        alone = make()
        hist = fit(alone, X, y, lr=lr, steps=20, log_every=10, seed=s, progress=False)
        assert torch.allclose(params_of(ens.member(e)), params_of(alone), atol=1e-5), (
            f"member {e}"
        )
        assert np.allclose(ens.history["loss"][:, e], hist["loss"], atol=1e-5)


def test_ensemble_batches_are_each_members_sampler():
    from convbias.train import BatchSampler, EnsembleBatches

    seeds = [3, 9, 4]
    together = EnsembleBatches(50, 8, seeds, torch.device("cpu"))
    alone = [BatchSampler(50, 8, s, torch.device("cpu")) for s in seeds]
    for _ in range(20):  # over three epochs of 6 batches
        idx = together.next()
        assert idx.shape == (3, 8)
        for e, sampler in enumerate(alone):
            assert torch.equal(idx[e], sampler.next())
    assert EnsembleBatches(50, None, seeds, torch.device("cpu")).next() is None


def test_milestones_are_fractions_of_the_run_in_every_loop():
    """One meaning: ``[0.5]`` with ``gamma=0`` stops learning halfway, in fit and fit_ensemble."""
    X, y = blobs()
    kw = dict(batch_size=16, gamma=0.0, progress=False, log_every=6)
    for train in (
        lambda **k: params_of(_fitted(X, y, **k)),
        lambda **k: params_of(
            fit_ensemble(mlp, X, y, seeds=[0], lr=0.1, **k).member(0)
        ),
    ):
        halfway = train(epochs=4, milestones=[0.5], **kw)
        half_as_long = train(epochs=2, **kw)
        assert torch.allclose(halfway, half_as_long, atol=1e-6)
        with pytest.raises(ValueError, match="fractions of the run"):
            train(epochs=4, milestones=[2], **kw)  # the old meaning (epochs) is refused


def _fitted(X, y, **kw):
    torch.manual_seed(0)
    model = mlp()
    fit(model, X, y, lr=0.1, seed=0, **kw)
    return model
