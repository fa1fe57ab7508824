"""How long each chapter's profile takes on a GPU, and how much memory it needs, predicted from smoke runs.

Method (the one printed by ``python -m convbias estimate``):

1. A *smoke run* (``convbias.smoke``) executes the chapter at full size with
   every training loop cut to a few steps, under ``convbias.costs.CostMeter``,
   which sees every tensor operator: its FLOPs (matrix products and convolutions,
   forward and backward), the bytes it writes, and its time on this CPU.
2. Each loop's measured steps are scaled to the loop's requested number of steps,
   and its records (evaluations, metrics) to the requested number of records; work
   outside loops (data, embeddings, set-up) counts once.
3. Every operator is priced on each GPU of ``convbias.costs.GPUS`` by a roofline:
   ``max(FLOPs / rate, 2 x bytes / bandwidth) + launch overhead`` (views launch
   nothing); the Python time between operators (measured, less the meter's own
   overhead, scaled like the operators around it) is added, less the time the CPU
   allocator spends returning large buffers (a GPU's caching allocator keeps them).
   The CPU column is the operators' CPU time plus all of that Python time.
4. Memory: the host's peak is the smoke process's ``ru_maxrss``; the GPU's is the
   peak of live tensor memory (every tensor the chapter holds at once, CPU copies
   included, so an upper bound) times ``ALLOCATOR_SLACK`` plus
   ``CUDA_CONTEXT_BYTES`` for the CUDA context and library workspaces.

What it does not see: data sets downloaded only when online (full MNIST, CIFAR-10)
are replaced offline by the shipped 5,000 digits, so chapters that use them are
estimated on the offline data and say so (``data`` in the table).

Used by the book's tooling (``python -m convbias estimate``), not by a chapter's code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .costs import GPUS, METER_VERSION

ALLOCATOR_SLACK = 1.15
CUDA_CONTEXT_BYTES = 0.6 * 2**30
#: seconds the full profile may take, each chapter on a Colab T4 (the whole book on one H100 below)
CHAPTER_BUDGET = {"T4": 10 * 60.0}
BOOK_BUDGET = {"H100": 15 * 60.0}
HOST_LIMIT_BYTES = 12 * 2**30  # a free Colab session has about 12.7 GB of RAM
GPU_LIMIT_BYTES = 15 * 2**30  # a T4 has 15 GB

METHOD = (
    "per-operator FLOPs, bytes and CPU time measured in a full-size smoke run, loops scaled to their "
    "step and record counts, GPU time = sum over operators of max(FLOPs/rate, 2 bytes/bandwidth) + launch "
    "overhead (rates: "
    + "; ".join(
        f"{g.name} {g.flops / 1e12:.1f} TFLOP/s, {g.bandwidth / 1e9:.0f} GB/s, "
        f"{g.overhead * 1e6:.0f} us/op"
        for g in GPUS.values()
    )
    + "), plus the measured Python time between operators (scaled like the operators; on a GPU less the "
    "CPU allocator's freeing of large buffers); "
    "GPU memory = peak live tensors x "
    f"{ALLOCATOR_SLACK} + {CUDA_CONTEXT_BYTES / 2**30:.1f} GB context"
)


def chapters(root: Path) -> list[Path]:
    """The numbered chapters of the book, in order."""
    from .notebooks import toc_notebooks

    return [nb for nb in toc_notebooks(root) if nb.stem[:2].isdigit()]


def chapter_estimate(cost: dict) -> dict:
    """Seconds on each GPU and on this CPU, and peak memory, from one smoke run's ``cost.json`` content.

    CPU: the operators' CPU time plus the Python time between them; a GPU: the
    operators' roofline times plus that Python time less the CPU allocator's freeing
    of large buffers, which a GPU's caching allocator does not do (all scaled to the
    full run).
    """
    predicted = cost["predicted"]
    python = max(predicted["python"], 0.0)
    host = max(python - predicted.get("freeing", 0.0), 0.0)
    out = {
        "chapter": cost["chapter"],
        "profile": cost["profile"],
        "completed": cost["completed"],
    }
    for key in GPUS:
        out[f"{key}_seconds"] = predicted["gpu_seconds"][key] + host
    out["cpu_seconds"] = max(predicted["seconds"], 0.0) + python
    out["flops"] = predicted["flops"]
    out["host_bytes"] = cost["peak_host_bytes"]
    out["gpu_bytes"] = cost["peak_tensor_bytes"] * ALLOCATOR_SLACK + CUDA_CONTEXT_BYTES
    out["data"] = cost.get("data", "")
    out["over"] = [
        f"{k} > {v / 60:.0f} min"
        for k, v in CHAPTER_BUDGET.items()
        if out[f"{k}_seconds"] > v
    ]
    if out["host_bytes"] > HOST_LIMIT_BYTES:
        out["over"].append(f"host memory > {HOST_LIMIT_BYTES / 2**30:.0f} GB")
    if out["gpu_bytes"] > GPU_LIMIT_BYTES:
        out["over"].append(f"GPU memory > {GPU_LIMIT_BYTES / 2**30:.0f} GB")
    return out


def book_estimate(costs: list[dict]) -> dict:
    """Total seconds per GPU over the chapters, and whether the book fits ``BOOK_BUDGET``."""
    rows = [chapter_estimate(c) for c in costs]
    total = {key: sum(r[f"{key}_seconds"] for r in rows) for key in GPUS}
    over = [
        f"book on {k} > {v / 60:.0f} min"
        for k, v in BOOK_BUDGET.items()
        if total[k] > v
    ]
    return {"rows": rows, "total_seconds": total, "over": over}


def report(costs: list[dict]) -> str:
    """The table ``python -m convbias estimate`` prints, with its method."""
    book = book_estimate(costs)
    gb = 2**30
    lines = [
        f"{'chapter':<30} {'T4 min':>7} {'H100 min':>8} {'CPU min':>8} {'TFLOP':>7} {'host GB':>8} "
        f"{'GPU GB':>7}  notes"
    ]
    for r in book["rows"]:
        notes = (
            ", ".join((["smoke run FAILED"] if not r["completed"] else []) + r["over"])
            or "fits"
        )
        lines.append(
            f"{r['chapter']:<30} {r['T4_seconds'] / 60:>7.1f} {r['H100_seconds'] / 60:>8.1f} "
            f"{r['cpu_seconds'] / 60:>8.1f} {r['flops'] / 1e12:>7.1f} {r['host_bytes'] / gb:>8.2f} "
            f"{r['gpu_bytes'] / gb:>7.2f}  {notes}"
        )
    total = book["total_seconds"]
    lines.append(
        f"{'book':<30} {total['T4'] / 60:>7.1f} {total['H100'] / 60:>8.1f}"
        + ("  " + ", ".join(book["over"]) if book["over"] else "  fits")
    )
    lines.append(
        f"profile: {', '.join(sorted({r['profile'] for r in book['rows']}))}; method: {METHOD}"
    )
    lines.append(
        "data: what the smoke run could load; offline, the downloads of a Colab run (full MNIST, "
        "CIFAR-10) are replaced by the chapters' offline fallbacks, so those parts are estimated at "
        "the fallback's size"
    )
    return "\n".join(lines)


#: minutes of CPU one smoke run of each chapter takes on a 2-core machine, one thread (measured;
#: what ``estimate`` announces before it runs the smoke runs it lacks)
SMOKE_MINUTES = {1: 1.0, 2: 1.5, 3: 1.0, 4: 1.5, 5: 1.0, 6: 0.5, 7: 0.5}


def stored_cost(out_dir: Path, profile: str = "full") -> dict | None:
    """The ``cost.json`` of an earlier smoke run in ``out_dir`` under ``profile`` by this meter, or None."""
    path = out_dir / "cost.json"
    if not path.exists():
        return None
    cost = _read_cost(path)
    if cost.get("profile") != profile or cost.get("meter_version") != METER_VERSION:
        return None  # another profile, or measured by an older meter: to be run again
    return cost


def holds_real_results(out_dir: Path) -> bool:
    """True when ``out_dir`` holds a chapter's real results (a ``results.json`` no smoke run wrote)."""
    from .smoke import RealResultsInTheWay, refuse_real_results

    try:
        refuse_real_results(out_dir)
    except RealResultsInTheWay:
        return True
    return False


def plan(missing: list[Path], out: Path) -> str:
    """What ``estimate --run-missing`` would run: the chapters without a smoke run, and for how long."""
    minutes = sum(SMOKE_MINUTES.get(int(nb.stem[:2]), 1.5) for nb in missing)
    names = ", ".join(nb.stem for nb in missing)
    numbers = " ".join(str(int(nb.stem[:2])) for nb in missing)
    return (
        f"no smoke run yet of {len(missing)} chapter(s): {names}. Each would run at full size with a few "
        f"steps per training loop, in a fresh process, writing to {out}/<chapter>/ (about {minutes:.0f} "
        f"CPU-minutes in all). Run them with: python -m convbias estimate {numbers} --out {out} "
        "--run-missing"
    )


def smoke_cost(
    notebook: Path, out_dir: Path, profile: str = "full", rerun: bool = False
) -> dict:
    """``cost.json`` of a chapter's smoke run under ``profile``: read if there, else run in a fresh process.

    A fresh process, so its ``ru_maxrss`` is the chapter's own peak. Never into a
    folder that holds a chapter's real results (``ValueError``).
    """
    path = out_dir / "cost.json"
    if not rerun:
        cost = stored_cost(out_dir, profile)
        if cost is not None:
            return cost
    if holds_real_results(out_dir):
        raise ValueError(
            f"{out_dir} holds the real results of {notebook.stem}: a smoke run will not write there "
            "(give estimate another --out)"
        )
    env = {**os.environ, "CONVBIAS_PROFILE": profile}
    cmd = [
        sys.executable,
        "-m",
        "convbias",
        "run",
        notebook.stem,
        "--smoke",
        "--profile",
        profile,
        "--out",
        str(out_dir.parent),
    ]
    subprocess.run(
        cmd,
        env=env,
        check=False,
        cwd=notebook.parent.parent
        if (notebook.parent.parent / "_toc.yml").exists()
        else None,
    )
    if not path.exists():
        raise FileNotFoundError(
            f"the smoke run of {notebook.stem} wrote no {path} (its own message is above)"
        )
    return _read_cost(path)


#: what a smoke run's cost.json must hold for an estimate
COST_KEYS = ("smoke", "chapter", "profile", "completed", "predicted")


def _read_cost(path: Path) -> dict:
    """A smoke run's ``cost.json``; ``ValueError`` in one line for anything else (a real run's file, an old one)."""
    try:
        cost = json.loads(path.read_text())
    except ValueError:
        raise ValueError(f"{path} is not JSON: rerun with --rerun") from None
    missing = [k for k in COST_KEYS if not isinstance(cost, dict) or k not in cost]
    if missing or cost.get("smoke") is not True:
        raise ValueError(
            f"{path} is not a smoke run's cost.json (missing {', '.join(missing) or 'smoke: true'}): "
            "rerun with --rerun"
        )
    return cost


def budget(costs: list[dict]) -> dict:
    """What the chapters' set-up cells announce (``convbias.config.announce_run``): minutes per device."""
    chapters = {}
    for row in book_estimate(costs)["rows"]:
        key = f"ch{int(row['chapter'][:2])}"
        chapters[key] = {
            "T4": round(row["T4_seconds"] / 60, 1),
            "H100": round(row["H100_seconds"] / 60, 1),
            "CPU": round(row["cpu_seconds"] / 60, 1),
            "host_GB": round(row["host_bytes"] / 2**30, 2),
            "gpu_GB": round(row["gpu_bytes"] / 2**30, 2),
        }
    return {"profile": "full", "method": METHOD, "chapters": chapters}


def save_budget(costs: list[dict], path: Path | None = None) -> Path:
    """Write :func:`budget` to the package's ``budget.json`` (or ``path``).

    Refused (``ValueError``, nothing written) when a smoke run did not finish: its numbers
    stop at the cell that failed.
    """
    from . import config

    failed = [c["chapter"] for c in costs if c.get("completed") is not True]
    if failed:
        raise ValueError(
            f"not saving the budget: the smoke run of {', '.join(failed)} did not finish, so its "
            "time and memory are not the chapter's (fix it and rerun estimate --rerun)"
        )
    path = path or Path(config.__file__).with_name(config.BUDGET_FILE)
    from .runner import write_text_atomic

    write_text_atomic(path, json.dumps(budget(costs), indent=2) + "\n")
    return path
