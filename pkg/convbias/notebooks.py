"""Operations on the book's notebooks: the Colab set-up cell, student versions, headless runs.

- :func:`sync_colab_cells` puts the same first code cell in every chapter: on Colab
  only, it installs this package from the repository named in ``_config.yml``
  (the one place the URL lives), leaving Colab's own torch alone.
- :func:`student_version` removes the hidden solutions (``{solution}`` blocks) and
  all outputs, for handing notebooks to students.
- :func:`run_headless` executes a chapter's code cells in this Python process,
  without Jupyter, saving every figure as PNG and every glued value to
  ``results.json``: how a chapter's full profile is run on a bare GPU machine.
"""
from __future__ import annotations

import json
import re
import sys
import time
import types
from pathlib import Path
from typing import Any

COLAB_TAG = "colab-setup"
SOLUTION_BLOCK = re.compile(r"^(:{3,}|`{3,})\{solution\}.*?^\1[ \t]*$\n?", re.S | re.M)


# ----------------------------------------------------------------------------- the book
def book_root(start: str | Path | None = None) -> Path:
    """The folder holding ``_toc.yml``, searched upwards from ``start`` (default: cwd)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder
    raise FileNotFoundError(f"no _toc.yml in {here} or above: run this from a checkout of the book")


def toc_notebooks(root: Path) -> list[Path]:
    """Notebooks named in ``_toc.yml``, in book order."""
    import yaml

    files: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((root / "_toc.yml").read_text()))
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def chapter_notebook(root: Path, chapter: str) -> Path:
    """The notebook of a chapter named by number (``1``, ``01``) or file stem."""
    notebooks = toc_notebooks(root)
    for nb in notebooks:
        if nb.stem == chapter or (chapter.isdigit() and nb.stem.startswith(f"{int(chapter):02d}_")):
            return nb
    names = ", ".join(nb.stem for nb in notebooks)
    raise ValueError(f"no chapter {chapter!r} in _toc.yml; chapters: {names}")


def repository_url(root: Path) -> str:
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    try:
        return config["repository"]["url"].rstrip("/")
    except (KeyError, TypeError, AttributeError):
        raise ValueError("_config.yml has no repository: url: entry") from None


# ----------------------------------------------------------------------------- Colab cell
def colab_cell_source(repo_url: str) -> str:
    """Source of the set-up cell: a no-op except on Colab, where it pip-installs the package."""
    return (
        "# Set-up on Google Colab only: install the book's package, keeping Colab's own torch.\n"
        "import sys\n"
        "if \"google.colab\" in sys.modules:\n"
        "    import subprocess\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"git+{repo_url}\"], check=True)"
    )


def sync_colab_cells(root: Path, check: bool = False) -> list[Path]:
    """Make the first code cell of every chapter the Colab set-up cell.

    Returns the notebooks that differed; with ``check`` nothing is written.
    """
    import nbformat

    source = colab_cell_source(repository_url(root))
    changed = []
    for path in toc_notebooks(root):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if COLAB_TAG in c.get("metadata", {}).get("tags", [])]
        if len(tagged) == 1 and tagged[0].source == source and _first_code(nb) is tagged[0]:
            continue
        changed.append(path)
        if check:
            continue
        nb.cells = [c for c in nb.cells if c not in tagged]
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": [COLAB_TAG]})
        cell.id = COLAB_TAG  # a fixed id keeps the file stable across syncs
        first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        nb.cells.insert(first, cell)
        nbformat.write(nb, path)
    return changed


def _first_code(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


# ----------------------------------------------------------------------------- student version
def strip_solutions(markdown: str) -> str:
    """Remove ``{solution}`` directive blocks (colon or backtick fences) from MyST markdown."""
    return SOLUTION_BLOCK.sub("", markdown)


def student_version(src: Path, dst: Path) -> int:
    """Write ``src`` without solutions or outputs to ``dst``; returns the number of solutions removed."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    removed = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            removed += len(SOLUTION_BLOCK.findall(cell.source))
            cell.source = strip_solutions(cell.source)
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells = [c for c in nb.cells if c.cell_type != "markdown" or c.source.strip()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return removed


# ----------------------------------------------------------------------------- headless runs
def _stub_widgets() -> None:
    """Make ``import ipywidgets`` harmless where it is not installed (interactive cells do nothing)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        stub = types.ModuleType("ipywidgets")
        stub.interact = stub.interact_manual = lambda *a, **k: None
        stub.__getattr__ = lambda name: (lambda *a, **k: None)
        sys.modules["ipywidgets"] = stub


def _display(*objects: Any, **_: Any) -> None:
    for obj in objects:
        data = getattr(obj, "data", None)  # a pandas Styler
        print(data.to_string() if hasattr(data, "to_string") else obj)


def run_headless(notebook: Path, out_dir: Path, progress: bool = True) -> dict:
    """Execute ``notebook``'s code cells here; write figures and ``results.json`` to ``out_dir``.

    Cells tagged ``colab-setup`` and IPython magics (``%``/``!`` lines) are skipped.
    Stops at the first failing cell (a failed check included) and records it.
    ``results.json`` holds each code cell's wall time (``cell_seconds``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat

    from . import report
    from .config import smoke

    out_dir.mkdir(parents=True, exist_ok=True)
    _stub_widgets()
    nb = nbformat.read(notebook, as_version=4)
    namespace: dict[str, Any] = {"__name__": "__main__", "display": _display}
    plt.show = lambda *a, **k: None
    plt.close("all")  # figures open before this run are not the chapter's
    report.GLUED.clear()
    figures: list[str] = []
    cell_seconds: list[float] = []
    summary: dict[str, Any] = {"notebook": notebook.name, "checks_passed": True, "failed_cell": None}
    start = time.perf_counter()
    code_cells = [c for c in nb.cells if c.cell_type == "code" and COLAB_TAG not in c.metadata.get("tags", [])]
    for index, cell in enumerate(code_cells):
        lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        if progress:
            print(f"[{notebook.stem}] cell {index + 1}/{len(code_cells)}", flush=True)
        started = time.perf_counter()
        try:
            exec(compile("\n".join(lines), f"{notebook.name}[cell {index + 1}]", "exec"), namespace)
        except Exception as exc:  # record and stop: later cells depend on this one
            if isinstance(exc, AssertionError) and "check" in cell.metadata.get("tags", []) and smoke():
                summary.setdefault("checks_reported", []).append(f"cell {index + 1}: {exc}")
                continue  # a smoke run reports a failed check and goes on
            summary.update(checks_passed=False, failed_cell=index + 1, error=f"{type(exc).__name__}: {exc}")
            break
        finally:
            cell_seconds.append(round(time.perf_counter() - started, 2))
            for number in plt.get_fignums():
                name = f"fig-{index + 1:02d}-{number}.png"
                plt.figure(number).savefig(out_dir / name, bbox_inches="tight")
                figures.append(name)
            plt.close("all")
    from .config import run_info

    summary.update(seconds=round(time.perf_counter() - start, 1), cell_seconds=cell_seconds, run_info=run_info(),
                   figures=figures,
                   values={k: _jsonable(v) for k, v in report.GLUED.items()})
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_chapter(notebook: Path, out_dir: Path, use_cache: bool = True, progress: bool = True) -> dict:
    """:func:`run_headless` through the results cache.

    The key is the notebook's content, the profile and the package's code
    fingerprint: rerunning an unchanged chapter restores its stored figures and
    ``results.json`` instead of recomputing. Only runs whose checks passed are stored.
    Inside the run the chapter's sweeps store each finished item (:mod:`convbias.cache`),
    so a run interrupted midway resumes where it stopped. ``use_cache=False``
    switches both levels off: everything is recomputed.
    """
    import hashlib

    from .cache import ResultCache, switched_off
    from .config import profile

    if not use_cache:
        with switched_off():
            return {**run_headless(notebook, out_dir, progress=progress), "cached": False}
    cache = ResultCache()  # on unless switched off by the environment
    name = f"chapter-{notebook.stem}"
    config = {"notebook": hashlib.sha256(notebook.read_bytes()).hexdigest(), "profile": profile()}
    stored = cache.load(name, config)
    if stored is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for file, data in stored["files"].items():
            (out_dir / file).write_bytes(data)
        return {**stored["summary"], "cached": True}
    summary = run_headless(notebook, out_dir, progress=progress)
    if summary["checks_passed"]:
        files = {f: (out_dir / f).read_bytes() for f in [*summary["figures"], "results.json"]}
        cache.save(name, config, {"summary": summary, "files": files})
    return {**summary, "cached": False}


def run_profiled(notebook: Path, out_dir: Path, rows: int = 25, progress: bool = True, tick: float = 0.1,
                 every: int = 20) -> dict:
    """:func:`run_headless` without the cache, timing every code cell and sampling operators.

    Writes ``profile.txt`` to ``out_dir``: the wall time of each code cell, slowest
    first, then the operators with the most self time (on the GPU when there is one)
    estimated by :class:`convbias.profiling.SampledProfiler`, whose memory stays
    bounded however long the chapter runs (``tick`` and ``every`` set its windows:
    by default a tenth of a second in every two, fewer after slow windows). Summing
    the windows and watching for them costs time, so a traced run takes longer than a
    plain one (chapter 3, of many small operators, twice as long on a CPU): read its
    cell times as a ranking, its shares as where the time goes.
    """
    from .cache import switched_off
    from .profiling import SampledProfiler

    with switched_off(), SampledProfiler(tick, every) as sampler:
        summary = run_headless(notebook, out_dir, progress=progress)
    order = sorted(range(len(summary["cell_seconds"])), key=lambda i: -summary["cell_seconds"][i])
    lines = [f"{summary['run_info']}; {summary['seconds']} s", "code cell   seconds"]
    lines += [f"{i + 1:>9}  {summary['cell_seconds'][i]:>8.2f}" for i in order]
    (out_dir / "profile.txt").write_text("\n".join(lines + ["", sampler.table(rows)]) + "\n")
    return {**summary, "cached": False, "profile": str(out_dir / "profile.txt")}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if hasattr(value, "tolist"):
            return value.tolist()
        return repr(value)
