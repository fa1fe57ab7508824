"""Sweeps on any concurrent.futures.Executor, with the results cache as the store."""

from __future__ import annotations

import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

from convbias import sweep
from convbias.data.mixtures import gaussian_mixture
from convbias.executors import submit
from convbias.models.mlp import MLP

GRID = dict(
    batch_sizes=[8, 32],
    lrs=[0.05, 0.2],
    weight_decays=[0.0, 1e-2],
    seeds=[0],
    epochs=3,
    records=1,
    progress=False,
)
make = functools.partial(MLP, 6, [8, 8], 3)  # picklable, unlike a lambda


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(64, 32, d=6, n_classes=3, seed=0)


@pytest.fixture(scope="module")
def here(data):
    return sweep.run_sweep(make, data.X_train, data.y_train, **GRID)


def _same(a, b):
    cols = ["batch_size", "lr", "weight_decay", "seed", "rank", "srank", "train_acc"]
    np.testing.assert_allclose(
        a.final[cols].to_numpy(float),
        b.final[cols].to_numpy(float),
        rtol=1e-5,
        atol=1e-6,
    )
    for B in a.ensembles:
        for name, p in a.ensembles[B].params.items():
            torch.testing.assert_close(
                p, b.ensembles[B].params[name], rtol=1e-5, atol=1e-6
            )


def test_submit_without_executor_runs_now_and_stops_at_an_error(results_cache):
    calls = []
    assert (
        submit(None, "answer", {"x": 1}, lambda: calls.append(1) or 42).result() == 42
    )
    assert (
        submit(None, "answer", {"x": 1}, lambda: calls.append(1) or 0).result() == 42
    )  # stored
    assert calls == [1]
    with pytest.raises(ZeroDivisionError):
        submit(None, None, {}, lambda: 1 / 0)


def test_process_pool_gives_the_same_grid_and_fills_the_shared_store(
    data, here, results_cache, monkeypatch
):
    with ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        there = sweep.run_sweep(
            make, data.X_train, data.y_train, cache="grid", executor=pool, **GRID
        )
    _same(here, there)
    stored = sorted(p.name.split("-")[1] for p in results_cache.rglob("grid-*.pt"))
    assert stored == ["B32", "B8"]  # one entry per batch size, written by the workers

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of restoring the workers' results")

    monkeypatch.setattr(sweep, "fit_ensemble", no_training)
    restored = sweep.run_sweep(make, data.X_train, data.y_train, cache="grid", **GRID)
    _same(here, restored)


def test_dask_cluster_runs_the_grid(data, here):
    distributed = pytest.importorskip(
        "distributed",
        reason="dask.distributed is not installed: pip install distributed",
    )
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        there = sweep.run_sweep(
            make, data.X_train, data.y_train, executor=client.get_executor(), **GRID
        )
    _same(here, there)


class _Pixels8(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = torch.nn.Parameter(torch.zeros(1, 1, 8, 8))

    def forward(self):
        return self.x


def test_other_sweep_drivers_take_an_executor():
    from concurrent.futures import ThreadPoolExecutor

    from convbias.data.background import add_background_noise
    from convbias.data.real import Split
    from convbias.denoise import compressive_sensing_sweep
    from convbias.intrinsic_dimension import run_noise_sweep

    img = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(steps=20, lr=0.05, mode="gaussian", baseline_iters=10)
    here = compressive_sensing_sweep(img, [16, 48], _Pixels8, **kw)
    g = torch.Generator().manual_seed(0)
    split = Split(
        torch.rand(64, 1, 12, 12, generator=g),
        torch.arange(64) % 2,
        torch.rand(32, 1, 12, 12, generator=g),
        torch.arange(32) % 2,
        "random",
    )
    noise_kw = dict(model_kw=dict(width=4), epochs=1, batch_size=32, progress=False)
    noise_here = run_noise_sweep(
        split, [0.0, 0.5], [0, 1], add_background_noise, **noise_kw
    )
    # one thread: threads share torch's global random generator, which the ensembles seed to
    # initialise their members (a pool of processes, or Dask workers, runs items side by side)
    with ThreadPoolExecutor(1) as pool:
        there = compressive_sensing_sweep(img, [16, 48], _Pixels8, executor=pool, **kw)
        noise_there = run_noise_sweep(
            split, [0.0, 0.5], [0, 1], add_background_noise, executor=pool, **noise_kw
        )
    for key in here:
        np.testing.assert_allclose(here[key], there[key], rtol=1e-5)
    assert here["m"].tolist() == [16, 48]
    np.testing.assert_allclose(
        noise_here.filter_srank, noise_there.filter_srank, rtol=1e-5
    )
    np.testing.assert_allclose(noise_here.test_acc, noise_there.test_acc)


def test_a_forking_process_pool_is_refused_in_one_line(data):
    """A pool that forks after torch started its threads hangs; the sweep says how to make one that works."""
    for pool in (
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")),
        *(
            [ProcessPoolExecutor(1)]  # the default context forks on Linux before 3.14
            if multiprocessing.get_start_method() == "fork"
            else []
        ),
    ):
        with pool, pytest.raises(ValueError) as refused:
            sweep.run_sweep(make, data.X_train, data.y_train, executor=pool, **GRID)
        message = str(refused.value)
        assert "\n" not in message and 'get_context("spawn")' in message
    with ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("forkserver")
    ) as pool:
        submit(pool, None, {}, int).result()  # forkserver is accepted


def test_a_thread_pool_gives_exactly_the_serial_result(data, here, results_cache):
    """Before: threads drew from each other's seeded stream (accuracies up to 0.4 off, and stored)."""
    from concurrent.futures import ThreadPoolExecutor

    grid = {**GRID, "batch_sizes": [4, 8, 16, 32]}
    serial = sweep.run_sweep(make, data.X_train, data.y_train, **grid)
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            threaded = sweep.run_sweep(
                make, data.X_train, data.y_train, executor=pool, **grid
            )
        _same(serial, threaded)
    with ThreadPoolExecutor(
        4
    ) as pool:  # and what the threads store is the serial result
        sweep.run_sweep(
            make, data.X_train, data.y_train, cache="threads", executor=pool, **grid
        )
    _same(
        serial,
        sweep.run_sweep(make, data.X_train, data.y_train, cache="threads", **grid),
    )


def test_a_dask_worker_with_several_threads_gives_the_serial_result(data):
    distributed = pytest.importorskip(
        "distributed",
        reason="dask.distributed is not installed: pip install distributed",
    )
    grid = {**GRID, "batch_sizes": [4, 8, 16, 32]}
    serial = sweep.run_sweep(make, data.X_train, data.y_train, **grid)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        there = sweep.run_sweep(
            make, data.X_train, data.y_train, executor=client.get_executor(), **grid
        )
    _same(serial, there)
