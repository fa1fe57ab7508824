"""Reporting helpers for chapters: glue values into the book and paper-vs-build tables.
Used by every chapter.

:func:`glue` stores a value under a key for the built book (myst-nb glue) and
does nothing when myst-nb is absent (e.g. on Colab), so notebooks run anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

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


# ----------------------------------------------------------------------------- paper-scale results from a GPU
FULL_RESULTS_START = "<!-- full-profile results: written by convbias.report.update_full_results_section -->"
FULL_RESULTS_END = "<!-- end of full-profile results -->"
FULL_RESULT_KEYS = ("chapter", "device", "date", "code_version", "seconds", "values")
NO_FULL_RESULTS = (
    "No full-profile run on a GPU is recorded for this build: every number on this page comes "
    "from the quick profile on a CPU. Time and memory of the full profile are estimated by "
    "`python -m convbias estimate`."
)


def full_result_record(results_json: str | Path, date: str | None = None) -> dict:
    """A record to commit from a headless run's ``results.json`` (full profile): values, device, date, code version."""
    import datetime
    import json

    from . import __version__
    from .cache import code_fingerprint

    summary = json.loads(Path(results_json).read_text())
    info = summary.get("run_info", "")
    if "profile=full" not in info:
        raise ValueError(
            f"{results_json} is not a full-profile run ({info or 'no run_info'})"
        )
    device = info.split("device=", 1)[-1].split(" | ")[0]
    return {
        "chapter": Path(summary["notebook"]).stem,
        "device": device,
        "date": date or datetime.date.today().isoformat(),
        "code_version": f"{__version__}+{code_fingerprint()}",
        "seconds": summary["seconds"],
        "checks_passed": summary["checks_passed"],
        "values": summary["values"],
    }


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


def full_results_markdown(
    records: Sequence[dict], quick: dict[str, dict] | None = None
) -> str:
    """One table per chapter: each glued value of the GPU run beside the quick build's (``quick[chapter]``)."""
    if not records:
        return NO_FULL_RESULTS
    out = []
    for r in records:
        out += [
            f"**{r['chapter']}**: full profile on {r['device']}, {r['date']}, code {r['code_version']}, "
            f"{r['seconds'] / 60:.1f} min.",
            "",
            "| value | full profile | quick build |",
            "| --- | --- | --- |",
        ]
        mine = (quick or {}).get(r["chapter"], {})
        for key, value in r["values"].items():
            if key.endswith("_run_info"):
                continue
            out.append(f"| `{key}` | {_cell(value)} | {_cell(mine.get(key, ''))} |")
        out.append("")
    return "\n".join(out).rstrip()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def update_full_results_section(
    page: str | Path, folder: str | Path, quick: dict[str, dict] | None = None
) -> bool:
    """Rewrite the page's text between the full-profile markers from ``folder``; returns whether it changed."""
    page = Path(page)
    text = page.read_text()
    if FULL_RESULTS_START not in text or FULL_RESULTS_END not in text:
        raise ValueError(f"{page} has no full-profile results markers")
    head, rest = text.split(FULL_RESULTS_START, 1)
    _, tail = rest.split(FULL_RESULTS_END, 1)
    table = full_results_markdown(load_full_results(folder), quick)
    new = f"{head}{FULL_RESULTS_START}\n{table}\n{FULL_RESULTS_END}{tail}"
    if new != text:
        page.write_text(new)
    return new != text
