"""The reproducibility page's place for paper-scale results: records, loader, the page section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import convbias
from convbias import report

ROOT = Path(__file__).resolve().parents[1]


def _results_json(tmp_path: Path, profile: str = "full") -> Path:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            {
                "notebook": "03_channel_normalization.ipynb",
                "checks_passed": True,
                "seconds": 312.0,
                "run_info": f"profile={profile} | device=cuda: Tesla T4 | torch 2.5.1",
                "values": {
                    "ch3_run_info": "x",
                    "ch3_depth10_ratio": 140.25,
                    "ch3_checks": "all passed",
                },
            }
        )
    )
    return path


def test_a_record_carries_device_date_and_code_version(tmp_path):
    record = report.full_result_record(_results_json(tmp_path), date="2026-01-02")
    assert (
        record["chapter"] == "03_channel_normalization"
        and record["device"] == "cuda: Tesla T4"
    )
    assert record["date"] == "2026-01-02" and record["code_version"].startswith(
        f"{convbias.__version__}+"
    )
    assert record["values"]["ch3_depth10_ratio"] == 140.25
    with pytest.raises(ValueError, match="not a full-profile run"):
        report.full_result_record(_results_json(tmp_path, "quick"))


def test_the_page_shows_recorded_runs_beside_the_quick_build(tmp_path):
    folder = tmp_path / "full_profile"
    folder.mkdir()
    page = tmp_path / "reproducibility.md"
    shutil.copy(ROOT / "book" / "reproducibility.md", page)
    assert (
        report.NO_FULL_RESULTS in page.read_text()
    )  # the committed page: none recorded
    assert not report.update_full_results_section(
        page, folder
    )  # nothing recorded: nothing changes
    record = report.full_result_record(_results_json(tmp_path), date="2026-01-02")
    (folder / "03_channel_normalization.json").write_text(json.dumps(record))
    quick = {"03_channel_normalization": {"ch3_depth10_ratio": 35.5}}
    assert report.update_full_results_section(page, folder, quick)
    text = page.read_text()
    assert report.NO_FULL_RESULTS not in text
    assert (
        "| `ch3_depth10_ratio` | 140.2 | 35.5 |" in text
        and "cuda: Tesla T4, 2026-01-02" in text
    )
    assert "ch3_run_info" not in text.split(report.FULL_RESULTS_START)[1]
    assert text.count(report.FULL_RESULTS_START) == 1 and text.rstrip().endswith(
        report.FULL_RESULTS_END
    )
    (folder / "bad.json").write_text(json.dumps({"chapter": "x"}))
    with pytest.raises(ValueError, match="needs device"):
        report.load_full_results(folder)
