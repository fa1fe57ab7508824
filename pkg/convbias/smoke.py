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

Used by the book's tooling (``python -m convbias run --smoke``), not by a chapter's code.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import types
from pathlib import Path
from typing import Any

from . import config

SMOKE_ENV = {config.SMOKE_VAR: "1", "CONVBIAS_CHECKS": "report"}


def smoke_mode():
    """Within this block: smoke on, checks reported, results cache off."""
    return config.environment(**SMOKE_ENV, CONVBIAS_RESULTS_CACHE="off")


def host_peak_bytes() -> int:
    """Peak resident memory of this process so far (``ru_maxrss``; kilobytes on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run_smoke(notebook: Path, out_dir: Path, progress: bool = True) -> dict:
    """Run ``notebook`` headless in smoke mode under a cost meter; write and return ``cost.json``'s content."""
    from .costs import CostMeter

    baseline = host_peak_bytes()
    with smoke_mode():
        with CostMeter() as meter:
            summary = run_in_process(notebook, out_dir, progress=progress)
        steps = config.smoke_steps()
    cost = meter.summary()
    cost.update(
        chapter=notebook.stem,
        profile=config.profile(),
        smoke_steps=steps,
        run_info=summary["run_info"],
        completed=summary["failed_cell"] is None,
        failed_cell=summary["failed_cell"],
        error=summary.get("error"),
        checks_reported=summary.get("checks_reported", []),
        peak_host_bytes=host_peak_bytes(),
        baseline_host_bytes=baseline,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cost.json").write_text(json.dumps(cost, indent=2))
    return cost


# ----------------------------------------------------------------------------- in-process execution
def _stub_widgets() -> None:
    """Make ``import ipywidgets`` harmless where it is not installed (interactive cells do nothing)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        stub = types.ModuleType("ipywidgets")
        stub.interact = stub.interact_manual = lambda *a, **k: None
        stub.__getattr__ = lambda name: lambda *a, **k: None
        sys.modules["ipywidgets"] = stub


def _display(*objects: Any, **_: Any) -> None:
    for obj in objects:
        data = getattr(obj, "data", None)  # a pandas Styler
        print(data.to_string() if hasattr(data, "to_string") else obj)


def run_in_process(notebook: Path, out_dir: Path, progress: bool = True) -> dict:
    """Execute ``notebook``'s code cells in this Python process; write figures and ``results.json``.

    In this process, so a cost meter sees every operation; the outputs go to ``out_dir``.

    Cells tagged ``colab-setup`` and IPython magics (``%``/``!`` lines) are skipped.
    Stops at the first failing cell (a failed check included) and records it.
    ``results.json`` holds each code cell's wall time (``cell_seconds``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat

    from . import notebooks, report
    from .config import smoke
    from .runner import jsonable

    out_dir.mkdir(parents=True, exist_ok=True)
    _stub_widgets()
    nb = nbformat.read(notebook, as_version=4)
    namespace: dict[str, Any] = {"__name__": "__main__", "display": _display}
    plt.show = lambda *a, **k: None
    plt.close("all")  # figures open before this run are not the chapter's
    report.GLUED.clear()
    figures: list[str] = []
    cell_seconds: list[float] = []
    summary: dict[str, Any] = {
        "notebook": notebook.name,
        "checks_passed": True,
        "failed_cell": None,
    }
    start = time.perf_counter()
    code_cells = [
        c
        for c in nb.cells
        if c.cell_type == "code"
        and notebooks.COLAB_TAG not in c.metadata.get("tags", [])
    ]
    for index, cell in enumerate(code_cells):
        lines = [
            ln
            for ln in cell.source.splitlines()
            if not ln.lstrip().startswith(("%", "!"))
        ]
        if progress:
            print(f"[{notebook.stem}] cell {index + 1}/{len(code_cells)}", flush=True)
        started = time.perf_counter()
        try:
            exec(
                compile("\n".join(lines), f"{notebook.name}[cell {index + 1}]", "exec"),
                namespace,
            )
        except Exception as exc:  # record and stop: later cells depend on this one
            if (
                isinstance(exc, AssertionError)
                and "check" in cell.metadata.get("tags", [])
                and smoke()
            ):
                summary.setdefault("checks_reported", []).append(
                    f"cell {index + 1}: {exc}"
                )
                continue  # a smoke run reports a failed check and goes on
            summary.update(
                checks_passed=False,
                failed_cell=index + 1,
                error=f"{type(exc).__name__}: {exc}",
            )
            break
        finally:
            cell_seconds.append(round(time.perf_counter() - started, 2))
            for number in plt.get_fignums():
                name = f"fig-{index + 1:02d}-{number}.png"
                plt.figure(number).savefig(out_dir / name, bbox_inches="tight")
                figures.append(name)
            plt.close("all")
    from .config import run_info

    summary.update(
        seconds=round(time.perf_counter() - start, 1),
        cell_seconds=cell_seconds,
        run_info=run_info(),
        figures=figures,
        values={k: jsonable(v) for k, v in report.GLUED.items()},
    )
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return summary
