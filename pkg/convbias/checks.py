"""A chapter's claims as named, measured comparisons that can fail.

Every chapter ends its experiments with :func:`require` over a list of
:class:`Check` objects, built by the phenomenon module that measured them (so a
test can rebuild them on a mutated experiment and see them fail)::

    require("ch3", [at_least("depth10_ratio", ratio, 10, "with CN the depth-10 net ends 10x lower")])

:func:`require` shows a table, records the checks (``RECORDED`` for a run in this
process, a JSON output of mime type ``MIME`` for a notebook run in a kernel)
and raises :class:`CheckFailed` naming every failed check. It never uses
``assert``, so ``python -O`` cannot switch it off. ``CONVBIAS_CHECKS=report``
(a smoke run at full size but few steps) shows and records the checks without
raising.

The *margin* of a check says how much room it had: for ``scale="ratio"`` the
factor by which the value clears its bound (> 1 passes), for
``scale="difference"`` the signed distance (> 0 passes).

Used by every chapter (its check cells) and by ``python -m convbias run``/``verify``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

MIME = "application/vnd.convbias.checks+json"
ENV_VAR = "CONVBIAS_CHECKS"
OPS = (">=", "<=", "in")

#: every check shown by :func:`require` in this process, by chapter, in order
RECORDED: dict[str, list["Check"]] = {}


class CheckFailed(AssertionError):
    """One or more of a chapter's checks did not hold."""


@dataclass(frozen=True)
class Check:
    """``value op bound`` with a name and the sentence it encodes.

    ``op`` is ``">="``, ``"<="`` or ``"in"`` (``bound`` then a ``(low, high)`` pair,
    both inclusive). A NaN or infinite value fails.
    """

    name: str
    value: float
    op: str
    bound: float | tuple[float, float]
    claim: str = ""
    scale: str = "difference"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(
                f"check {self.name!r}: op must be one of {OPS}, got {self.op!r}"
            )
        if self.scale not in ("ratio", "difference"):
            raise ValueError(
                f"check {self.name!r}: scale must be 'ratio' or 'difference', got {self.scale!r}"
            )
        if self.op == "in" and not (
            isinstance(self.bound, tuple) and len(self.bound) == 2
        ):
            raise ValueError(
                f"check {self.name!r}: op 'in' needs a (low, high) bound, got {self.bound!r}"
            )
        object.__setattr__(self, "value", float(self.value))

    @property
    def passed(self) -> bool:
        bounds = self.bound if isinstance(self.bound, tuple) else (self.bound,)
        if not math.isfinite(self.value) or any(math.isnan(b) for b in bounds):
            return False
        if self.op == ">=":
            return self.value >= self.bound
        if self.op == "<=":
            return self.value <= self.bound
        low, high = self.bound
        return low <= self.value <= high

    @property
    def margin(self) -> float:
        """How much room the value had to its nearest bound.

        A factor for ``scale="ratio"`` (above 1 passes), else a distance (above 0 passes).
        """
        if not math.isfinite(self.value):
            return math.nan
        if self.op == "in":
            low, high = self.bound
            return min(
                _room(self.value, low, self.scale), _room(high, self.value, self.scale)
            )
        if self.op == ">=":
            return _room(self.value, self.bound, self.scale)
        return _room(self.bound, self.value, self.scale)

    def describe(self) -> str:
        mark = "passed" if self.passed else "FAILED"
        bound = (
            f"in [{_fmt(self.bound[0])}, {_fmt(self.bound[1])}]"
            if self.op == "in"
            else f"{self.op} {_fmt(self.bound)}"
        )
        return f"{mark}  {self.name}: {_fmt(self.value)} {bound}" + (
            f"  ({self.claim})" if self.claim else ""
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(passed=self.passed, margin=self.margin)
        if isinstance(self.bound, tuple):
            out["bound"] = list(self.bound)
        return out


def _room(big: float, small: float, scale: str) -> float:
    if scale == "difference":
        return float(big - small)
    if small == 0:
        return math.inf if big > 0 else (1.0 if big == 0 else 0.0)
    return float(big / small)


def _fmt(x: float) -> str:
    x = float(x)
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.2e}"


def at_least(
    name: str, value: float, bound: float, claim: str = "", scale: str = "difference"
) -> Check:
    """The check ``value >= bound``."""
    return Check(name, value, ">=", float(bound), claim, scale)


def at_most(
    name: str, value: float, bound: float, claim: str = "", scale: str = "difference"
) -> Check:
    """The check ``value <= bound``."""
    return Check(name, value, "<=", float(bound), claim, scale)


def between(
    name: str,
    value: float,
    low: float,
    high: float,
    claim: str = "",
    scale: str = "difference",
) -> Check:
    """The check ``low <= value <= high``."""
    return Check(name, value, "in", (float(low), float(high)), claim, scale)


def holds(name: str, condition: bool, claim: str = "") -> Check:
    """A yes/no check (value 1 when ``condition`` holds, else 0).

    A NaN (a float, a NumPy or torch scalar) is not a truth: it fails, although
    ``bool(nan)`` is True.
    """
    return Check(name, 1.0 if _truth(condition) else 0.0, ">=", 1.0, claim)


def _truth(condition: Any) -> bool:
    try:
        number = float(condition)
    except (TypeError, ValueError):
        return bool(condition)
    return not math.isnan(number) and bool(condition)


def failed(checks: Sequence[Check]) -> list[str]:
    """Names of the checks that did not hold."""
    return [c.name for c in checks if not c.passed]


def verdict(checks: Sequence[Check | dict[str, Any]]) -> bool:
    """True when there is at least one check and every one passed: computed, never assumed.

    Takes :class:`Check` objects or their records (``Check.to_dict``); an empty list is
    not a pass (nothing was shown).
    """
    checks = list(checks)
    return bool(checks) and all(
        (c["passed"] if isinstance(c, dict) else c.passed) is True for c in checks
    )


def summary_line(checks: Sequence[Check | dict[str, Any]]) -> str:
    """``"all 5 checks passed"``, ``"2 of 5 checks FAILED: a, b"`` or ``"no checks ran"``."""
    checks = list(checks)
    names = [c["name"] if isinstance(c, dict) else c.name for c in checks]
    bad = [
        n
        for n, c in zip(names, checks)
        if (c["passed"] if isinstance(c, dict) else c.passed) is not True
    ]
    if not checks:
        return "no checks ran"
    if not bad:
        return f"all {len(checks)} checks passed"
    return f"{len(bad)} of {len(checks)} checks FAILED: {', '.join(bad)}"


def judged() -> bool:
    """False when ``CONVBIAS_CHECKS=report``: checks are shown and recorded, not enforced."""
    raw = os.environ.get(ENV_VAR, "judge").strip().lower()
    if raw not in ("judge", "report", ""):
        raise ValueError(f"{ENV_VAR}={raw!r}: use 'judge' (the default) or 'report'")
    return raw != "report"


class CheckTable:
    """How :func:`require` shows its checks: plain text for people, JSON for the runners."""

    def __init__(self, chapter: str, checks: Sequence[Check]):
        self.chapter, self.checks = chapter, list(checks)

    def __repr__(self) -> str:
        return "\n".join(c.describe() for c in self.checks)

    def _repr_html_(self) -> str:
        """A table for the page: one row per check (result, name, value, bound, claim)."""
        from html import escape

        rows = []
        for c in self.checks:
            bound = (
                f"in [{_fmt(c.bound[0])}, {_fmt(c.bound[1])}]"
                if c.op == "in"
                else f"{c.op} {_fmt(c.bound)}"
            )
            mark = "passed" if c.passed else "<strong>FAILED</strong>"
            rows.append(
                f"<tr><td>{mark}</td><td><code>{escape(c.name)}</code></td><td>{escape(_fmt(c.value))}</td>"
                f"<td>{escape(bound)}</td><td>{escape(c.claim or '')}</td></tr>"
            )
        head = "<tr><th>check</th><th>name</th><th>value</th><th>bound</th><th>claim</th></tr>"
        return f'<table class="convbias-checks"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {
            "text/plain": repr(self),
            "text/html": self._repr_html_(),
            MIME: {
                "chapter": self.chapter,
                "checks": [c.to_dict() for c in self.checks],
            },
        }


def require(chapter: str, checks: Sequence[Check]) -> list[Check]:
    """Show ``checks``, record them under ``chapter`` and raise :class:`CheckFailed` if any failed.

    Returns the checks. With ``CONVBIAS_CHECKS=report`` nothing is raised.
    """
    checks = list(checks)
    if not checks:
        raise ValueError(f"{chapter}: require() needs at least one check")
    RECORDED.setdefault(chapter, []).extend(checks)
    _show(CheckTable(chapter, checks))
    bad = failed(checks)
    if bad and judged():
        details = "; ".join(c.describe() for c in checks if not c.passed)
        raise CheckFailed(
            f"{chapter}: {len(bad)} of {len(checks)} checks failed: {details}"
        )
    return checks


def _show(table: CheckTable) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(repr(table))
        return
    if get_ipython() is None:
        print(repr(table))
    else:
        display(table)


def from_outputs(outputs: Sequence[dict]) -> list[dict[str, Any]]:
    """The check records (dicts of ``Check.to_dict``) in a notebook cell's outputs."""
    found = []
    for output in outputs:
        data = output.get("data", {}) if isinstance(output, dict) else {}
        if MIME in data:
            payload = data[MIME]
            if isinstance(payload, str):
                payload = json.loads(payload)
            found.extend(
                json.loads(json.dumps(payload.get("checks", [])))
            )  # plain dicts, not notebook nodes
    return found
