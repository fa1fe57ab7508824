"""Smoke runs: a chapter at full size, every training loop stopped after a few steps, its costs measured.

``python -m convbias run N --profile full --smoke`` executes every cell of a
chapter with the profile's data, models and sizes, but each loop of the package
runs :func:`convbias.config.smoke_steps` steps (``CONVBIAS_SMOKE=1``); checks are
shown, not judged (``CONVBIAS_CHECKS=report``), and the results cache is off (a
smoke result must never stand in for a real one). Under a
:class:`convbias.costs.CostMeter` it writes ``cost.json`` beside ``results.json``:
the peak host memory of the process (``ru_maxrss``), the peak of live tensor
memory, and each loop's cost measured and scaled to its full length, from which
:mod:`convbias.estimate` predicts the full run's time on a GPU.
"""
from __future__ import annotations

import json
import os
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from . import config

SMOKE_ENV = {config.SMOKE_VAR: "1", "CONVBIAS_CHECKS": "report"}


@contextmanager
def smoke_mode() -> Iterator[None]:
    """Within this block: smoke on, checks reported, results cache off."""
    env = {**SMOKE_ENV, "CONVBIAS_RESULTS_CACHE": "off"}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def host_peak_bytes() -> int:
    """Peak resident memory of this process so far (``ru_maxrss``; kilobytes on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def meter_overhead(n: int = 2000) -> float:
    """CPU seconds the :class:`CostMeter` adds to one operator (so host time excludes the meter's own)."""
    from .costs import CostMeter

    x = torch.zeros(1)

    def ops() -> float:
        start = time.process_time()
        for _ in range(n):
            torch.add(x, 1.0)
        return time.process_time() - start

    plain = min(ops() for _ in range(3))
    with CostMeter():
        metered = min(ops() for _ in range(3))
    return max(metered - plain, 0.0) / n


def run_smoke(notebook: Path, out_dir: Path, progress: bool = True) -> dict:
    """Run ``notebook`` headless in smoke mode under a cost meter; write and return ``cost.json``'s content."""
    from . import notebooks
    from .costs import CostMeter

    overhead = meter_overhead()
    baseline = host_peak_bytes()
    with smoke_mode():
        with CostMeter() as meter:
            summary = notebooks.run_headless(notebook, out_dir, progress=progress)
        steps = config.smoke_steps()
    cost = meter.summary()
    ops = cost["measured"]["ops"]
    cost["host_seconds"] = max(cost["cpu_seconds"] - cost["measured"]["seconds"] - ops * overhead, 0.0)
    cost.update(chapter=notebook.stem, profile=config.profile(), smoke_steps=steps, run_info=summary["run_info"],
                completed=summary["failed_cell"] is None, failed_cell=summary["failed_cell"],
                error=summary.get("error"), checks_reported=summary.get("checks_reported", []),
                meter_overhead_seconds=overhead, peak_host_bytes=host_peak_bytes(), baseline_host_bytes=baseline)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cost.json").write_text(json.dumps(cost, indent=2))
    return cost
