"""Base seeds (CONVBIAS_SEED, run --seed) and the seed-robustness table (python -m convbias verify)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from convbias import config, notebooks, verify
from convbias.__main__ import main

CHAPTER = (
    "from convbias.config import base_seed\n"
    "from convbias.checks import at_least, require\n"
    "S = base_seed(0)\n"
    "require('chT', [at_least('seed_is_even', 1.0 - S % 2, 1.0, 'even seeds pass'),\n"
    "                at_least('always', 2.0 + S, 1.0, 'every seed passes', scale='ratio')])\n"
)


def write_chapter(path: Path, source: str = CHAPTER) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def test_base_seed_reads_the_environment(monkeypatch):
    monkeypatch.delenv(config.SEED_VAR, raising=False)
    assert config.base_seed(7) == 7
    monkeypatch.setenv(config.SEED_VAR, "3")
    assert config.base_seed(7) == 3
    assert "seed=3" in config.run_info()
    for bad in ("-1", "x", "1.5"):
        monkeypatch.setenv(config.SEED_VAR, bad)
        with pytest.raises(ValueError, match="non-negative integer"):
            config.base_seed()


def test_parse_seeds():
    assert verify.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert verify.parse_seeds("0,3, 7") == [0, 3, 7]
    assert verify.parse_seeds("0-2,9,1") == [0, 1, 2, 9]
    for bad in ("", "a", "4-2", "-1"):
        with pytest.raises(ValueError, match="seeds"):
            verify.parse_seeds(bad)


def test_headless_run_records_seed_and_checks(tmp_path, monkeypatch):
    monkeypatch.setenv(config.SEED_VAR, "2")
    summary = notebooks.run_headless(
        write_chapter(tmp_path / "ch.ipynb"), tmp_path / "out", progress=False
    )
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["seed"] == stored["seed"] == 2
    assert [(c["name"], c["passed"], c["value"]) for c in stored["checks"]] == [
        ("seed_is_even", True, 1.0),
        ("always", True, 4.0),
    ]
    assert stored["checks"][1]["margin"] == pytest.approx(4.0)
    again = notebooks.run_headless(
        write_chapter(tmp_path / "ch.ipynb"), tmp_path / "out2", progress=False
    )
    assert len(again["checks"]) == 2  # the checks of this run only


def test_results_cache_keys_on_the_seed(tmp_path, results_cache, monkeypatch):
    nb = write_chapter(tmp_path / "ch.ipynb")
    monkeypatch.setenv(config.SEED_VAR, "0")
    first = notebooks.run_chapter(nb, tmp_path / "a", progress=False)
    monkeypatch.setenv(config.SEED_VAR, "4")
    other = notebooks.run_chapter(nb, tmp_path / "b", progress=False)
    assert not first["cached"] and not other["cached"] and other["seed"] == 4
    monkeypatch.setenv(config.SEED_VAR, "0")
    assert notebooks.run_chapter(nb, tmp_path / "c", progress=False)["cached"]


def test_a_report_mode_run_with_failed_checks_is_not_cached(
    tmp_path, results_cache, monkeypatch
):
    nb = write_chapter(tmp_path / "ch.ipynb")
    monkeypatch.setenv(config.SEED_VAR, "1")
    monkeypatch.setenv("CONVBIAS_CHECKS", "report")
    assert not notebooks.run_chapter(nb, tmp_path / "a", progress=False)["cached"]
    assert not notebooks.run_chapter(nb, tmp_path / "b", progress=False)["cached"]


def test_verify_tabulates_checks_over_seeds(tmp_path, monkeypatch):
    monkeypatch.delenv(config.SEED_VAR, raising=False)
    nb = write_chapter(tmp_path / "01_t.ipynb")
    broken = write_chapter(tmp_path / "02_b.ipynb", "raise RuntimeError('no data')")
    payload = verify.verify(
        [nb, broken],
        [0, 1, 2],
        tmp_path / "runs",
        table=tmp_path / "table" / "rob",
        use_cache=False,
        progress=False,
    )
    rows = {r["check"]: r for r in payload["checks"]}
    assert rows["seed_is_even"]["passed"] == 2 and rows["seed_is_even"][
        "failing_seeds"
    ] == [1]
    assert (
        rows["seed_is_even"]["margin_min"] == -1.0
        and rows["seed_is_even"]["margin_median"] == 0.0
    )
    assert rows["always"]["passed"] == 3 and rows["always"][
        "margin_min"
    ] == pytest.approx(2.0)
    assert rows["always"]["margin_median"] == pytest.approx(3.0)
    assert [r["error"] for r in payload["runs"] if r["chapter"] == "02_b"] == [
        "RuntimeError: no data"
    ] * 3
    md = (tmp_path / "table" / "rob.md").read_text()
    assert (
        "| 01 | **✗ `seed_is_even`** | >= 1 | **2/3** |" in md
        and "| 01 | `always` | >= 1 | 3/3 | ×2 / ×3 |" in md
    )
    assert "02_b" in md and "RuntimeError: no data" in md  # runs that stopped are named
    assert json.loads((tmp_path / "table" / "rob.json").read_text())["seeds"] == [
        0,
        1,
        2,
    ]
    assert config.SEED_VAR not in __import__("os").environ  # restored


def test_cli_run_seed_and_verify(tmp_path, monkeypatch, capsys):
    root = tmp_path / "book"
    root.mkdir()
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: 01_t\n"
    )
    write_chapter(root / "01_t.ipynb")
    monkeypatch.chdir(root)
    monkeypatch.setenv("CONVBIAS_RESULTS_CACHE", "off")
    monkeypatch.setenv(
        config.SEED_VAR, "0"
    )  # restored after the test: the command sets it
    assert (
        main(["run", "1", "--seed", "1", "--out", str(tmp_path / "res")]) == 1
    )  # seed 1 fails a check
    assert (
        json.loads((tmp_path / "res" / "01_t" / "results.json").read_text())["seed"]
        == 1
    )
    monkeypatch.delenv(config.SEED_VAR, raising=False)
    assert main(["verify", "--seeds", "0,2", "--out", str(tmp_path / "v")]) == 0
    assert "2 checks over seeds 0,2: 2 passed on every seed" in capsys.readouterr().out
    assert main(["verify", "--seeds", "2-0"]) == 2
    with pytest.raises(SystemExit):
        main(["run", "1", "--seed", "-3"])
