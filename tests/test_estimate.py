"""The cost meter and the time estimate on known answers."""

from __future__ import annotations

import math

import pytest
import torch

from convbias import config
from convbias.costs import GPUS, CostMeter, calibrate, op_gpu_seconds
from convbias.estimate import (
    ALLOCATOR_SLACK,
    CUDA_CONTEXT_BYTES,
    book_estimate,
    chapter_estimate,
    report,
)

# known-count tests: the meter's own time is not what they check
NO_OVERHEAD = (0.0, 0.0)


def _loop(n: int, every: int, a: int = 32, b: int = 64) -> None:
    """n steps of (x @ w).sum().backward() on x (a, b), w (b, b); a record x @ w every ``every`` steps."""
    steps = config.cap_steps(n, every)
    w = torch.randn(b, b, requires_grad=True)
    x = torch.randn(a, b)
    for step in range(1, steps + 1):
        config.step_starts()
        (x @ w).sum().backward()
        if step % every == 0 or step == steps:
            with torch.no_grad(), config.recording():
                x @ w


def _train(n: int, every: int, a: int = 16, b: int = 32) -> None:
    """A loop as the package writes them: SGD with momentum (its update runs under ``no_grad``), a view
    per step, a record at step 0, every ``every`` steps and at the end, a final evaluation once."""
    steps = config.cap_steps(n, every)
    torch.manual_seed(0)
    w = torch.randn(b, b, requires_grad=True)
    x = torch.randn(a, b)
    opt = torch.optim.SGD([w], lr=1e-3, momentum=0.9, foreach=False)

    @config.recording()
    def record() -> None:
        with torch.no_grad():
            (x @ w).sum()

    record()
    for step in range(1, steps + 1):
        config.step_starts()
        loss = torch.tanh(x @ w.view(b, b)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            record()
    with torch.no_grad(), config.recording(once=True):
        x @ w @ w


def _metered(fn, *args, smoke: bool) -> CostMeter:
    with config.environment(**{config.SMOKE_VAR: "1" if smoke else "0"}):
        with CostMeter(overhead=NO_OVERHEAD) as meter:
            fn(*args)
    return meter


@pytest.mark.parametrize("n, every", [(60, 10), (57, 10), (40, 1), (5, 7)])
def test_a_smoke_run_predicts_the_exact_counts_of_the_full_run(n, every):
    """The optimizer's update (under no_grad) scales with the steps, records with the records, once-work
    once: the smoke run's prediction equals what the full run counts, operator for operator."""
    full = _metered(_train, n, every, smoke=False).measured()
    predicted = _metered(_train, n, every, smoke=True).predicted()
    assert predicted.flops == pytest.approx(full.flops, rel=1e-12)
    assert predicted.launches == pytest.approx(full.launches, rel=1e-12)
    assert predicted.ops == pytest.approx(full.ops, rel=1e-12)
    for key in GPUS:
        assert predicted.gpu_seconds[key] == pytest.approx(
            full.gpu_seconds[key], rel=1e-9
        )
    # by hand: a forward product and the gradient of w per step, a product per record, two at the end
    a, b = 16, 32
    records = 1 + math.ceil(n / every)
    assert full.flops == n * 2 * (2 * a * b * b) + records * 2 * a * b * b + (
        2 * a * b * b + 2 * a * b * b
    )


def test_views_launch_nothing_on_a_gpu():
    a = torch.randn(64, 64)
    with CostMeter(overhead=NO_OVERHEAD) as meter:
        a.view(-1)
        a.t()
        a.detach()
        a + 1
    cost = meter.outside
    assert (cost.ops, cost.launches) == (4, 1)
    for key, gpu in GPUS.items():
        assert cost.gpu_seconds[key] == pytest.approx(
            op_gpu_seconds(gpu, 0.0, 64 * 64 * 4)
        )


def _inner(n: int) -> None:
    steps = config.cap_steps(n)
    x = torch.randn(8, 8)
    for _ in range(steps):
        config.step_starts()
        x @ x


def _outer(n: int, inner: int) -> None:
    steps = config.cap_steps(n)
    for _ in range(steps):
        config.step_starts()
        _inner(inner)


def test_a_loop_inside_a_step_is_scaled_by_its_outer_loop():
    full = _metered(_outer, 30, 20, smoke=False).measured()
    predicted = _metered(_outer, 30, 20, smoke=True).predicted()
    assert full.flops == 30 * 20 * 2 * 8**3
    assert predicted.flops == pytest.approx(full.flops)


def _python_loop(n: int) -> None:
    steps = config.cap_steps(n)
    x = torch.zeros(1)
    for _ in range(steps):
        config.step_starts()
        sum(i * i for i in range(30_000))  # the loop's own Python, about a millisecond
        x.add_(1.0)


def test_python_time_per_step_is_scaled_with_the_steps():
    full = _metered(_python_loop, 24, smoke=False).measured().python
    predicted = _metered(_python_loop, 24, smoke=True).predicted().python
    assert full > 0.005
    assert predicted == pytest.approx(full, rel=0.5)  # a timing on a shared machine


def test_calibration_measures_the_meters_own_time():
    inside, between, free = calibrate(n=100, repeats=3)
    assert inside + between > 0 and free > 0


def test_cap_steps_only_in_smoke_mode(monkeypatch):
    monkeypatch.delenv(config.SMOKE_VAR, raising=False)
    assert (
        not config.smoke()
        and config.cap_steps(1000) == 1000
        and config.cap_items([1, 2, 3]) == [1, 2, 3]
    )
    monkeypatch.setenv(config.SMOKE_VAR, "1")
    assert (
        config.smoke()
        and config.cap_steps(1000) == config.SMOKE_STEPS
        and config.cap_steps(1) == 1
    )
    assert config.cap_items([0, 1, 2, 5, 10]) == [0, 10]
    monkeypatch.setenv(config.SMOKE_STEPS_VAR, "5")
    assert config.cap_steps(1000) == 5
    monkeypatch.setenv(config.SMOKE_VAR, "maybe")
    with pytest.raises(ValueError, match="CONVBIAS_SMOKE"):
        config.smoke()


def test_meter_scales_a_capped_loop_to_its_full_length(monkeypatch):
    monkeypatch.setenv(config.SMOKE_VAR, "1")
    a, b, n, every = 32, 64, 100, 10
    with CostMeter(overhead=NO_OVERHEAD) as meter:
        _loop(n, every, a, b)
        torch.randn(8, 8) @ torch.randn(8, 8)  # outside any loop: counted once
    matmul = 2 * a * b * b
    (loop,) = meter.loops
    assert (loop.requested, loop.run, loop.every) == (n, config.SMOKE_STEPS, every)
    # a step: the forward product and the gradient of w (x^T g); a record: one product
    assert loop.step.flops == 2 * config.SMOKE_STEPS * matmul
    assert loop.record.flops == matmul
    assert meter.outside.flops == 2 * 8**3
    predicted = meter.predicted()
    assert predicted.flops == n * 2 * matmul + (n // every) * matmul + 2 * 8**3


def test_roofline_prices_an_operator():
    t4 = GPUS["T4"]
    assert op_gpu_seconds(t4, 1e12, 0) == pytest.approx(1e12 / t4.flops + t4.overhead)
    assert op_gpu_seconds(t4, 0, 10**9) == pytest.approx(
        2e9 / t4.bandwidth + t4.overhead
    )


def test_meter_tracks_the_peak_of_live_tensors():
    with CostMeter(overhead=NO_OVERHEAD) as meter:
        a = torch.zeros(1_000_000)  # 4 MB
        b = torch.zeros(1_000_000)
        view = b[10:]  # a view: no new memory
        del a
        c = torch.zeros(2_000_000)  # 8 MB, when 4 MB were live
        del b, view, c
    assert meter.peak_bytes == pytest.approx(12e6, rel=0.01)
    assert meter.live_bytes == 0


def _cost(
    chapter: str,
    t4: float,
    h100: float,
    tensors: int,
    host: int,
    completed: bool = True,
) -> dict:
    return {
        "chapter": chapter,
        "profile": "full",
        "completed": completed,
        "predicted": {
            "ops": 10,
            "flops": 1e13,
            "seconds": 600.0,
            "python": 30.0,
            "gpu_seconds": {"T4": t4, "H100": h100},
        },
        "peak_host_bytes": host,
        "peak_tensor_bytes": tensors,
    }


def test_estimate_adds_python_time_and_flags_what_is_over_budget():
    fits = chapter_estimate(
        _cost("01_a", t4=270.0, h100=60.0, tensors=2**30, host=2**31)
    )
    assert (
        fits["T4_seconds"] == 300.0
        and fits["H100_seconds"] == 90.0
        and fits["cpu_seconds"] == 630.0
    )
    assert fits["gpu_bytes"] == pytest.approx(
        2**30 * ALLOCATOR_SLACK + CUDA_CONTEXT_BYTES
    )
    assert fits["over"] == []
    over = chapter_estimate(
        _cost("02_b", t4=700.0, h100=100.0, tensors=14 * 2**30, host=13 * 2**30)
    )
    assert over["over"] == ["T4 > 10 min", "host memory > 12 GB", "GPU memory > 15 GB"]
    book = book_estimate([_cost(f"0{i}_c", 100.0, 170.0, 1, 1) for i in range(5)])
    assert book["total_seconds"]["H100"] == 5 * 200.0 and book["over"] == [
        "book on H100 > 15 min"
    ]
    text = report([_cost("01_a", 270.0, 60.0, 2**30, 2**31)])
    assert "01_a" in text and "5.0" in text and "method:" in text
    assert math.isclose(float(text.splitlines()[1].split()[1]), 5.0)


def test_announce_run_speaks_only_under_the_full_profile(monkeypatch, capsys):
    monkeypatch.setenv(config.ENV_VAR, "quick")
    assert config.announce_run("ch2") is None and capsys.readouterr().out == ""
    monkeypatch.setenv(config.ENV_VAR, "full")
    monkeypatch.setattr(
        config, "full_profile_minutes", lambda ch: {"T4": 7.6, "H100": 1.2, "CPU": 95.0}
    )
    line = config.announce_run("ch2")
    assert capsys.readouterr().out.strip() == line
    assert (
        "about 95 min on this CPU" in line
        and 'os.environ["CONVBIAS_PROFILE"] = "quick"' in line
    )


def test_budget_rounds_minutes_per_chapter(tmp_path):
    from convbias.estimate import budget, save_budget

    costs = [_cost("01_a", t4=270.0, h100=60.0, tensors=2**30, host=2**31)]
    assert budget(costs)["chapters"]["ch1"] == {
        "T4": 5.0,
        "H100": 1.5,
        "CPU": 10.5,
        "host_GB": 2.0,
        "gpu_GB": round((2**30 * 1.15 + 0.6 * 2**30) / 2**30, 2),
    }
    path = save_budget(costs, tmp_path / "budget.json")
    assert "ch1" in path.read_text()


def test_kept_items_stand_for_the_skipped_ones(monkeypatch):
    monkeypatch.setenv(config.SMOKE_VAR, "1")
    times = config.cap_items(list(range(10)))
    assert times == [0, 9]
    with CostMeter(overhead=NO_OVERHEAD) as meter:
        with config.stands_for(10 / len(times)):
            for _ in times:
                _loop(100, 10)
                torch.randn(8, 8) @ torch.randn(8, 8)  # outside a loop, once per item
        _loop(100, 10)  # after the block: counted once
    one = 100 * 2 * 2 * 32 * 64 * 64 + 10 * 2 * 32 * 64 * 64
    assert [loop.weight for loop in meter.loops] == [5.0, 5.0, 1.0]
    assert meter.predicted().flops == 10 * one + 10 * 2 * 8**3 + one


def test_stand_ins_only_in_smoke_runs_that_ask(monkeypatch):
    from convbias.data import real

    monkeypatch.delenv(config.SMOKE_VAR, raising=False)
    monkeypatch.setenv(real.STAND_INS_VAR, "1")
    assert not real.stand_ins()
    monkeypatch.setenv(config.SMOKE_VAR, "1")
    assert real.stand_ins()
    split = real.stand_in("cifar10", (3, 4, 4), 20, 10)
    assert split.X_train.shape == (20, 3, 4, 4) and split.y_test.tolist() == list(
        range(10)
    )
    assert (
        0 <= float(split.X_train.min())
        and float(split.X_train.max()) <= 1
        and split.source == "cifar10-stand-in"
    )


def _records() -> list[dict]:
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "book" / "full_profile"
    out = []
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if (
            isinstance(record.get("measured"), dict)
            and "cpu_seconds" in (record["measured"])
        ):
            out.append(record)
    return out


def test_the_cpu_estimate_is_within_a_quarter_of_every_recorded_full_run():
    """The CPU minutes the set-up cells announce (the package's budget.json, written by
    ``estimate --save-budget`` from smoke runs) against every committed full-profile record's
    measured CPU time: each within 25 %. Reads files only; no chapter runs."""
    import json
    from pathlib import Path

    records = _records()
    if not records:
        pytest.skip("no full-profile record committed in book/full_profile/ yet")
    budget = json.loads(
        (Path(config.__file__).with_name(config.BUDGET_FILE)).read_text()
    )
    for record in records:
        key = f"ch{int(record['chapter'][:2])}"
        estimated = budget["chapters"][key]["CPU"] * 60
        measured = record["measured"]["cpu_seconds"]
        assert abs(estimated / measured - 1) <= 0.25, (
            f"{record['chapter']}: estimated {estimated:.0f} CPU-s, measured {measured:.0f}"
        )


def test_estimate_without_smoke_runs_prints_its_plan_and_runs_nothing(
    tmp_path, monkeypatch, capsys
):
    from convbias import __main__ as cli
    from convbias import estimate

    def never(*args, **kwargs):
        raise AssertionError("estimate started a smoke run it was not asked for")

    monkeypatch.setattr(estimate, "smoke_cost", never)
    assert cli.main(["estimate", "6", "7", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert (
        "no smoke run yet of 2 chapter(s): 06_convex_cnn, 07_gradient_oscillations"
        in out
    )
    assert "--run-missing" in out and "CPU-minutes" in out
    assert not any(tmp_path.iterdir())  # nothing written


def test_estimate_never_writes_into_a_folder_of_real_results(
    tmp_path, monkeypatch, capsys
):
    import json

    from convbias import __main__ as cli
    from convbias import estimate

    real = tmp_path / "06_convex_cnn"
    real.mkdir()
    (real / "results.json").write_text(json.dumps({"checks_passed": True}))
    smoke_cost = estimate.smoke_cost
    monkeypatch.setattr(estimate, "smoke_cost", lambda *a, **k: 1 / 0)
    code = cli.main(["estimate", "6", "--run-missing", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "holds the real results of 06_convex_cnn" in err
    assert sorted(p.name for p in real.iterdir()) == ["results.json"]
    with pytest.raises(ValueError, match="will not write there"):
        smoke_cost(estimate.Path("06_convex_cnn.ipynb"), real, rerun=True)
    # a smoke run's own folder (marked, or with its cost.json) is the estimate's to rewrite
    (real / "results.json").write_text(json.dumps({"smoke": True}))
    assert not estimate.holds_real_results(real)
