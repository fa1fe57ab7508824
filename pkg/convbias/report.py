"""Reporting helpers for chapters: glue values into the book and paper-vs-build tables.
Used by every chapter.

:func:`glue` stores a value under a key for the built book (myst-nb glue) and
does nothing when myst-nb is absent (e.g. on Colab), so notebooks run anywhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

#: every value glued in this process, by key (written out by headless chapter runs)
GLUED: dict[str, Any] = {}


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None and hasattr(get_ipython(), "kernel")


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Glue ``value`` under ``name`` for ``{glue:text}`` references; returns ``value``.

    The value is also recorded in ``GLUED``. Outside a Jupyter kernel, or
    without myst-nb (e.g. on Colab), nothing is displayed.
    """
    GLUED[name] = value
    if not _in_kernel():
        return value
    try:
        from myst_nb import glue as nb_glue
    except ImportError:  # outside the book build
        return value
    nb_glue(name, value, display=display)
    return value


class PlainText(str):
    """A string whose plain-text and Markdown representations are the text itself (no quotes)."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        return str(self)


def glue_figure(name: str, fig: Any = None) -> None:
    """Glue ``fig`` (default: the current figure) for a numbered ``{glue:figure}`` on the page.

    In a static build of the book (``CONVBIAS_STATIC=1``) the figure appears only where
    the chapter's ``{glue:figure} name`` directive puts it, with its number, caption and
    alt text; in a live notebook (Colab, Jupyter) it is shown under the cell as usual.
    Returns nothing, so a cell ending with it does not show the figure twice.
    """
    import matplotlib.pyplot as plt

    from .live import is_static

    fig = plt.gcf() if fig is None else fig
    if not (_in_kernel() and is_static()):
        plt.show()
        return
    from IPython import get_ipython

    recorder = get_ipython().user_ns.get(
        "__convbias_run__"
    )  # a headless run keeps its figures
    if recorder is not None:
        recorder.save_open_figures()
    try:
        from myst_nb import glue as nb_glue
    except ImportError:
        plt.show()
        return
    nb_glue(name, fig, display=False)
    plt.close(fig)


def parameter_table(params: dict, changes: dict[str, str]) -> PlainText:
    """What a reader may change, as a short Markdown table (a cell ending with it shows it).

    ``changes`` maps keys of the chapter's parameter table ``params`` to what each sets;
    the values are this run's (its profile's), so the table never says more than the
    cell that set them. Unknown keys are refused (a ``KeyError`` naming them).
    """
    from .config import profile

    missing = [key for key in changes if key not in params]
    if missing:
        raise KeyError(f"not in the parameter table: {', '.join(missing)}")

    def shown(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, (list, tuple)):
            return ", ".join(shown(v) for v in value)
        return str(value)

    lines = [
        f"| `P[...]` | what it sets | this run ({profile()} profile) |",
        "|---|---|---|",
        *(
            f"| `{key}` | {what} | {shown(params[key])} |"
            for key, what in changes.items()
        ),
    ]
    return PlainText("\n".join(lines))


def glue_markdown(name: str, text: str) -> str:
    """Glue a string that renders as itself (no quotes) in ``{glue}`` references, also across pages."""
    GLUED[name] = text
    if not _in_kernel():
        return text
    try:
        from myst_nb import glue as nb_glue
    except ImportError:
        return text
    nb_glue(name, PlainText(text), display=False)
    return text


#: the committed robustness table, relative to the book's folder (where chapters run)
ROBUSTNESS_TABLE = Path("data") / "robustness.json"


def plain_number(x: float) -> str:
    """A measured number as the book's text writes it: 3 significant digits at most, no exponent
    below 10^5 (``1007.5`` -> ``"1008"``, ``21.31`` -> ``"21.3"``, ``0.9681`` -> ``"0.968"``)."""
    x = float(x)
    if x == 0 or abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) < 1e-3:
        return f"{x:.1e}"
    return f"{x:.3g}"


def glue_robustness(
    prefix: str, chapter: str, table: str | Path = ROBUSTNESS_TABLE
) -> dict:
    """Glue each check of ``chapter`` in the committed robustness table (``verify``'s JSON).

    For every check ``name``: ``<prefix>_robust_<name>`` as ``"lo to hi"`` (its values over
    the table's base seeds), ``..._min`` and ``..._max``, ``..._passed`` (``"k of n"`` base seeds)
    and ``..._failing`` (``"base seed 3"``, or ``"none"``); and ``<prefix>_robust_seeds``, the
    base seeds as ``"a to b"``. Text that quotes a range over seeds glues it from here, so
    regenerating the table updates the page. Returns the glued strings by key; nothing when
    the table is absent (a notebook opened outside the book, e.g. on Colab).
    """
    import json

    path = Path(table)
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    seeds = payload["seeds"]
    out = {f"{prefix}_robust_seeds": f"{min(seeds)} to {max(seeds)}"}
    for row_ in payload["checks"]:
        if row_["chapter"] != chapter:
            continue
        lo, hi = plain_number(row_["value_min"]), plain_number(row_["value_max"])
        key = f"{prefix}_robust_{row_['check']}"
        out.update({key: f"{lo} to {hi}", f"{key}_min": lo, f"{key}_max": hi})
        out[f"{key}_passed"] = f"{row_['passed']} of {row_['seeds']}"
        failing = [str(s) for s in row_["failing_seeds"]]
        out[f"{key}_failing"] = "base seed " + ", ".join(failing) if failing else "none"
    if len(out) == 1:
        raise ValueError(f"no check of chapter {chapter!r} in {path}")
    for key, text in out.items():
        glue_markdown(key, text)
    return out


def glue_run_info(chapter: str, seed: int = 0) -> str:
    """Glue ``<chapter>_run_info``: the profile, base seed (``seed`` unless ``CONVBIAS_SEED``
    is set), device and torch version of this run."""
    from .config import run_info

    return glue_markdown(f"{chapter}_run_info", run_info(seed))


def spread(values: Any, axis: int = 0, fmt: str = ".2f") -> str | list[str]:
    """Mean and range over seeds as ``"mean [min, max]"``, the book's one format for a spread.

    ``values`` has seeds along ``axis``; a 1-D input gives one string, a 2-D input a list
    (one string per column when ``axis=0``).
    """
    import numpy as np

    a = np.asarray(values, dtype=float)
    if a.size == 0:
        raise ValueError("spread of an empty array")
    mean, lo, hi = (np.atleast_1d(f(a, axis=axis)) for f in (np.mean, np.min, np.max))
    cells = [f"{m:{fmt}} [{l:{fmt}}, {h:{fmt}}]" for m, l, h in zip(mean, lo, hi)]
    return cells[0] if a.ndim <= 1 else cells


def row(quantity: str, paper: Any = "", build: Any = "", note: str = "") -> dict:
    """One row of :func:`comparison_table`: a quantity, the paper's value, this build's, a note."""
    return {"quantity": quantity, "paper": paper, "this build": build, "note": note}


def glue_checks_passed(chapter: str) -> str:
    """Glue ``<chapter>_checks``, the verdict of the chapter's checks, computed from them.

    ``"all passed"`` only when checks were recorded for ``chapter``
    (:data:`convbias.checks.RECORDED`, the latest of each name) and every one passed;
    else the failed ones (``CONVBIAS_CHECKS=report`` runs on past a failure) or
    ``"no checks ran"``. Called after the chapter's last check.
    """
    from .checks import RECORDED, summary_line, verdict

    latest = list({c.name: c for c in RECORDED.get(chapter, [])}.values())
    text = "all passed" if verdict(latest) else summary_line(latest)
    return glue_markdown(f"{chapter}_checks", text)


def comparison_table(
    rows: Sequence[dict],
    columns: Sequence[str] = ("quantity", "paper", "this build", "note"),
):
    """A table with the paper's numbers beside this build's, as a pandas DataFrame.

    Each row is a dict with the keys of ``columns``; missing keys are left blank.
    Paper values and this build's values stay in separate columns, never merged.
    """
    import pandas as pd

    unknown = {k for row in rows for k in row} - set(columns)
    if unknown:
        raise ValueError(
            f"unknown column(s) {sorted(unknown)}; expected {list(columns)}"
        )
    frame = pd.DataFrame(
        [{c: row.get(c, "") for c in columns} for row in rows], columns=list(columns)
    )
    return frame.style.hide(axis="index")


# ----------------------------------------------------------------------------- full-profile records
FULL_RESULTS_START = "<!-- full-profile results: written by convbias.report.update_full_results_section -->"
FULL_RESULTS_END = "<!-- end of full-profile results -->"
#: what every committed full-profile record holds
FULL_RESULT_KEYS = (
    "chapter",
    "profile",
    "device",
    "threads",
    "commit",
    "date",
    "measured",
    "checks_passed",
    "checks",
    "values",
)
NO_FULL_RESULTS = (
    "No full-profile run is recorded for this build: every number on this page comes "
    "from the quick profile. Time and memory of the full profile are estimated by "
    "`python -m convbias estimate`."
)
#: what a full-profile cell shows for a value its record lacks
NOT_RECORDED = "not recorded"


def refuse_unless_full(summary: dict, where: str = "results") -> None:
    """Raise ``ValueError`` unless ``summary`` (a ``results.json``) is a real full-profile run:
    a quick run, a smoke run (a few steps per loop, checks not judged) or a run whose
    profile is not named is refused."""
    info = str(summary.get("run_info", ""))
    smoke = [
        k
        for k, v in summary.items()
        if ("smoke" in k.lower() and v) or (isinstance(v, str) and v.lower() == "smoke")
    ]
    if smoke or "smoke" in info.lower():
        raise ValueError(
            f"{where} is a smoke run ({', '.join(smoke) or info}): a few steps per loop, never a result"
        )
    if "profile=full" not in info:
        raise ValueError(f"{where} is not a full-profile run ({info or 'no run_info'})")


def parse_time_verbose(text: str) -> dict[str, Any]:
    """CPU seconds, wall seconds and peak memory from the report of GNU ``/usr/bin/time -v``."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().rpartition(": ")
        if sep:
            fields[key] = value.strip()
    try:
        user = float(fields["User time (seconds)"])
        system = float(fields["System time (seconds)"])
        wall = fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"]
        rss_kib = float(fields["Maximum resident set size (kbytes)"])
    except KeyError as exc:
        raise ValueError(
            f"not a report of /usr/bin/time -v: no {exc.args[0]!r}"
        ) from None
    seconds = 0.0
    for part in wall.split(":"):
        seconds = 60 * seconds + float(part)
    return {
        "source": "/usr/bin/time -v around the whole command (python -m convbias run)",
        "cpu_seconds": round(user + system, 1),
        "user_seconds": round(user, 1),
        "system_seconds": round(system, 1),
        "wall_seconds": round(seconds, 1),
        "peak_rss_mib": round(rss_kib / 1024, 1),
    }


def notebook_parameters(notebook: str | Path, profile: str = "full") -> dict[str, Any]:
    """A chapter's parameters for ``profile``: the ``profile=`` argument of its ``by_profile(...)``
    call, evaluated from the notebook's source (no chapter code runs)."""
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or "by_profile(" not in cell.source:
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "by_profile"
            ):
                for kw in node.keywords:
                    if kw.arg == profile:
                        expr = ast.Expression(kw.value)
                        return eval(compile(expr, str(notebook), "eval"), {})
    raise ValueError(f"{notebook}: no by_profile(...) call with {profile}=")


def full_result_record(
    results_json: str | Path,
    time_report: str | Path | None = None,
    commit: str | None = None,
    date: str | None = None,
    downloaded: list[str] | None = None,
) -> dict:
    """The record to commit (``book/full_profile/<chapter>.json``) of a full-profile run.

    ``results_json`` is the run's ``results.json`` (``python -m convbias run N --profile full``
    or ``full-profile``): its glued values, every check with its verdict, the failed cell and
    error of a run that stopped. The cost is the run's own ``measured`` block (CPU seconds of
    the runner and its kernel, wall, peak memory) or, for a run made by an older runner,
    ``time_report``, the output of ``/usr/bin/time -v`` around the command; ``commit`` and
    ``date`` are the run's own unless given (a run from a snapshot checkout), and so is the list
    of downloaded data sets (``downloaded``, ``name:bytes``: [] when the run used only the data
    that ships with the package). ``sources``
    says where each of these came from. A quick or smoke run is refused; a run whose checks
    failed is kept as failed.
    """
    import json

    path = Path(results_json)
    summary = json.loads(path.read_text())
    refuse_unless_full(summary, str(path))
    sources = {"values, checks": "results.json of the run"}
    measured = summary.get("measured")
    if time_report is not None:
        measured = {
            **parse_time_verbose(Path(time_report).read_text()),
            "runner_seconds": summary.get("seconds"),
        }
    if measured is None:
        raise ValueError(
            f"{path} records no measured cost (an older runner): give the /usr/bin/time -v report"
        )
    sources["measured"] = measured["source"]
    sources["commit"] = "given" if commit else "results.json"
    commit = commit or summary.get("commit")
    if not commit:
        raise ValueError(
            f"{path} names no commit: give the commit the run was made from"
        )
    finished = summary.get("finished")
    if date is None and finished is None:
        raise ValueError(f"{path} has no date: give the date of the run")
    sources["date"] = "given" if date else "results.json"
    info = summary["run_info"]
    fields = dict(part.split("=", 1) for part in info.split(" | ") if "=" in part)
    threads = measured.get("torch_threads")
    if threads is None and "thread" in fields.get("device", ""):
        threads = int(fields["device"].rsplit(", ", 1)[-1].split()[0])
    notebook = path.parent / summary.get("executed", summary["notebook"])
    record = {
        "chapter": Path(summary["notebook"]).stem,
        "profile": "full",
        "seed": summary.get("seed"),
        "device": fields.get("device", "unknown"),
        "threads": threads,
        "torch": info.rsplit("torch ", 1)[-1] if "torch " in info else None,
        "commit": commit,
        "commit_dirty": summary.get("commit_dirty"),
        "date": date or finished[:10],
        "measured": measured,
        "checks_passed": bool(summary["checks_passed"])
        and not summary.get("checks_failed"),
        "completed": summary.get("completed"),
        "checks_judged": summary.get("checks_judged"),
        "failed_cell": summary.get("failed_cell"),
        "error": summary.get("error"),
        "checks": summary.get("checks", []),
        "checks_failed": summary.get("checks_failed", []),
        "values": {
            k: v for k, v in summary["values"].items() if not k.endswith("_run_info")
        },
        "data": summary.get("downloaded_data", downloaded),
        "sources": sources,
    }
    if record["data"] is not None:
        sources["data"] = "results.json" if "downloaded_data" in summary else "given"
    if notebook.exists():
        record["parameters"] = notebook_parameters(notebook)
        sources["parameters"] = "the by_profile(full=...) call of the executed notebook"
        record["data_fallbacks"] = data_fallbacks(notebook)
        sources["data_fallbacks"] = "the executed notebook's printed output"
    return record


#: how a data loader says that it used less (or other) data than asked for
FALLBACK_LINE = re.compile(r"^[\w.-]+: (?:full data set )?unavailable\b.*$", re.M)


def data_fallbacks(notebook: str | Path) -> list[str]:
    """The lines in which an executed notebook's data loaders said that a data set could not
    be had and what they used instead (e.g. MNIST's offline digits), each once, in order."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    lines: dict[str, None] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for line in FALLBACK_LINE.findall(output.get("text", "")):
                    lines[line.strip()] = None
    return list(lines)


def write_full_result(record: dict, folder: str | Path) -> Path:
    """Write ``record`` to ``folder/<chapter>.json`` (atomically); returns the path."""
    from .runner import write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['chapter']}.json"
    write_json_atomic(path, record)
    return path


def load_full_results(folder: str | Path) -> list[dict]:
    """The committed full-profile records (``<chapter>.json`` in ``folder``), in chapter order; [] if none."""
    import json

    records = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        missing = [k for k in FULL_RESULT_KEYS if k not in record]
        if missing:
            raise ValueError(
                f"{path}: a full-profile record needs {', '.join(missing)}"
            )
        records.append(record)
    return records


# ----------------------------------------------------------------------------- the reproducibility page
_DIGITS = {
    "mnist": "MNIST (the digits that ship with the package unless more were downloaded)",
    "digits": "the 8×8 digits",
}
#: How each chapter's full profile differs from its paper's setup (data, model, steps,
#: seeds), written from the record's own parameters: ``SETUPS[chapter](parameters)``.
SETUPS: dict[str, Callable[[dict], str]] = {
    "01_intrinsic_dimension": lambda p: (
        f"Data: the paper's kind of synthetic patch model (d = {p['d']}, {p['patches']} patches, "
        f"2K = {2 * p['K']}), {len(p['sigmas'])} noise levels, n = {p['n_train']}; MNIST: "
        f"{p['mnist_n_train']:,} training digits asked for (the shipped offline digits where the "
        f"full set cannot be downloaded). Model: two-layer CNN, {p['m']} filters a class; "
        f"MNIST CNN width {p['mnist_width']}. Steps: {p['steps']} GD steps; "
        f"MNIST {p['mnist_epochs']} epochs. Seeds: {p['n_seeds']} (MNIST {p['mnist_n_seeds']}). "
        "Paper: its sizes and figure values are not public; CIFAR-10 is not run."
    ),
    "02_low_rank_sgd": lambda p: (
        f"Data: a {p['n_classes']}-class Gaussian mixture in d = {p['d']} (n = {p['n_train']:,}) and "
        f"{p['mnist_n_train']:,} MNIST digits; paper: CIFAR-10 (and MNIST). Model: a ReLU MLP "
        f"{p['d']}→{'→'.join(map(str, p['widths']))}→{p['n_classes']} without BN; paper: MLPs with BN "
        "(depth 10 × width 100), VGG16-BN, ResNet-18. Steps: "
        f"{p['epochs']} epochs (paper: 500); grid B {min(p['batch_sizes'])}–{max(p['batch_sizes'])}, "
        f"lr {min(p['lrs']):g}–{max(p['lrs']):g}, λ up to {max(p['weight_decays']):g} (paper: lr "
        "0.001–1, λ up to 6e-3). Seeds: "
        f"{p['seeds_per_cell']} a cell."
    ),
    "03_channel_normalization": lambda p: (
        f"The paper's own setup: one step target of length {p['n']}, kernel {p['kernel']}, "
        f"linear depths {', '.join(map(str, p['depths']))}, a ReLU net on length {p['relu_n']}, "
        f"SGD lr 0.1 momentum 0.9; {p['steps_5']:,} / {p['steps_10']:,} / {p['steps_30']:,} steps "
        f"at depths 5 / 10 / 30 and {p['steps_relu']:,} for the ReLU net (the authors' code: "
        f"2,000); deep decoder {p['dd_size']}×{p['dd_size']}, {p['dd_steps']:,} steps. Seeds: "
        f"{p['members']} nets a depth and arm, {p['relu_members']} ReLU nets (the authors ran 3)."
    ),
    "04_early_stopped_denoising": lambda p: (
        "Data: the shipped test images instead of 100 ImageNet images; see the chapter's parameters."
    ),
    "05_cnn_to_efcn": lambda p: (
        "Data: CIFAR-10 where it can be downloaded, else the shipped digits; smaller nets and "
        "fewer epochs than the paper's; see the chapter's parameters."
    ),
    "06_convex_cnn": lambda p: (
        f"Data: random signals (n = {p['convex_n']}, length {p['convex_d']}, filter {p['convex_h']}) "
        f"with every arrangement enumerated, {p['convex_runs']} GD runs of {p['convex_steps']:,} "
        f"steps; a circular CNN on {p['spectral_n']} signals of length {p['spectral_d']}; capacity: "
        f"a {p['capacity_depth']}-layer circular CNN with {p['capacity_channels']} channels on "
        f"{_DIGITS[p['capacity_data']]}, "
        f"{p['capacity_epochs']} epochs. Paper: the equivalence is a theorem; the book checks it, "
        "not the sizes of the paper's experiments."
    ),
    "07_gradient_oscillations": lambda p: (
        f"Data: the 8×8 digits ({p['mlp_n_train']:,} training images), an MLP "
        f"({'×'.join(map(str, p['mlp_widths']))}) and a CNN ({'×'.join(map(str, p['cnn_channels']))} "
        f"channels), full-batch GD for {p['mlp_steps']:,} / {p['cnn_steps']:,} steps. Paper: its "
        "setup is not public; Cohen et al. use a 5,000-image CIFAR-10 subset."
    ),
}
GLUE_REF = re.compile(
    r"\{glue(?::text|:md)?\}`(?P<nb>[\w.]+?)\.ipynb::(?P<key>\w+?)(?::(?P<fmt>[^`]*))?`"
)
RUN_START = "<!-- full-profile run of {chapter} -->"
RUN_END = "<!-- end of full-profile run -->"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _memory(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def run_line(record: dict) -> str:
    """One line on a full-profile record: device, date, commit, cost and the checks' verdicts."""
    m = record["measured"]
    return (
        f"{record['device']}, {record['date']}, commit `{record['commit'][:7]}`: "
        f"{_minutes(m['cpu_seconds'])} CPU, {_minutes(m['wall_seconds'])} wall, "
        f"peak {_memory(m['peak_rss_mib'])}; checks: {checks_verdict(record)}"
    )


def checks_verdict(record: dict) -> str:
    """The checks of a record in words: how many passed, and every one that did not, marked."""
    checks = record["checks"]
    failed = [c for c in checks if not c["passed"]]
    text = f"{len(checks) - len(failed)} of {len(checks)} passed"
    if failed:
        named = ", ".join(
            f"✗ `{c['name']}` ({_cell(c['value'])} {_bound(c)})" for c in failed
        )
        text = f"**{text}; did not pass: {named}**"
    if record.get("error"):
        text += (
            f"; **the run stopped at code cell {record.get('failed_cell')}: "
            f"{_cell(record['error'])}**"
        )
    return text


def _bound(check: dict) -> str:
    if check["op"] == "in":
        low, high = check["bound"]
        return f"not in [{low:g}, {high:g}]"
    return f"not {check['op']} {check['bound']:g}"


def full_results_markdown(records: Sequence[dict]) -> str:
    """The summary table of the full-profile records: per chapter its run (device, threads,
    date, commit, measured CPU and wall time, peak memory), its checks (every one that did
    not pass marked) and how its setup differs from the paper's."""
    if not records:
        return NO_FULL_RESULTS
    out = [
        "| chapter | full-profile run | checks | setup, against the paper's |",
        "| --- | --- | --- | --- |",
    ]
    for r in records:
        m = r["measured"]
        run = (
            f"{r['device']}; {r['date']}; commit `{r['commit'][:7]}`; "
            f"{_minutes(m['cpu_seconds'])} CPU, {_minutes(m['wall_seconds'])} wall, "
            f"peak {_memory(m['peak_rss_mib'])}"
        )
        setup = SETUPS.get(r["chapter"])
        setup_text = setup(r["parameters"]) if setup and "parameters" in r else ""
        if r.get("data_fallbacks"):
            setup_text += " In this run: " + " ".join(r["data_fallbacks"])
        if r.get("data") is not None:
            setup_text += (
                " Data downloaded for this run: "
                + (", ".join(f"`{d.split(':')[0]}`" for d in r["data"]) or "none")
                + "."
            )
        out.append(
            f"| {r['chapter'].split('_')[0]} | {run} | {checks_verdict(r)} | {_cell(setup_text)} |"
        )
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _formatted(value: Any, fmt: str | None) -> str:
    """``value`` as its glue reference ``{glue:text}`nb::key:fmt``` would show it."""
    if value is None:
        return NOT_RECORDED
    if fmt:
        try:
            if fmt.endswith("d"):
                value = int(value)
            return _cell(format(value, fmt))
        except (TypeError, ValueError):
            pass
    return _cell(value)


def full_profile_cell(build_cell: str, record: dict | None) -> str:
    """The full-profile column's cell of a row: the quick build's cell with each glue reference
    replaced by the record's value (formatted as the reference asks), ``–`` when the
    chapter has no record, or "not in the recorded run" when the record has none of the
    row's values (a quantity added to the chapter after that run). A remark after the last
    value (from a ``:`` or a `` (``) is the quick build's reading of its own numbers and is
    left out: it may not hold at full scale."""
    matches = list(GLUE_REF.finditer(build_cell))
    if record is None or not matches:
        return "–"
    last = matches[-1].end()
    tail = build_cell[last:]
    cut = min(
        (i for i in (tail.find(":"), tail.find(" (")) if i >= 0), default=len(tail)
    )
    values = record["values"]
    if not any(m["key"] in values for m in matches):
        return "not in the recorded run"
    return (
        GLUE_REF.sub(
            lambda m: _formatted(values.get(m["key"]), m["fmt"]), build_cell[:last]
        ).strip()
        + tail[:cut].rstrip()
    )


def _split_row(line: str) -> list[str]:
    cells, cell, i = [], "", 0
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            cell += body[i : i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
        i += 1
    cells.append(cell.strip())
    return cells


def fill_full_profile_columns(text: str, records: Sequence[dict]) -> str:
    """Fill the ``full profile`` column of every table of ``text`` whose header has one and a
    ``quick`` column of glue references, from ``records`` (by the chapter the references name)."""
    by_chapter = {r["chapter"]: r for r in records}
    lines = text.split("\n")
    full = quick = None
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            full = quick = None
            continue
        cells = _split_row(line)
        if full is None:
            heads = [c.lower() for c in cells]
            if "full profile" in heads and "quick" in heads:
                full, quick = heads.index("full profile"), heads.index("quick")
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        chapters = {m["nb"] for m in GLUE_REF.finditer(cells[quick])}
        record = by_chapter.get(chapters.pop()) if len(chapters) == 1 else None
        cells[full] = full_profile_cell(cells[quick], record)
        lines[i] = "| " + " | ".join(cells) + " |"
    return "\n".join(lines)


def _replace_between(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_full_results_section(page: str | Path, folder: str | Path) -> bool:
    """Rewrite the full-profile parts of the reproducibility page from the records in ``folder``:
    the summary table between the full-profile markers, each chapter's run line (between
    ``RUN_START``/``RUN_END`` markers) and the ``full profile`` column of each chapter's table.
    Returns whether the page changed."""
    page = Path(page)
    text = page.read_text()
    if FULL_RESULTS_START not in text or FULL_RESULTS_END not in text:
        raise ValueError(f"{page} has no full-profile results markers")
    records = load_full_results(folder)
    new = _replace_between(
        text, FULL_RESULTS_START, FULL_RESULTS_END, full_results_markdown(records)
    )
    by_chapter = {r["chapter"]: r for r in records}
    for chapter in re.findall(r"<!-- full-profile run of (\w+) -->", new):
        record = by_chapter.get(chapter)
        line = (
            f"Full profile: {run_line(record)}."
            if record
            else "Full profile: no run recorded."
        )
        new = _replace_between(new, RUN_START.format(chapter=chapter), RUN_END, line)
    new = fill_full_profile_columns(new, records)
    if new != text:
        page.write_text(new)
    return new != text
