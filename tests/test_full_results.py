"""Full-profile records and the reproducibility page: a record from a run's results.json (and,
for a run that did not measure itself, /usr/bin/time -v), smoke and quick runs refused, failed
checks kept, and the page's tables from committed records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from convbias import report
from convbias.__main__ import main

ROOT = Path(__file__).resolve().parents[1]

TIME_REPORT = """\tCommand being timed: "python -m convbias run 3 --profile full"
\tUser time (seconds): 1000.50
\tSystem time (seconds): 192.25
\tPercent of CPU this job got: 97%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5
\tMaximum resident set size (kbytes): 838656
\tExit status: 0
"""

PARAMETERS = """P = by_profile(
    quick=dict(n=16),
    full=dict(
        n=128, kernel=15, depths=tuple(sorted({30, 5})), relu_n=1024, steps_5=500,
        steps_10=1000, steps_30=2000, steps_relu=2000, dd_size=256, dd_steps=3000,
        members=8, relu_members=4,
    ),
)
print(P["n"])"""
FULL = dict(
    n=128,
    kernel=15,
    depths=(5, 30),
    relu_n=1024,
    steps_5=500,
    steps_10=1000,
    steps_30=2000,
    steps_relu=2000,
    dd_size=256,
    dd_steps=3000,
    members=8,
    relu_members=4,
)


FALLBACK = (
    "MNIST: full data set unavailable (DownloadError); using the 5,000 offline digits"
)


def _check(name, value, passed, bound=1.0):
    return {
        "name": name,
        "value": value,
        "op": ">=",
        "bound": bound,
        "claim": "",
        "scale": "ratio",
        "passed": passed,
        "margin": value / bound,
    }


def _results(
    folder: Path, profile: str = "full", measured: bool = True, **extra
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    printed = nbformat.v4.new_output(
        "stream", name="stdout", text=FALLBACK + "\nshape (4, 2)\n"
    )
    cell = nbformat.v4.new_code_cell(PARAMETERS, outputs=[printed, printed])
    nb = nbformat.v4.new_notebook(cells=[cell])
    nbformat.write(nb, folder / "03_channel_normalization.ipynb")
    summary = {
        "notebook": "03_channel_normalization.ipynb",
        "executed": "03_channel_normalization.ipynb",
        "checks_passed": True,
        "failed_cell": None,
        "seed": 0,
        "seconds": 312.0,
        "run_info": f"profile={profile} | seed=0 | device=cpu: CPU, 1 thread | torch 2.13.0+cpu",
        "values": {"ch3_run_info": "x", "ch3_depth10_ratio": 140.25, "ch3_escaped": 23},
        "checks": [_check("ratio", 140.25, True, 10.0), _check("escape", 23, True, 20)],
        "checks_failed": [],
        "finished": "2026-12-06T06:01:02Z",
        "commit": "a" * 40,
        "commit_dirty": False,
        "downloaded_data": [],
    }
    if measured:
        summary["measured"] = {
            "source": "resource.getrusage",
            "cpu_seconds": 300.5,
            "user_seconds": 250.0,
            "system_seconds": 50.5,
            "wall_seconds": 312.0,
            "peak_rss_mib": 900.0,
            "torch_threads": 1,
            "omp_num_threads": "1",
        }
    summary.update(extra)
    (folder / "results.json").write_text(json.dumps(summary))
    return folder / "results.json"


def test_a_record_carries_its_run_its_cost_and_every_value_and_check(tmp_path):
    record = report.full_result_record(_results(tmp_path / "run"))
    assert (
        record["chapter"] == "03_channel_normalization" and record["profile"] == "full"
    )
    assert record["device"] == "cpu: CPU, 1 thread" and record["threads"] == 1
    assert record["commit"] == "a" * 40 and record["date"] == "2026-12-06"
    assert (
        record["measured"]["cpu_seconds"] == 300.5
        and record["measured"]["peak_rss_mib"] == 900.0
    )
    assert record["values"] == {"ch3_depth10_ratio": 140.25, "ch3_escaped": 23}
    assert [c["name"] for c in record["checks"]] == ["ratio", "escape"] and record[
        "checks_passed"
    ]
    assert record["parameters"] == FULL
    assert record["sources"]["measured"] == "resource.getrusage"
    assert record["sources"]["commit"] == record["sources"]["date"] == "results.json"
    assert record["data"] == [] and record["data_fallbacks"] == [FALLBACK]


def test_a_run_from_an_older_runner_takes_its_cost_from_usr_bin_time(tmp_path):
    results = _results(tmp_path / "run", measured=False, commit=None, finished=None)
    with pytest.raises(ValueError, match="no measured cost"):
        report.full_result_record(results)
    (tmp_path / "time.txt").write_text(TIME_REPORT)
    with pytest.raises(ValueError, match="names no commit"):
        report.full_result_record(results, tmp_path / "time.txt")
    summary = json.loads(results.read_text())
    del summary["downloaded_data"], summary["commit"], summary["finished"]
    results.write_text(json.dumps(summary))
    record = report.full_result_record(
        results,
        tmp_path / "time.txt",
        commit="e5cf7d5" + "0" * 33,
        date="2026-12-06",
        downloaded=["mnist/train.npz:1000"],
    )
    assert (
        record["data"] == ["mnist/train.npz:1000"]
        and record["sources"]["data"] == "given"
    )
    m = record["measured"]
    assert (m["cpu_seconds"], m["user_seconds"], m["system_seconds"]) == (
        1192.8,
        1000.5,
        192.2,
    )
    assert m["wall_seconds"] == 3723.5 and m["peak_rss_mib"] == 819.0
    assert m["runner_seconds"] == 312.0 and m["source"].startswith("/usr/bin/time -v")
    assert record["sources"]["commit"] == record["sources"]["date"] == "given"
    with pytest.raises(ValueError, match="not a report of /usr/bin/time"):
        report.parse_time_verbose("Exit status: 0")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(profile="quick"), "not a full-profile run"),
        (dict(smoke=True), "is a smoke run"),
        (dict(run_kind="smoke"), "is a smoke run"),
        (dict(run_info="profile=full | smoke | device=cpu"), "is a smoke run"),
    ],
)
def test_quick_and_smoke_runs_are_refused(tmp_path, kwargs, message):
    profile = kwargs.pop("profile", "full")
    results = _results(tmp_path / "run", profile=profile, **kwargs)
    with pytest.raises(ValueError, match=message):
        report.full_result_record(results)
    records = tmp_path / "records"
    assert (
        main(
            [
                "full-profile",
                "--from-results",
                str(results.parent),
                "--records",
                str(records),
            ]
        )
        == 2
    )
    assert not records.exists()


def test_a_run_whose_checks_failed_is_kept_and_shown_failed(tmp_path):
    checks = [_check("ratio", 140.25, True, 10.0), _check("escape", 12, False, 20)]
    results = _results(
        tmp_path / "run", checks=checks, checks_failed=["escape"], checks_passed=False
    )
    records = tmp_path / "records"
    assert (
        main(
            [
                "full-profile",
                "--from-results",
                str(results.parent),
                "--records",
                str(records),
            ]
        )
        == 1
    )
    (record,) = report.load_full_results(records)
    assert not record["checks_passed"] and record["checks_failed"] == ["escape"]
    line = report.checks_verdict(record)
    assert line == "**1 of 2 passed; did not pass: ✗ `escape` (12 not >= 20)**"
    stopped = report.full_result_record(
        _results(
            tmp_path / "stopped",
            checks_passed=False,
            failed_cell=4,
            error="TrainingDiverged: training diverged by step 2048",
        )
    )
    assert (
        "**the run stopped at code cell 4: TrainingDiverged"
        in report.checks_verdict(stopped)
    )


PAGE = """# Reproducibility

<!-- full-profile results: written by convbias.report.update_full_results_section -->
old
<!-- end of full-profile results -->

## 3. Channel normalization

<!-- full-profile run of 03_channel_normalization -->
old
<!-- end of full-profile run -->

| quantity | paper | full profile | quick |
| --- | --- | --- | --- |
| ratio | 130x | old | {glue:text}`03_channel_normalization.ipynb::ch3_depth10_ratio:.0f`x higher |
| escaped | 2 of 3 | | {glue}`NB3::ch3_escaped` of {glue}`NB3::ch3_missing` |
| added later | b | | {glue}`NB3::ch3_new` / {glue}`NB3::ch3_newer` |
| prose | a | b | no glue here |
| remark | a | b | {glue:text}`NB3::ch3_depth10_ratio:.1f`x: a reading of the quick run |

## 4. Denoising

<!-- full-profile run of 04_early_stopped_denoising -->
<!-- end of full-profile run -->

| quantity | paper | full profile | quick |
| --- | --- | --- | --- |
| PSNR | 27.84 | x | {glue:text}`04_early_stopped_denoising.ipynb::ch4_best_psnr:.2f` |
""".replace("NB3", "03_channel_normalization.ipynb")


def test_the_page_shows_the_records_beside_the_quick_build(tmp_path):
    records = tmp_path / "full_profile"
    record = report.full_result_record(_results(tmp_path / "run"))
    report.write_full_result(record, records)
    page = tmp_path / "reproducibility.md"
    page.write_text(PAGE)
    assert report.update_full_results_section(page, records)
    text = page.read_text()
    assert (
        "| ratio | 130x | 140x higher | {glue:text}`03_channel_normalization.ipynb::ch3_depth10_ratio:.0f`x higher |"
        in text
    )
    assert "| escaped | 2 of 3 | 23 of not recorded |" in text
    # none of the row's values in the record: a quantity added after the recorded run
    assert "| added later | b | not in the recorded run |" in text
    assert "| prose | a | – | no glue here |" in text
    assert (
        "| remark | a | 140.2x | {glue:text}" in text
    )  # the quick run's remark left out
    assert "| PSNR | 27.84 | – |" in text  # no record for chapter 4
    assert (
        "Full profile: cpu: CPU, 1 thread, 2026-12-06, commit `aaaaaaa`: 5.0 min CPU, "
        "5.2 min wall, peak 900 MiB; checks: 2 of 2 passed." in text
    )
    assert (
        "<!-- full-profile run of 04_early_stopped_denoising -->\nFull profile: no run recorded."
        in text
    )
    summary = text.split(report.FULL_RESULTS_START)[1].split(report.FULL_RESULTS_END)[0]
    assert (
        "| 03 | cpu: CPU, 1 thread; 2026-12-06; commit `aaaaaaa`; 5.0 min CPU"
        in summary
    )
    assert (
        "The paper's own setup: one step target of length 128, kernel 15, linear depths 5, 30, "
        "a ReLU net on length 1024, SGD lr 0.1 momentum 0.9; 500 / 1,000 / 2,000 steps at depths "
        "5 / 10 / 30 and 2,000 for the ReLU net (the authors' code: 2,000); deep decoder 256×256, "
        "3,000 steps. Seeds: 8 nets a depth and arm, 4 ReLU nets (the authors ran 3). "
        f"In this run: {FALLBACK} Data downloaded for this run: none. |" in summary
    )
    assert not report.update_full_results_section(page, records)  # idempotent


def test_the_committed_page_shows_the_committed_records(tmp_path):
    page = tmp_path / "reproducibility.md"
    shutil.copy(ROOT / "book" / "reproducibility.md", page)
    folder = ROOT / "book" / "full_profile"
    assert not report.update_full_results_section(page, folder), (
        "book/reproducibility.md is stale: run python -m convbias full-profile "
        "--from-results ... or convbias.report.update_full_results_section"
    )
    for record in report.load_full_results(folder):
        assert record["profile"] == "full" and record["measured"]["cpu_seconds"] > 0
        assert len(record["checks"]) > 0 and record["values"]


def test_a_run_measures_its_own_cpu_time_memory_and_threads(tmp_path):
    """The kernel's CPU time counts (getrusage of the children), and its peak memory."""
    import resource

    from convbias import runner

    burn = (
        "import time\nimport numpy as np\nstart = time.process_time()\n"
        "while time.process_time() - start < 1.5:\n    pass\n"
        "block = np.ones(400 * 2**20 // 8)"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(burn)])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    mine = resource.getrusage(resource.RUSAGE_SELF)
    summary = runner.run_headless(
        tmp_path / "nb.ipynb", tmp_path / "out", progress=False
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    runner_cpu = (after.ru_utime + after.ru_stime) - (mine.ru_utime + mine.ru_stime)
    m = json.loads((tmp_path / "out" / "results.json").read_text())["measured"]
    assert m["cpu_seconds"] - runner_cpu >= 1.4  # the kernel's 1.5 s of work
    assert m["cpu_seconds"] == pytest.approx(
        m["user_seconds"] + m["system_seconds"], abs=0.1
    )
    assert m["peak_rss_mib"] >= 400 and m["wall_seconds"] >= 1.5
    assert isinstance(m["torch_threads"], int) and m["torch_threads"] >= 1
    assert summary["finished"].endswith("Z") and "commit" in summary
