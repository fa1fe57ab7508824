"""Reporting helpers for chapters: glue values into the book and paper-vs-build tables.

:func:`glue` stores a value under a key for the built book (myst-nb glue) and
does nothing when myst-nb is absent (e.g. on Colab), so notebooks run anywhere.
"""
from __future__ import annotations

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


def glue_run_info(chapter: str) -> str:
    """Glue ``<chapter>_run_info``: the profile, device and torch version of this run."""
    from .config import run_info

    return glue_markdown(f"{chapter}_run_info", run_info())


def glue_checks_passed(chapter: str) -> str:
    """Glue ``<chapter>_checks``; call it after the chapter's last assertion, so it exists only if all passed."""
    return glue_markdown(f"{chapter}_checks", "all passed")


def comparison_table(rows: Sequence[dict], columns: Sequence[str] = ("quantity", "paper", "this build", "note")):
    """A table with the paper's numbers beside this build's, as a pandas DataFrame.

    Each row is a dict with the keys of ``columns``; missing keys are left blank.
    Paper values and this build's values stay in separate columns, never merged.
    """
    import pandas as pd

    unknown = {k for row in rows for k in row} - set(columns)
    if unknown:
        raise ValueError(f"unknown column(s) {sorted(unknown)}; expected {list(columns)}")
    frame = pd.DataFrame([{c: row.get(c, "") for c in columns} for row in rows], columns=list(columns))
    return frame.style.hide(axis="index")
