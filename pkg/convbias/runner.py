"""Headless chapter runs: a notebook executed in a Jupyter kernel by ``nbclient``.

:func:`run_headless` runs a chapter's code cells one by one in a fresh kernel (a
separate Python process, so ``python -O`` given to the command line cannot strip
the chapter's asserts; ``%``/``!`` lines and widgets work as in Jupyter) and writes
to its output folder:

- ``fig-CC-K.png``: the K-th figure of code cell CC, saved in the kernel with
  ``savefig(bbox_inches="tight")`` when it is shown or when its cell ends;
- ``<chapter>.ipynb``: the executed notebook, outputs included;
- ``results.json``: the glued values, the chapter's checks (from the check cells'
  outputs, ``convbias.checks.from_outputs``), each code cell's wall time and
  the verdict, computed from them: ``"checks_passed"`` is true only when every cell
  ran (``"completed"``), at least one check was shown and none failed, also under
  ``CONVBIAS_CHECKS=report`` (``"checks_judged": false``), which shows failed checks
  without stopping the run. ``"smoke"`` marks a smoke run. It is written last: a run
  that failed says ``"checks_passed": false`` and a run that was killed leaves none.

Every file is written atomically (a temporary name, then a rename: a full disk never
leaves a truncated file under its name), and an output folder that cannot be written
is refused before the kernel starts (:func:`check_writable`).

Before it starts, a run deletes the files a previous run wrote there (and only
those, :func:`clear_run_folder`). :func:`run_chapter` adds the chapter-level
results cache; :func:`run_profiled` samples operators in the kernel with the
maintainers' ``tools/profiling.py``.

Used by the book's tooling (``python -m convbias run``, the tests), not by a chapter's code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COLAB_TAG = "colab-setup"
RUN_MIME = "application/vnd.convbias.run+json"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
FIGURE_NAME = re.compile(r"fig-\d{2,}-\d+\.png")
#: environment variables that change what a chapter computes: part of the chapter-level cache key
KEY_ENV = ("CONVBIAS_SEED", "CONVBIAS_SMOKE", "CONVBIAS_CHECKS")


# ----------------------------------------------------------------------------- before a run
def check_environment() -> None:
    """Read every ``CONVBIAS_*`` variable a run depends on; a bad one raises ``ValueError`` in one line.

    Called before a kernel starts, so a mistake such as ``CONVBIAS_SEED=x`` is one line
    from the command line, not a traceback from inside the kernel.
    """
    from . import cache, checks, config

    config.profile()
    config.base_seed()
    config.smoke()
    config.smoke_steps()
    checks.judged()
    cache.enabled()


# ----------------------------------------------------------------------------- output folder
def run_files(out_dir: Path, stem: str) -> list[Path]:
    """The files in ``out_dir`` that a run of chapter ``stem`` writes (and nothing else)."""
    if not out_dir.is_dir():
        return []
    return sorted(
        p
        for p in out_dir.iterdir()
        if p.is_file()
        and (is_run_file(p.name, stem) or TMP_NAME.fullmatch(p.name) is not None)
    )


#: an interrupted atomic write of one of the run's files (:func:`write_bytes_atomic`)
TMP_NAME = re.compile(
    r"\.(results\.json|profile\.txt|fig-\d{2,}-\d+\.png|[\w-]+\.ipynb)\..+\.tmp"
)


def is_run_file(name: str, stem: str) -> bool:
    """True for a file name a run of chapter ``stem`` writes (plain names only: no folder, no ``..``)."""
    return name in {"results.json", "profile.txt", f"{stem}.ipynb"} or bool(
        FIGURE_NAME.fullmatch(name)
    )


def clear_run_folder(out_dir: Path, stem: str) -> list[Path]:
    """Delete what an earlier run of ``stem`` wrote to ``out_dir``; other files stay. Returns them."""
    removed = run_files(out_dir, stem)
    for path in removed:
        path.unlink()
    return removed


class OutputFolderError(OSError):
    """The output folder cannot be written: said before a run starts, so no work is lost."""


def check_writable(out_dir: Path) -> Path:
    """Create ``out_dir`` and write a probe file in it; raise :class:`OutputFolderError` in one line if that fails.

    Called before a run starts, so a read-only or unusable ``--out`` costs nothing.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir, prefix=".convbias-probe-"):
            pass
    except OSError as exc:
        raise OutputFolderError(
            f"cannot write to the output folder {out_dir} ({exc.strerror or exc}): "
            "nothing was run; choose another folder with --out"
        ) from None
    return out_dir


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    A full disk or an interrupted write never leaves a truncated file under ``path``'s name.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file (mkstemp makes it private)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` of ``text`` in UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to a temporary file beside ``path`` and rename it into place."""
    write_text_atomic(path, json.dumps(data, indent=2))


def jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it, else its ``tolist()`` (arrays, tensors) or its ``repr``."""
    try:
        json.dumps(value)
        return value
    except TypeError:
        if hasattr(value, "tolist"):
            return value.tolist()
        return repr(value)


# ----------------------------------------------------------------------------- inside the kernel
class KernelRecorder:
    """Runs inside the kernel: saves each cell's figures and, at the end, reports what was glued.

    The runner creates one as ``__convbias_run__`` before the first cell, calls
    :meth:`next_cell` before each code cell and :meth:`collect` after the last.
    """

    def __init__(
        self,
        out_dir: str,
        tools_dir: str | None = None,
        tick: float = 0.1,
        every: int = 20,
    ):
        import matplotlib.pyplot as plt
        from IPython import get_ipython

        self.out_dir, self.cell, self.count = Path(out_dir), 0, 0
        self.figures: list[str] = []
        self._plt = plt
        self._show = plt.show
        self._wrap_show()
        # before the inline backend's own post_execute hook, which closes every figure
        get_ipython().events.callbacks["post_execute"].insert(0, self.cell_finished)
        self.sampler = None
        if tools_dir is not None:
            sys.path.insert(0, tools_dir)
            from profiling import (
                SampledProfiler,
            )  # maintainers' tool, in a checkout only

            self.sampler = SampledProfiler(tick, every).__enter__()

    def _wrap_show(self) -> None:
        def show(*args: Any, **kwargs: Any) -> Any:
            self.save_open_figures()
            return self._show(*args, **kwargs)

        self._shows = show
        self._plt.show = show

    def next_cell(self, number: int) -> None:
        self.cell, self.count = number, 0
        if (
            self._plt.show is not self._shows
        ):  # a backend switch (%matplotlib) rebinds it
            self._show = self._plt.show
            self._wrap_show()

    def save_open_figures(self) -> None:
        from matplotlib._pylab_helpers import Gcf

        for manager in sorted(Gcf.get_all_fig_managers(), key=lambda m: m.num):
            figure = manager.canvas.figure
            if getattr(figure, "_convbias_saved", False):
                continue
            self.count += 1
            name = f"fig-{self.cell:02d}-{self.count}.png"
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
            write_bytes_atomic(self.out_dir / name, buffer.getvalue())
            figure._convbias_saved = True
            self.figures.append(name)

    def cell_finished(self) -> None:
        self.save_open_figures()
        if "inline" not in self._plt.get_backend().lower():
            self._plt.close("all")  # as the inline backend does after each cell

    def collect(self, rows: int = 25) -> None:
        from IPython.display import display

        from . import report
        from .config import run_info

        payload: dict[str, Any] = {
            "figures": self.figures,
            "run_info": run_info(),
            "values": {k: jsonable(v) for k, v in report.GLUED.items()},
        }
        if self.sampler is not None:
            self.sampler.__exit__(None, None, None)
            payload["profile"] = self.sampler.table(rows)
        display({RUN_MIME: payload}, raw=True)


# ----------------------------------------------------------------------------- the runner
def _code_cells(nb) -> list[int]:
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and COLAB_TAG not in c.metadata.get("tags", [])
    ]


def _control(client, nb, source: str) -> list:
    """Run ``source`` in the kernel outside the notebook (no history); return its outputs."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(
        cell
    )  # nbclient stores the executed cell at its index: give it a slot of its own
    try:
        client.execute_cell(cell, len(nb.cells) - 1, store_history=False)
    finally:
        nb.cells.pop()
    return cell.outputs


def tools_dir() -> Path:
    """The ``tools/`` folder of the checkout this package is imported from (not shipped in the wheel)."""
    folder = Path(__file__).resolve().parents[2] / "tools"
    if not (folder / "profiling.py").exists():
        raise FileNotFoundError(
            f"{folder / 'profiling.py'} is missing: --trace runs from a checkout of the book "
            "with the package imported from its pkg/ folder"
        )
    return folder


def kernel_environment() -> dict[str, str]:
    """This process's environment for the kernel, which runs in the notebook's folder.

    ``PYTHONPATH`` is made absolute and starts with the folder this package was
    imported from, so the kernel runs this very code; ``MPLBACKEND`` is the inline
    backend, so the executed notebook holds its figures; ``CONVBIAS_STATIC=1``
    (unless set otherwise), so no progress bar or live widget is saved in it; the
    folder variables (``CONVBIAS_RESULTS``, ``CONVBIAS_CACHE``) are made absolute against
    this process's working folder, since the kernel runs in the notebook's.
    """
    from .config import absolute_folder_variables
    from .live import STATIC_VAR

    here = str(Path(__file__).resolve().parents[1])
    paths = [
        str(Path(p).resolve())
        for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if p
    ]
    return {
        STATIC_VAR: "1",
        **os.environ,
        # the kernel runs in the notebook's folder: folders are resolved here, once
        **absolute_folder_variables(),
        "MPLBACKEND": INLINE_BACKEND,
        "PYTHONPATH": os.pathsep.join(dict.fromkeys([here, *paths])),
    }


WIDGET_MIMES = (
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)


def strip_widgets(nb: dict) -> int:
    """Remove saved widget state (``metadata.widgets``) and widget outputs from ``nb``; returns outputs removed.

    A widget's saved view draws nothing once its kernel is gone (a progress bar
    frozen half-full, a dead slider); outputs that also hold text or an image keep those.
    """
    nb.metadata.pop("widgets", None)
    removed = 0
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if any(m in data for m in WIDGET_MIMES):
                for mime in WIDGET_MIMES:
                    data.pop(mime, None)
                if not set(data) - {"text/plain"}:
                    removed += 1
                    continue
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return removed


def run_headless(
    notebook: Path,
    out_dir: Path,
    progress: bool = True,
    trace: bool = False,
    tick: float = 0.1,
    every: int = 20,
    rows: int = 25,
) -> dict:
    """Execute ``notebook`` in a fresh kernel; write figures, the executed notebook and ``results.json``.

    Cells tagged ``colab-setup`` are not run. Stops at the first failing cell (a
    failed check included) and records it. ``trace`` samples operators in the
    kernel (``tools/profiling.py``: windows of ``tick`` seconds, one in ``every``) and
    returns their table as ``"profile"``.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError
    from traitlets.config import Config

    from .checks import from_outputs, judged, verdict
    from .config import smoke

    check_environment()  # a bad CONVBIAS_* variable is one line here, not a kernel traceback
    notebook = Path(notebook).resolve()
    out_dir = check_writable(Path(out_dir))
    clear_run_folder(out_dir, notebook.stem)
    nb = nbformat.read(notebook, as_version=4)
    cells = _code_cells(nb)
    sockets = tempfile.TemporaryDirectory(prefix="convbias-kernel-")
    config = Config()
    config.KernelManager.transport, config.KernelManager.ip = (
        "ipc",
        str(Path(sockets.name) / "kernel"),
    )
    client = NotebookClient(
        nb,
        timeout=None,
        kernel_name="python3",
        allow_errors=False,
        config=config,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    summary: dict[str, Any] = {"notebook": notebook.name, "failed_cell": None}
    cell_seconds: list[float] = []
    dead = False
    start = time.perf_counter()
    with client.setup_kernel(env=kernel_environment()):
        tools = repr(str(tools_dir())) if trace else "None"
        _control(
            client,
            nb,
            "from convbias.runner import KernelRecorder\n"
            f"__convbias_run__ = KernelRecorder({str(out_dir.resolve())!r}, {tools}, {tick!r}, {every!r})",
        )
        for number, index in enumerate(cells, start=1):
            if progress:
                print(f"[{notebook.stem}] cell {number}/{len(cells)}", flush=True)
            _control(client, nb, f"__convbias_run__.next_cell({number})")
            started = time.perf_counter()
            try:
                client.execute_cell(nb.cells[index], index)
            except (
                CellExecutionError
            ) as exc:  # record and stop: later cells depend on this one
                summary.update(failed_cell=number, error=f"{exc.ename}: {exc.evalue}")
                break
            except (
                DeadKernelError
            ) as exc:  # out of memory, os._exit, a crash in native code
                summary.update(failed_cell=number, error=f"the kernel died: {exc}")
                dead = True
                break
            finally:
                cell_seconds.append(round(time.perf_counter() - started, 2))
        if not dead:
            outputs = _control(client, nb, f"__convbias_run__.collect({rows!r})")
            payload = next(
                o["data"][RUN_MIME] for o in outputs if RUN_MIME in o.get("data", {})
            )
            payload = json.loads(
                json.dumps(payload)
            )  # plain types: the results cache stores no notebook nodes
        else:  # what the dead kernel had saved; its glued values died with it
            from .config import run_info

            payload = {
                "run_info": run_info(),
                "values": {},
                "figures": [
                    p.name
                    for p in run_files(out_dir, notebook.stem)
                    if FIGURE_NAME.fullmatch(p.name)
                ],
            }
    sockets.cleanup()
    checks = [
        check for i in cells for check in from_outputs(nb.cells[i].get("outputs", []))
    ]
    failed = [c["name"] for c in checks if not c["passed"]]
    completed = summary["failed_cell"] is None
    strip_widgets(nb)
    write_text_atomic(out_dir / f"{notebook.stem}.ipynb", nbformat.writes(nb))
    from .config import base_seed

    summary.update(
        # the verdict, from the checks shown: every cell ran, at least one check, none failed
        # (with CONVBIAS_CHECKS=report a failed check does not stop the run, but it is no pass)
        checks_passed=completed and verdict(checks),
        completed=completed,
        checks_judged=judged(),
        smoke=smoke(),
        seed=base_seed(),
        seconds=round(time.perf_counter() - start, 1),
        cell_seconds=cell_seconds,
        run_info=payload["run_info"],
        figures=payload["figures"],
        values=payload["values"],
        checks=checks,
        checks_failed=failed,
        executed=f"{notebook.stem}.ipynb",
    )
    write_json_atomic(out_dir / "results.json", summary)
    return {
        **summary,
        **({"profile": payload["profile"]} if "profile" in payload else {}),
    }


def chapter_key(notebook: Path) -> dict:
    """What a chapter's stored results depend on, besides the package's code (hashed by the cache).

    The notebook's content, the profile, the device, the downloaded data sets that
    ``source="auto"`` loaders would pick up, and the variables in ``KEY_ENV``.
    """
    from .config import device, profile

    dev = device()
    if dev.type == "cuda":
        import torch

        name = f"cuda: {torch.cuda.get_device_name(dev)}"
    else:
        name = "cpu"
    return {
        "notebook": hashlib.sha256(Path(notebook).read_bytes()).hexdigest(),
        "profile": profile(),
        "device": name,
        "data": data_source(),
        "env": {k: os.environ.get(k) for k in KEY_ENV},
    }


def data_source() -> list[str]:
    """Names and sizes of the downloaded data sets (results caches and partial downloads left out)."""
    try:
        from .data.download import cache_dir

        root = Path(cache_dir()).resolve()
    except Exception:  # no data cache folder to be had: nothing downloaded
        return []
    from .config import results_root

    skip = {root / "results", results_root().resolve()}
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if Path(folder, d) not in skip)
        for name in sorted(files):
            if not name.endswith((".part", ".tmp")):
                path = Path(folder, name)
                found.append(f"{path.relative_to(root)}:{path.stat().st_size}")
    return found


def run_chapter(
    notebook: Path, out_dir: Path, use_cache: bool = True, progress: bool = True
) -> dict:
    """:func:`run_headless` through the results cache.

    The key is :func:`chapter_key` and the package's code fingerprint: rerunning an
    unchanged chapter restores its stored files instead of recomputing. Only runs
    whose checks passed are stored. Inside the run the chapter's sweeps store each
    finished item (:mod:`convbias.cache`), so a run interrupted midway resumes where it
    stopped. ``use_cache=False`` switches both levels off: everything is recomputed.
    """
    from .cache import ResultCache, switched_off

    if not use_cache:
        with switched_off():
            return {
                **run_headless(notebook, out_dir, progress=progress),
                "cached": False,
            }
    check_environment()
    cache = ResultCache()  # on unless switched off by the environment
    stem = Path(notebook).stem
    name = f"chapter-{stem}"
    config = chapter_key(notebook)
    stored = _restorable(cache.load(name, config), stem)
    if stored is not None:
        check_writable(out_dir)
        clear_run_folder(out_dir, stem)
        for file, data in stored["files"].items():
            if file != "results.json":
                write_bytes_atomic(out_dir / file, data)
        write_bytes_atomic(
            out_dir / "results.json", stored["files"]["results.json"]
        )  # last, as in a run
        return {**stored["summary"], "cached": True}
    summary = run_headless(notebook, out_dir, progress=progress)
    if (
        summary["completed"]
        and not summary["checks_failed"]
        and not summary.get("smoke")
    ):  # a reported failure or a smoke run is never restored as a pass
        files = {
            f: (out_dir / f).read_bytes()
            for f in [*summary["figures"], summary["executed"], "results.json"]
        }
        cache.save(name, config, {"summary": summary, "files": files})
    return {**summary, "cached": False}


def _restorable(stored: Any, stem: str) -> dict | None:
    """``stored`` if it is a chapter entry whose files can only land in the output folder, else None.

    Nothing a cache entry says chooses a path: every file name must be one a run of
    ``stem`` writes (:func:`is_run_file`: no folder, no ``..``, no absolute path), and the
    summary must be a completed, non-smoke run with no failed check. Anything else is
    recomputed, after a :class:`convbias.cache.CacheReadWarning`.
    """
    import warnings

    from .cache import CacheReadWarning

    if stored is None:
        return None
    files = stored.get("files") if isinstance(stored, dict) else None
    summary = stored.get("summary") if isinstance(stored, dict) else None
    problem = None
    if not isinstance(files, dict) or not isinstance(summary, dict):
        problem = "it is not a chapter's results"
    elif "results.json" not in files:
        problem = "it has no results.json"
    else:
        bad = [f for f in files if not (isinstance(f, str) and is_run_file(f, stem))]
        if bad:
            problem = (
                f"it names files outside the output folder's own names: {bad[:3]!r}"
            )
        elif not all(isinstance(v, bytes) for v in files.values()):
            problem = "its files are not bytes"
        elif (
            not summary.get("completed")
            or summary.get("checks_failed")
            or summary.get("smoke")
        ):
            problem = "it is not a completed run with every check passed"
    if problem:
        warnings.warn(
            f"the stored results of {stem} were not restored ({problem}): recomputing",
            CacheReadWarning,
            stacklevel=3,
        )
        return None
    return stored


def run_profiled(
    notebook: Path,
    out_dir: Path,
    rows: int = 25,
    progress: bool = True,
    tick: float = 0.1,
    every: int = 20,
) -> dict:
    """:func:`run_headless` without the cache, timing every code cell and sampling operators.

    Writes ``profile.txt`` to ``out_dir``: the wall time of each code cell, slowest
    first, then the operators with the most self time (on the GPU when there is one),
    sampled in the kernel by the checkout's ``tools/profiling.py`` (by default a tenth of a
    second in every two, fewer after slow windows). Sampling costs
    time (chapter 3, of many small operators, runs about twice as long on a CPU):
    read its cell times as a ranking, its shares as where the time goes.
    """
    from .cache import switched_off

    with switched_off():
        summary = run_headless(
            notebook,
            out_dir,
            progress=progress,
            trace=True,
            tick=tick,
            every=every,
            rows=rows,
        )
    order = sorted(
        range(len(summary["cell_seconds"])), key=lambda i: -summary["cell_seconds"][i]
    )
    lines = [f"{summary['run_info']}; {summary['seconds']} s", "code cell   seconds"]
    lines += [f"{i + 1:>9}  {summary['cell_seconds'][i]:>8.2f}" for i in order]
    write_text_atomic(
        out_dir / "profile.txt", "\n".join(lines + ["", summary.pop("profile")]) + "\n"
    )
    return {**summary, "cached": False, "profile": str(out_dir / "profile.txt")}
