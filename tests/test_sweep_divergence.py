"""A grid cell whose training diverges is recorded as diverged, shown as such, and left out of
the checks that compare cells (counted), never a crash and never a silent mean of the rest."""

import math

import numpy as np
import pytest
import torch

from convbias.data.mixtures import gaussian_mixture
from convbias.lowrank import grid_checks
from convbias.models.mlp import MLP
from convbias.sweep import run_sweep
from convbias.train import TrainingDiverged, fit_ensemble

LRS, WDS = [0.05, 1e20], [0.0, 1e-2]


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(64, 32, d=6, n_classes=3, seed=0)


def make():
    return MLP(6, [8, 8], 3)


def sweep(data, **kw):
    return run_sweep(
        make,
        data.X_train,
        data.y_train,
        lrs=kw.pop("lrs", LRS),
        weight_decays=kw.pop("weight_decays", WDS),
        seeds=[0, 1],
        records=2,
        progress=False,
        X_test=data.X_test,
        y_test=data.y_test,
        **kw,
    )


@pytest.fixture(scope="module")
def grid(data):
    return sweep(data, batch_sizes=[8, 64], epochs=4)


def test_a_diverging_member_is_stopped_and_the_others_train_on(data):
    kw = dict(seeds=[0, 0], lr=[0.05, 1e20], steps=12, log_every=4, progress=False)
    with pytest.raises(TrainingDiverged, match="seeds \\[0\\]"):
        fit_ensemble(make, data.X_train, data.y_train, **kw)
    ens = fit_ensemble(make, data.X_train, data.y_train, on_divergence="record", **kw)
    assert list(ens.diverged) == [False, True] and ens.diverged_at[1] == 4
    loss = ens["loss"]
    assert np.isfinite(loss[:, 0]).all() and np.isnan(loss[1:, 1]).all()
    assert np.isfinite(loss[0, 1])  # step 0, before it diverged
    alone = fit_ensemble(
        make, data.X_train, data.y_train, **{**kw, "seeds": [0], "lr": 0.05}
    )
    assert np.allclose(alone["loss"][:, 0], loss[:, 0], rtol=1e-5)  # unaffected
    assert all(torch.isfinite(p).all() for p in ens.params.values())


def test_the_grid_marks_diverged_runs_and_cells(grid):
    final = grid.final
    assert final.loc[final.lr == 1e20, "diverged"].all()
    assert not final.loc[final.lr == 0.05, "diverged"].any()
    assert grid.n_diverged == 8 and np.isnan(final.loc[final.diverged, "rank"]).all()
    cells = grid.diverged_cells()
    assert len(cells) == 4 and set(cells.lr) == {1e20}
    assert (cells.diverged == 2).all() and (cells.runs == 2).all()
    assert (cells.first_step > 0).all()
    table = grid.grid("rank", "weight_decay", "lr", batch_size=8)
    assert table[1e20].isna().all() and table[0.05].notna().all()
    with pytest.raises(ValueError, match="diverged at step"):
        grid.spectra(8, 1e20, 0.0, 0)


def test_a_cell_with_one_diverged_seed_is_not_the_mean_of_the_others(grid):
    final = grid.final.copy()
    row = final.index[(final.lr == 0.05) & (final.seed == 1)][0]
    final.loc[row, ["rank", "diverged"]] = [np.nan, True]
    grid.final, original = final, grid.final
    try:
        B, wd = final.loc[row, "batch_size"], final.loc[row, "weight_decay"]
        cell = grid.grid("rank", "weight_decay", "lr", batch_size=B).loc[wd, 0.05]
        assert math.isnan(cell)
    finally:
        grid.final = original


def test_checks_leave_diverged_cells_out_and_say_so(data):
    lrs, wds = [0.3, 1e20], [0.0, 0.06]
    g = sweep(data, batch_sizes=[8, 64], epochs=8, lrs=lrs, weight_decays=wds)
    control = sweep(data, batch_sizes=[64], steps=64, lrs=[1e20], weight_decays=[0.06])
    checks = {c.name: c for c in grid_checks(g, control, 7.0)}
    lambda0 = checks["rank_lambda0_full"]
    assert "4 diverged runs left out" in lambda0.claim and math.isfinite(lambda0.value)
    assert (
        "1 lr with a diverged cell left out" in checks["rank_drop_smallest_batch"].claim
    )
    # the corner (largest lr) diverged: its checks have no value and fail
    for name in ("rank_cut_corner", "accuracy_corner", "equal_steps_gap"):
        assert math.isnan(checks[name].value) and not checks[name].passed


def test_a_check_with_every_cell_diverged_fails(data):
    g = sweep(
        data, batch_sizes=[8, 64], epochs=4, lrs=[1e20], weight_decays=[0.0, 0.06]
    )
    control = sweep(data, batch_sizes=[64], steps=32, lrs=[1e20], weight_decays=[0.06])
    checks = {c.name: c for c in grid_checks(g, control, 7.0)}
    assert not any(c.passed for c in checks.values())
    assert math.isnan(checks["rank_lambda0_full"].value)


def test_a_heatmap_writes_its_diverged_cells(grid):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convbias import plotting

    table = grid.grid("rank", "weight_decay", "lr", batch_size=8)
    fig, ax = plt.subplots()
    plotting.heatmap(ax, table, table.columns, table.index, missing="div.")
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("div.") == int(table.isna().sum().sum()) == 2
    plt.close(fig)
