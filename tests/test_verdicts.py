"""Every verdict is computed: no failed check, smoke run or crash ever reads as a pass.

Report mode (``CONVBIAS_CHECKS=report``) shows checks without stopping the run, but a run
with a failed check is never recorded or announced as passed; a smoke run is marked, goes
to its own folder and is refused where a real result is expected; a run that did not
finish is a failure to every caller; bad input is one line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import convbias
from convbias import checks, config, estimate, runner, smoke, verify
from convbias.__main__ import main

#: the checkout whose package is imported (its pkg/ folder goes on a subprocess's PYTHONPATH)
PKG = Path(convbias.__file__).resolve().parents[1]

FAILING = (
    "from convbias.checks import at_least, require\n"
    "from convbias.report import glue, glue_checks_passed\n"
    "glue('v', 3)\n"
    "require('chT', [at_least('good', 2, 1), at_least('bad', 0, 1)])\n"
    "glue_checks_passed('chT')\n"
)
PASSING = FAILING.replace("at_least('bad', 0, 1)", "at_least('fine', 5, 1)")


def book_with(tmp_path: Path, source: str, stem: str = "01_t") -> Path:
    """A one-chapter book (``_toc.yml`` and ``<stem>.ipynb``) in ``tmp_path/book``."""
    root = tmp_path / "book"
    root.mkdir(exist_ok=True)
    (root / "_toc.yml").write_text(
        f"format: jb-book\nroot: intro\nchapters:\n  - file: {stem}\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, root / f"{stem}.ipynb")
    return root


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize(
    "condition",
    [math.nan, np.float64("nan"), np.float32("nan"), torch.tensor(math.nan)],
)
def test_holds_nan_fails(condition):
    """Before: ``holds(name, nan)`` passed (``bool(nan)`` is True)."""
    assert not checks.holds("x", condition).passed
    assert checks.holds("x", True).passed and not checks.holds("x", False).passed
    assert checks.holds("x", np.bool_(True)).passed
    assert checks.holds("x", torch.tensor(1.0)).passed


def test_a_nan_anywhere_in_a_check_fails():
    nan = math.nan
    for check in (
        checks.at_least("x", nan, 0),
        checks.at_most("x", nan, 0),
        checks.between("x", nan, 0, 1),
        checks.at_least("x", 1, nan),
        checks.at_most("x", 1, nan),
        checks.between("x", 0.5, nan, 1),
        checks.between("x", 0.5, 0, nan),
    ):
        assert not check.passed, check


def test_the_verdict_is_computed_never_defaulted():
    good, bad = checks.at_least("a", 2, 1), checks.at_least("b", 0, 1)
    assert checks.verdict([good]) and not checks.verdict([good, bad])
    assert not checks.verdict([])  # nothing shown is no pass
    assert checks.summary_line([good, bad]) == "1 of 2 checks FAILED: b"
    assert checks.summary_line([]) == "no checks ran"


def test_glued_verdict_comes_from_the_recorded_checks(monkeypatch):
    """Before: ``glue_checks_passed`` glued "all passed" whenever it was reached (report mode too)."""
    from convbias import report

    monkeypatch.setattr(checks, "RECORDED", {})
    monkeypatch.setenv(checks.ENV_VAR, "report")
    checks.require("chQ", [checks.at_least("a", 2, 1), checks.at_least("b", 0, 1)])
    assert report.glue_checks_passed("chQ") == "1 of 2 checks FAILED: b"
    assert report.glue_checks_passed("chNone") == "no checks ran"


# ----------------------------------------------------------------------------- report mode
def test_report_mode_with_a_failed_check_is_never_recorded_or_announced_as_passed(
    tmp_path, monkeypatch, capsys
):
    """Before: exit 0, "all checks passed", ``checks_passed: true`` beside ``checks_failed: ["bad"]``."""
    root = book_with(tmp_path, FAILING)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CONVBIAS_RESULTS_CACHE", "off")
    monkeypatch.setenv(checks.ENV_VAR, "report")
    out = tmp_path / "res"
    assert main(["run", "1", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "all checks passed" not in printed
    assert "1 of 2 checks FAILED: bad" in printed and "not judged" in printed
    saved = json.loads((out / "01_t" / "results.json").read_text())
    assert saved["checks_failed"] == ["bad"] and saved["checks_passed"] is False
    assert saved["completed"] is True and saved["checks_judged"] is False
    assert saved["values"]["chT_checks"] == "1 of 2 checks FAILED: bad"
    monkeypatch.delenv(checks.ENV_VAR)
    (root / "01_t.ipynb").unlink()
    book_with(tmp_path, PASSING)
    assert main(["run", "1", "--out", str(out)]) == 0
    assert "all 2 checks passed" in capsys.readouterr().out
    saved = json.loads((out / "01_t" / "results.json").read_text())
    assert (
        saved["checks_passed"] is True and saved["values"]["chT_checks"] == "all passed"
    )


def test_verify_records_a_seed_with_a_failed_check_as_failed(tmp_path, monkeypatch):
    """Before: verify's seed runs (report mode) said ``checks_passed: true``."""
    root = book_with(tmp_path, FAILING)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CONVBIAS_RESULTS_CACHE", "off")
    assert main(["verify", "--seeds", "0", "--out", str(tmp_path / "v")]) == 1
    seed_run = json.loads(
        (tmp_path / "v" / "01_t" / "seed-0" / "results.json").read_text()
    )
    assert seed_run["checks_passed"] is False and seed_run["checks_failed"] == ["bad"]


def test_verify_fails_when_a_chapter_crashes_before_its_checks(
    tmp_path, monkeypatch, capsys
):
    """Before: exit 0 (no check row failed, since none was reached)."""
    root = book_with(tmp_path, "raise RuntimeError('no data')")
    monkeypatch.chdir(root)
    monkeypatch.setenv("CONVBIAS_RESULTS_CACHE", "off")
    assert main(["verify", "--seeds", "0", "--out", str(tmp_path / "w")]) == 1
    assert "did not finish (01_t seed 0)" in capsys.readouterr().out


@contextlib.contextmanager
def within(seconds: int):
    """Fail with ``TimeoutError`` instead of hanging (the old ``parse_seeds`` never returned)."""

    def stop(*args):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_verify_refuses_a_huge_seed_range_at_once():
    """Before: ``--seeds 0-99999999999`` hung building the list."""
    with within(5):
        for text in ("0-99999999999", "0-1000", f"{2**64}"):
            with pytest.raises(ValueError, match="seeds"):
                verify.parse_seeds(text)
    assert len(verify.parse_seeds("0-999")) == verify.MAX_SEEDS


def test_cli_huge_seed_range_is_one_line_and_quick(tmp_path, monkeypatch, capsys):
    root = book_with(tmp_path, PASSING)
    monkeypatch.chdir(root)
    with within(5):
        assert main(["verify", "--seeds", "0-99999999999"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 1000 seeds" in err


# ----------------------------------------------------------------------------- smoke runs
def test_a_smoke_run_is_marked_goes_to_its_own_folder_and_never_over_real_results(
    tmp_path, monkeypatch
):
    """Before: ``results.json`` of a smoke run said ``checks_passed: true`` with no marker, went to
    ``results/<chapter>`` and replaced a real run's files; failed checks never reached
    ``checks_reported``."""
    root = book_with(tmp_path, FAILING)
    monkeypatch.chdir(tmp_path)
    nb = root / "01_t.ipynb"
    out = tmp_path / "results" / "smoke" / "01_t"
    cost = smoke.run_smoke(nb, out, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["smoke"] is True and cost["smoke"] is True
    assert json.loads((out / "cost.json").read_text())["smoke"] is True
    assert saved["checks_passed"] is False and saved["checks_failed"] == ["bad"]
    assert cost["checks_reported"] and "bad" in cost["checks_reported"][0]
    real = tmp_path / "results" / "01_t"
    real.mkdir(parents=True)
    (real / "results.json").write_text(json.dumps({"checks_passed": True}))
    (real / "fig-01-1.png").write_bytes(b"real figure")
    with pytest.raises(smoke.RealResultsInTheWay, match="real run"):
        smoke.run_smoke(nb, real, progress=False)
    assert (real / "fig-01-1.png").read_bytes() == b"real figure"
    smoke.run_smoke(nb, out, progress=False)  # over an earlier smoke run: fine


def test_cli_smoke_default_folder_and_refusal(tmp_path, monkeypatch, capsys):
    root = book_with(tmp_path, PASSING)
    monkeypatch.chdir(root)
    assert main(["run", "1", "--smoke"]) == 0
    assert (root / "results" / "smoke" / "01_t" / "cost.json").exists()
    assert not (root / "results" / "01_t").exists()
    (root / "results" / "01_t").mkdir()
    (root / "results" / "01_t" / "results.json").write_text("{}")
    capsys.readouterr()
    assert main(["run", "1", "--smoke", "--out", "results"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds the results of a real run" in err
    monkeypatch.setenv(
        "CONVBIAS_SMOKE", "1"
    )  # a plain run in smoke mode goes there too
    assert main(["run", "1", "--no-cache"]) == 0
    saved = json.loads(
        (root / "results" / "smoke" / "01_t" / "results.json").read_text()
    )
    assert saved["smoke"] is True
    assert (root / "results" / "01_t" / "results.json").read_text() == "{}"


def test_a_smoke_result_is_never_stored_or_restored_as_a_real_one(
    tmp_path, results_cache
):
    """A kernel run under CONVBIAS_SMOKE=1 is marked and not stored; a stored entry claiming
    to be a smoke run (or naming odd files) is not restored."""
    nb = book_with(tmp_path, PASSING) / "01_t.ipynb"
    with config.environment(CONVBIAS_SMOKE="1"):
        first = runner.run_chapter(nb, tmp_path / "a", progress=False)
        assert first["smoke"] is True and not first["cached"]
        assert not runner.run_chapter(nb, tmp_path / "b", progress=False)["cached"]


def test_save_budget_refuses_numbers_from_failed_runs(tmp_path):
    """Before: ``--save-budget`` saved the minutes of a smoke run that stopped at a failed cell."""
    cost = {
        "chapter": "01_t",
        "profile": "full",
        "completed": False,
        "predicted": {
            "gpu_seconds": {"T4": 60.0, "H100": 6.0},
            "seconds": 600.0,
            "flops": 1e12,
        },
        "host_seconds": 1.0,
        "peak_host_bytes": 2**30,
        "peak_tensor_bytes": 2**28,
    }
    with pytest.raises(ValueError, match="did not finish"):
        estimate.save_budget([cost], tmp_path / "budget.json")
    assert not (tmp_path / "budget.json").exists()


def test_estimate_reads_only_smoke_costs(tmp_path):
    (tmp_path / "cost.json").write_text(json.dumps({"checks_passed": True}))
    with pytest.raises(ValueError, match="not a smoke run's cost.json"):
        estimate._read_cost(tmp_path / "cost.json")
    (tmp_path / "cost.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not JSON"):
        estimate._read_cost(tmp_path / "cost.json")


# ----------------------------------------------------------------------------- results cache and folders
def test_a_cache_entry_cannot_choose_a_path_outside_the_output_folder(
    tmp_path, results_cache
):
    """Before: a chapter entry restored files by the names it held, ``../..`` and absolute paths included."""
    import warnings

    from convbias.cache import ResultCache

    nb = book_with(tmp_path, PASSING) / "01_t.ipynb"
    out = tmp_path / "out"
    first = runner.run_chapter(nb, out, progress=False)
    assert first["checks_passed"] and not first["cached"]
    store = ResultCache()
    key = runner.chapter_key(nb)
    entry = store.load("chapter-01_t", key)
    victim = tmp_path / "victim.txt"
    bad = {**entry, "files": {**entry["files"], "../victim.txt": b"owned"}}
    store.save("chapter-01_t", key, bad)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        again = runner.run_chapter(nb, out, progress=False)
    assert not victim.exists()
    assert not again["cached"] and again["checks_passed"]  # recomputed
    assert any("outside the output folder" in str(w.message) for w in said)
    for name in (str(victim), "sub/results.json", "..", "x.sh", "fig-1-1.png/../x"):
        bad = {**entry, "files": {**entry["files"], name: b"owned"}}
        with pytest.warns(UserWarning, match="outside the output folder"):
            assert runner._restorable(bad, "01_t") is None
    for summary in ({"checks_failed": ["bad"]}, {"smoke": True}, {"completed": False}):
        bad = {**entry, "summary": {**entry["summary"], **summary}}
        with pytest.warns(UserWarning, match="every check passed"):
            assert runner._restorable(bad, "01_t") is None
    assert runner._restorable(entry, "01_t") is entry


def test_relative_and_quoted_home_results_folders(tmp_path, monkeypatch):
    """Before: a relative CONVBIAS_RESULTS stored results inside book/ (the kernel's cwd); a quoted
    ``~`` made a folder named ``~``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVBIAS_RESULTS", "store")
    monkeypatch.setenv("CONVBIAS_CACHE", "data")
    env = runner.kernel_environment()
    assert env["CONVBIAS_RESULTS"] == str(tmp_path / "store")
    assert env["CONVBIAS_CACHE"] == str(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONVBIAS_RESULTS", "~/convbias-results")
    from convbias.cache import ResultCache

    assert ResultCache().root == tmp_path / "home" / "convbias-results"


def test_a_relative_results_folder_stays_out_of_the_book(tmp_path, monkeypatch):
    root = book_with(
        tmp_path,
        "from convbias.cache import ResultCache\nfrom convbias.report import glue\n"
        "glue('root', str(ResultCache().root))\n" + PASSING,
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVBIAS_RESULTS", "store")
    summary = runner.run_headless(root / "01_t.ipynb", tmp_path / "out", progress=False)
    assert summary["values"]["root"] == str(tmp_path / "store")


def test_a_read_only_out_is_one_line_before_anything_runs(
    tmp_path, monkeypatch, capsys
):
    """Before: a raw traceback after the run, and a --no-cache run's work lost."""
    root = book_with(tmp_path, "open('ran', 'w').write('x')\n" + PASSING)
    monkeypatch.chdir(root)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if (
        os.geteuid() == 0
    ):  # root writes anywhere: the folder refuses as a read-only one would

        def read_only(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(runner.tempfile, "TemporaryFile", read_only)
    try:
        assert main(["run", "1", "--no-cache", "--out", str(locked)]) == 2
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to the output folder" in err
    assert not (root / "ran").exists()  # nothing was run


def test_check_writable_refuses_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(runner.OutputFolderError, match="nothing was run"):
        runner.check_writable(blocker / "out")


def test_writes_are_atomic_a_full_disk_leaves_no_truncated_file(tmp_path, monkeypatch):
    """Before: a full disk left a truncated ``.ipynb`` under its final name."""
    target = tmp_path / "ch.ipynb"
    target.write_text("the previous, complete notebook")
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space"):
        runner.write_text_atomic(target, "{" + "x" * 10000 + "}")
    assert target.read_text() == "the previous, complete notebook"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ch.ipynb"]


def test_the_runner_writes_through_the_atomic_writer():
    """The executed notebook, figures, profile.txt and results.json: no direct write remains."""
    import ast
    import inspect

    for module in (runner, smoke, verify):
        tree = ast.parse(inspect.getsource(module))
        direct = [
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("write_text", "write_bytes", "savefig")
            and not (
                node.func.attr == "savefig"
                and any(isinstance(a, ast.Name) and a.id == "buffer" for a in node.args)
            )
        ]
        assert direct == [], (module.__name__, direct)
    src = inspect.getsource(runner)
    assert "nbformat.write(" not in src


# ----------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize(
    "variable, value",
    [
        ("CONVBIAS_SEED", "x"),
        ("CONVBIAS_CHECKS", "maybe"),
    ],
)
def test_a_bad_environment_variable_is_one_line_before_a_kernel_starts(
    tmp_path, variable, value
):
    """Before: ``CONVBIAS_SEED=x python -m convbias run 1`` printed a 67-line traceback."""
    root = book_with(tmp_path, PASSING)
    done = subprocess.run(
        [sys.executable, "-m", "convbias", "run", "1", "--out", str(tmp_path / "o")],
        cwd=root,
        env={
            **os.environ,
            variable: value,
            "PYTHONPATH": str(PKG),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert variable in done.stderr
    assert "cell 1" not in done.stdout  # refused before the kernel started


def test_estimate_paths_are_one_line(tmp_path, monkeypatch, capsys):
    """Before: a cost.json without the keys an estimate reads was a KeyError traceback."""
    root = book_with(tmp_path, PASSING)
    monkeypatch.chdir(root)
    folders = [root / "results" / "smoke" / "01_t", root / "results" / "01_t"]
    for folder in folders:  # the default folder now, and the one before
        folder.mkdir(parents=True)
        (folder / "cost.json").write_text(json.dumps({"profile": "full"}))
    assert main(["estimate", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a smoke run's cost.json" in err
    for folder in folders:
        (folder / "cost.json").write_text("{")
    assert main(["estimate", "1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_per_channel_prelu_is_an_unsupported_module():
    """Before: torch's "Mismatch of parameter numbers and input channel size"."""
    from torch import nn

    from convbias.efcn import UnsupportedModule, to_fcn

    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.PReLU(3), nn.Flatten(), nn.Linear(48, 2)
    )
    with pytest.raises(
        UnsupportedModule, match=r"module 1 \(PReLU with num_parameters=3"
    ):
        to_fcn(model, (1, 4, 4))
    shared = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.PReLU(), nn.Flatten(), nn.Linear(48, 2)
    )
    x = torch.randn(2, 16)
    net = to_fcn(shared, (1, 4, 4))
    torch.testing.assert_close(net(x), shared(x.reshape(2, 1, 4, 4)))


def test_verify_refuses_smoke_mode(tmp_path, monkeypatch, capsys):
    """Before: ``CONVBIAS_SMOKE=1 verify`` tabulated 2-step runs as the chapters' robustness."""
    root = book_with(tmp_path, PASSING)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CONVBIAS_SMOKE", "1")
    assert main(["verify", "--seeds", "0", "--out", str(tmp_path / "v")]) == 2
    assert "CONVBIAS_SMOKE is on" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize(
    "variable, value",
    [
        ("CONVBIAS_SEED", "-2"),
        ("CONVBIAS_SMOKE", "perhaps"),
        ("CONVBIAS_SMOKE_STEPS", "abc"),
        ("CONVBIAS_RESULTS_CACHE", "sometimes"),
        ("CONVBIAS_PROFILE", "huge"),
    ],
)
def test_every_run_variable_is_read_before_a_run(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        runner.check_environment()


def test_a_smoke_run_that_wrote_no_cost_file_is_one_line(tmp_path, monkeypatch, capsys):
    """Before: ``RuntimeError`` with a traceback when the smoke subprocess wrote no cost.json."""
    root = book_with(tmp_path, PASSING)
    monkeypatch.chdir(root)
    monkeypatch.setattr(
        estimate.subprocess, "run", lambda *a, **k: None
    )  # it died at once
    assert main(["estimate", "1", "--rerun"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wrote no" in err
