"""Smoke runs: a chapter at full size, every training loop stopped after a few steps, its costs measured.

``python -m convbias run N --profile full --smoke`` executes every cell of a
chapter with the profile's data, models and sizes, but each loop of the package
runs :func:`convbias.config.smoke_steps` steps (``CONVBIAS_SMOKE=1``); checks are
shown, not judged (``CONVBIAS_CHECKS=report``), and the results cache is off (a
smoke result must never stand in for a real one). Its ``results.json`` and
``cost.json`` say ``"smoke": true`` (:data:`MARKER`), its verdict is computed from its
checks (a failed one is listed in ``checks_reported``, never a pass), it goes to
``results/smoke/<chapter>`` by default and it never writes over a real run's
``results.json`` (:func:`refuse_real_results`). Under a
:class:`convbias.costs.CostMeter` it writes ``cost.json`` beside ``results.json``:
the peak host memory of the process (``ru_maxrss``), the peak of live tensor
memory, and each loop's cost measured and scaled to its full length, from which
:mod:`convbias.estimate` predicts the full run's time on a GPU.

Used by the book's tooling (``python -m convbias run --smoke``), not by a chapter's code.
"""

from __future__ import annotations

import io
import json
import resource
import sys
import time
import types
from pathlib import Path
from typing import Any

from . import config

SMOKE_ENV = {config.SMOKE_VAR: "1", "CONVBIAS_CHECKS": "report"}
#: the key that marks a smoke run's results.json and cost.json (``"smoke": true``)
MARKER = "smoke"
#: where ``run --smoke`` writes by default (``<folder>/<chapter>``), away from real results
DEFAULT_FOLDER = Path("results") / "smoke"


class RealResultsInTheWay(ValueError):
    """A smoke run was pointed at a folder holding a real run's results."""


def is_smoke(results: dict) -> bool:
    """True when a ``results.json`` or ``cost.json`` content comes from a smoke run."""
    return results.get(MARKER) is True


def refuse_real_results(out_dir: Path) -> None:
    """Raise :class:`RealResultsInTheWay` if ``out_dir`` holds a ``results.json`` that is not a smoke run's."""
    path = Path(out_dir) / "results.json"
    if not path.exists():
        return
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    if not (isinstance(stored, dict) and is_smoke(stored)):
        raise RealResultsInTheWay(
            f"{out_dir} holds the results of a real run: a smoke run does not write over them "
            f"(its default folder is {DEFAULT_FOLDER}/<chapter>; choose another --out)"
        )


def smoke_mode():
    """Within this block: smoke on, checks reported, results cache off."""
    return config.environment(**SMOKE_ENV, CONVBIAS_RESULTS_CACHE="off")


def host_peak_bytes() -> int:
    """Peak resident memory of this process so far (``ru_maxrss``; kilobytes on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run_smoke(notebook: Path, out_dir: Path, progress: bool = True) -> dict:
    """Run ``notebook`` headless in smoke mode under a cost meter; write and return ``cost.json``'s content."""
    from .costs import CostMeter
    from .runner import check_writable, write_json_atomic

    refuse_real_results(out_dir)
    check_writable(out_dir)
    baseline = host_peak_bytes()
    with smoke_mode():
        with CostMeter() as meter:
            summary = run_in_process(notebook, out_dir, progress=progress)
        steps = config.smoke_steps()
    cost = meter.summary()
    cost.update(
        smoke=True,
        chapter=notebook.stem,
        profile=config.profile(),
        smoke_steps=steps,
        run_info=summary["run_info"],
        completed=summary["failed_cell"] is None,
        failed_cell=summary["failed_cell"],
        error=summary.get("error"),
        checks_reported=summary["checks_reported"],
        checks_failed=summary["checks_failed"],
        peak_host_bytes=host_peak_bytes(),
        baseline_host_bytes=baseline,
    )
    write_json_atomic(out_dir / "cost.json", cost)
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

    from . import checks, notebooks, report
    from .config import smoke
    from .runner import check_writable, jsonable, write_bytes_atomic, write_json_atomic

    refuse_real_results(out_dir)
    check_writable(out_dir)
    _stub_widgets()
    nb = nbformat.read(notebook, as_version=4)
    namespace: dict[str, Any] = {"__name__": "__main__", "display": _display}
    plt.show = lambda *a, **k: None
    plt.close("all")  # figures open before this run are not the chapter's
    report.GLUED.clear()
    checks.RECORDED.clear()  # the checks of this run only
    figures: list[str] = []
    cell_seconds: list[float] = []
    reported: list[str] = []
    summary: dict[str, Any] = {"notebook": notebook.name, "failed_cell": None}
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
                reported.append(f"cell {index + 1}: {exc}")
                continue  # a smoke run reports a failed check and goes on
            summary.update(failed_cell=index + 1, error=f"{type(exc).__name__}: {exc}")
            break
        finally:
            cell_seconds.append(round(time.perf_counter() - started, 2))
            for number in plt.get_fignums():
                name = f"fig-{index + 1:02d}-{number}.png"
                buffer = io.BytesIO()
                plt.figure(number).savefig(buffer, format="png", bbox_inches="tight")
                write_bytes_atomic(out_dir / name, buffer.getvalue())
                figures.append(name)
            plt.close("all")
    from .config import run_info

    shown = [c.to_dict() for found in checks.RECORDED.values() for c in found]
    failed = [c["name"] for c in shown if not c["passed"]]
    # a failed check shown by require() (reported, not raised) is reported too
    reported += [
        c.describe()
        for found in checks.RECORDED.values()
        for c in found
        if not c.passed
    ]
    completed = summary["failed_cell"] is None
    summary.update(
        smoke=smoke(),
        checks_passed=completed and not reported and checks.verdict(shown),
        completed=completed,
        checks_judged=checks.judged(),
        checks=shown,
        checks_failed=failed,
        checks_reported=reported,
        seconds=round(time.perf_counter() - start, 1),
        cell_seconds=cell_seconds,
        run_info=run_info(),
        figures=figures,
        values={k: jsonable(v) for k, v in report.GLUED.items()},
    )
    write_json_atomic(out_dir / "results.json", summary)
    return summary
