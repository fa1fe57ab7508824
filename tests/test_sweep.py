"""Grid sweeps as ensembles: grouping, bookkeeping, and agreement with single runs."""

import numpy as np
import pytest
import torch

from convbias.data.mixtures import gaussian_mixture
from convbias.lowrank import layer_ranks
from convbias.models.mlp import MLP
from convbias.sweep import run_sweep
from convbias.train import fit


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(64, 32, d=6, n_classes=3, seed=0)


def make():
    return MLP(6, [8, 8], 3)


@pytest.fixture(scope="module")
def result(data):
    return run_sweep(
        make,
        data.X_train,
        data.y_train,
        batch_sizes=[8, 32],
        lrs=[0.05, 0.2],
        weight_decays=[0.0, 1e-2],
        seeds=[0, 1],
        epochs=4,
        records=2,
        progress=False,
        X_test=data.X_test,
        y_test=data.y_test,
    )


def test_tidy_tables(result):
    assert len(result.final) == 2 * 2 * 2 * 2
    assert set(result.ensembles) == {8, 32} and result.compare == "epochs"
    # equal epochs: B=8 takes 64/8 * 4 = 32 steps, B=32 takes 8
    assert set(result.final.groupby("batch_size")["steps"].first().items()) == {
        (8, 32),
        (32, 8),
    }
    assert np.allclose(result.final["epochs"], 4)
    # records at the same epochs for both batch sizes
    assert sorted(result.curves.query("batch_size == 8 and member == 0")["epoch"]) == [
        0.0,
        2.0,
        4.0,
    ]
    assert sorted(result.curves.query("batch_size == 32 and member == 0")["epoch"]) == [
        0.0,
        2.0,
        4.0,
    ]
    table = result.grid("rank", "weight_decay", "batch_size")
    assert table.shape == (2, 2) and np.isfinite(table.values).all()
    assert result.layer_names == ["body.1.weight", "body.3.weight"]


def test_member_matches_a_single_run(result, data):
    """A sweep cell equals the same run trained alone with torch.optim.SGD."""
    row = result.runs(batch_size=8, lr=0.2, weight_decay=1e-2, seed=1)
    assert len(row) == 1
    torch.manual_seed(1)
    alone = make()
    fit(
        alone,
        data.X_train,
        data.y_train,
        lr=0.2,
        weight_decay=1e-2,
        batch_size=8,
        epochs=4,
        seed=1,
        progress=False,
        log_every=1000,
    )
    ranks = layer_ranks(
        dict(alone.named_parameters()), result.layer_names, stacked=False
    )
    member = result.ensembles[8].member(int(row["member"].iloc[0]))
    for (n, p), q in zip(alone.named_parameters(), member.parameters()):
        assert torch.allclose(p, q, atol=1e-5), n
    assert row["srank"].iloc[0] == pytest.approx(ranks["srank"].item(), rel=1e-4)


def test_equal_steps_and_bad_input(data):
    r = run_sweep(
        make,
        data.X_train,
        data.y_train,
        batch_sizes=[4, 16],
        lrs=[0.1],
        weight_decays=[0.0],
        steps=6,
        records=3,
        progress=False,
    )
    assert set(r.final["steps"]) == {6} and r.compare == "steps"
    assert r.final.set_index("batch_size")["epochs"].to_dict() == {4: 6 / 16, 16: 6 / 4}
    with pytest.raises(ValueError):
        run_sweep(
            make,
            data.X_train,
            data.y_train,
            batch_sizes=[4],
            lrs=[0.1],
            weight_decays=[0.0],
            steps=5,
            epochs=5,
            progress=False,
        )
    with pytest.raises(ValueError):
        run_sweep(
            make,
            data.X_train,
            data.y_train,
            batch_sizes=[4],
            lrs=[0.1],
            weight_decays=[0.0],
            epochs=2,
            milestones=[60],
            progress=False,
        )
    with pytest.raises(ValueError, match="no run"):
        r.runs(batch_size=99)
