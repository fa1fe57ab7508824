"""Every chapter at full size, a few steps per training loop: it runs, and it fits a Colab session.

Each test runs ``python -m convbias run N --profile full --smoke`` in a fresh process
(one test per chapter, so pytest-xdist spreads them) and reads its ``cost.json``:
every cell must run (failed checks are reported, not judged), the process's peak
resident memory (``ru_maxrss``) must stay under 12 GB (a free Colab session has
12.7 GB), and the GPU memory it would need, the peak of live tensor memory
measured by :class:`convbias.costs.CostMeter` plus allocator slack and the CUDA
context (:func:`convbias.estimate.chapter_estimate`), under 15 GB (a T4).
Each takes 20 s to 1.5 min of CPU (``-m "not fullsize"`` leaves them out).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convbias.estimate import GPU_LIMIT_BYTES, HOST_LIMIT_BYTES, chapter_estimate

ROOT = Path(__file__).resolve().parents[1]
GB = 2**30


@pytest.mark.fullsize
@pytest.mark.parametrize("chapter", ["1", "2", "3", "4", "5", "6", "7"])
def test_chapter_runs_at_full_size_within_memory(chapter, tmp_path):
    env = {
        **os.environ,
        "CONVBIAS_PROFILE": "full",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "pkg"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "convbias",
            "run",
            chapter,
            "--profile",
            "full",
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    costs = list(tmp_path.glob("*/cost.json"))
    assert costs, f"no cost.json written:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    cost = json.loads(costs[0].read_text())
    print(done.stdout.strip().splitlines()[-1])
    assert cost["completed"], f"cell {cost['failed_cell']} failed: {cost['error']}"
    assert done.returncode == 0
    assert cost["profile"] == "full" and cost["smoke_steps"] >= 1
    # the smoke run ran few steps but predicts many: the loops were capped, not skipped
    assert cost["loops"] and all(
        v["run_steps"] <= v["requested_steps"] for v in cost["loops"].values()
    )
    assert cost["peak_host_bytes"] < HOST_LIMIT_BYTES, (
        f"host memory {cost['peak_host_bytes'] / GB:.2f} GB"
    )
    estimate = chapter_estimate(cost)
    assert estimate["gpu_bytes"] < GPU_LIMIT_BYTES, (
        f"GPU memory {estimate['gpu_bytes'] / GB:.2f} GB"
    )
