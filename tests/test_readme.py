"""The README's code runs as written: its parallel sweep example, at a small size.

The example is read from README.md (the Python block that calls ``run_sweep`` with a
``ProcessPoolExecutor``), only its sizes are shrunk (each replacement must match exactly
once, so an edit of the README that moves them fails here), and it runs as a script in a
fresh interpreter, its workers included, with the results cache in a temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the README's sizes -> a grid of 2 batch sizes x 2 rates x 1 decay x 1 seed, 2 epochs
SMALL = {
    "gaussian_mixture(4096, 4096,": "gaussian_mixture(64, 32,",
    "batch_sizes=[4, 8, 16, 32, 64, 128]": "batch_sizes=[8, 32]",
    "lrs=[0.05, 0.1, 0.2, 0.3]": "lrs=[0.1, 0.3]",
    "weight_decays=[0.0, 5e-3, 1e-2, 2e-2, 3e-2]": "weight_decays=[1e-2]",
    "seeds=[0, 1, 2]": "seeds=[0]",
    "epochs=100": "epochs=2",
    "records=20": "records=1",
    "ProcessPoolExecutor(6,": "ProcessPoolExecutor(2,",
}


def readme_sweep_example() -> str:
    blocks = re.findall(
        r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M
    )
    found = [b for b in blocks if "run_sweep(" in b and "ProcessPoolExecutor" in b]
    assert len(found) == 1, f"{len(found)} README blocks run a sweep on a process pool"
    return found[0]


def test_the_readme_sweep_example_runs_as_written(tmp_path):
    code = readme_sweep_example()
    for big, small in SMALL.items():
        assert code.count(big) == 1, f"the README example no longer contains {big!r}"
        code = code.replace(big, small)
    script = tmp_path / "grid.py"
    script.write_text(code)
    env = dict(
        os.environ,
        CONVBIAS_RESULTS=str(tmp_path / "results"),
        CONVBIAS_RESULTS_CACHE="on",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT / "pkg"), os.environ.get("PYTHONPATH", "")]
        ),
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a forking pool would hang here
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout.split("\n")
    # the printed grid: rank by weight decay (rows) and batch size (columns 8 and 32)
    header = next(line for line in table if "batch_size" in line)
    assert header.split()[-2:] == ["8", "32"], done.stdout
    stored = sorted(p.name for p in (tmp_path / "results").rglob("galanti-grid-*.pt"))
    assert len(stored) == 2, stored  # one item per batch size, written by the workers
