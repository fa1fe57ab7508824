"""Seed robustness: run chapters over several base seeds and tabulate how their checks fare.

``python -m convbias verify --seeds 0-4 1 2`` runs chapters 1 and 2 once per
base seed (``CONVBIAS_SEED``, :func:`convbias.config.base_seed`) through
:func:`convbias.runner.run_chapter`, with ``CONVBIAS_CHECKS=report`` so that
a failed check does not stop the chapter before its later checks are measured.
For every check it reports how many seeds passed (``k/n``), the margin's minimum
and median over seeds (:attr:`convbias.checks.Check.margin`: a factor above 1 or
a distance above 0 passes) and the seeds that failed. A check a seed never reached
(an earlier cell raised an error) counts as failed for that seed, and a run that did
not finish (:func:`stopped_runs`) makes the command fail even when it reached no check.
A seed list is at most :data:`MAX_SEEDS` long.

Used by the book's tooling (``python -m convbias verify``), not by a chapter's code.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

#: the most seeds one ``verify`` takes (each is a run of every chapter)
MAX_SEEDS = 1000
#: the largest seed ``verify`` takes
MAX_SEED = 2**63 - 1


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,3,7"`` and ``"0-2,9"`` work too.

    At most :data:`MAX_SEEDS` seeds, each at most :data:`MAX_SEED`: a longer list is a
    ``ValueError`` (said at once, not after building it).
    """
    seeds: list[int] = []
    seen: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ValueError(
                f"seeds {text!r}: use non-negative integers and ranges, e.g. 0-4 or 0,3,7"
            ) from None
        if first < 0 or last < first:
            raise ValueError(
                f"seeds {text!r}: a range must go from a non-negative seed upwards, got {part!r}"
            )
        if last > MAX_SEED:
            raise ValueError(f"seeds {text!r}: a seed is at most {MAX_SEED}")
        if last - first + 1 > MAX_SEEDS - len(seeds):
            raise ValueError(
                f"seeds {text!r}: at most {MAX_SEEDS} seeds (each one runs every chapter named)"
            )
        for s in range(first, last + 1):
            if s not in seen:
                seen.add(s)
                seeds.append(s)
    if not seeds:
        raise ValueError(f"seeds {text!r}: name at least one seed")
    return seeds


def run_seeds(
    notebooks: Sequence[Path],
    seeds: Sequence[int],
    out_dir: Path,
    use_cache: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run each notebook once per seed (results in ``out_dir/<stem>/seed-<s>``); one summary per run."""
    from .checks import ENV_VAR as CHECKS_VAR
    from .config import SEED_VAR, environment
    from .notebooks import run_chapter

    runs = []
    for nb in notebooks:
        for seed in seeds:
            if progress:
                print(f"[verify] {nb.stem}, seed {seed}", flush=True)
            with environment(**{SEED_VAR: str(seed), CHECKS_VAR: "report"}):
                summary = run_chapter(
                    nb,
                    out_dir / nb.stem / f"seed-{seed}",
                    use_cache=use_cache,
                    progress=False,
                )
            runs.append({"chapter": nb.stem, "seed": seed, **summary})
    return runs


def stopped_runs(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a :func:`verify` payload that did not finish (a cell raised, the kernel died)."""
    return [
        r
        for r in payload["runs"]
        if r.get("failed_cell") is not None
        or r.get("error")
        or not r.get("completed", True)
    ]


def robustness(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (chapter, check): passed k of n seeds, margin min/median, failing seeds."""
    seeds_of: dict[str, list[int]] = {}
    found: dict[tuple[str, str], dict[int, dict]] = {}
    for run in runs:
        seeds_of.setdefault(run["chapter"], []).append(run["seed"])
        for check in run.get("checks", []):
            found.setdefault((run["chapter"], check["name"]), {})[run["seed"]] = check
    rows = []
    for (chapter, name), by_seed in found.items():
        seeds = seeds_of[chapter]
        margins = [
            by_seed[s]["margin"]
            for s in seeds
            if s in by_seed and _finite(by_seed[s]["margin"])
        ]
        values = [by_seed[s]["value"] for s in seeds if s in by_seed]
        first = next(iter(by_seed.values()))
        failing = [s for s in seeds if s not in by_seed or not by_seed[s]["passed"]]
        rows.append(
            {
                "chapter": chapter,
                "check": name,
                "claim": first.get("claim", ""),
                "op": first["op"],
                "bound": first["bound"],
                "scale": first.get("scale", "difference"),
                "passed": len(seeds) - len(failing),
                "seeds": len(seeds),
                "failing_seeds": failing,
                "margin_min": min(margins) if margins else None,
                "margin_median": statistics.median(margins) if margins else None,
                "value_min": min(values) if values else None,
                "value_max": max(values) if values else None,
            }
        )
    return rows


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def _num(x: float | None, scale: str = "") -> str:
    if x is None:
        return "–"
    text = f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return f"×{text}" if scale == "ratio" else text


def markdown(
    rows: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    profile: str,
    runs: Sequence[dict[str, Any]] = (),
) -> str:
    """The robustness table as Markdown (one line per check), then the runs that stopped with an error."""
    head = (
        f"Base seeds {', '.join(map(str, seeds))}, profile `{profile}`. *Margin*: the factor (×) by which a "
        "check's value clears its bound, or the distance to it; above ×1 or 0 the check passes.\n\n"
        "| chapter | check | bound | passed | margin min | margin median | values (min to max) | failing seeds |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = []
    for r in rows:
        bound = (
            f"in [{_num(r['bound'][0])}, {_num(r['bound'][1])}]"
            if r["op"] == "in"
            else f"{r['op']} {_num(r['bound'])}"
        )
        lines.append(
            f"| {r['chapter'].split('_')[0]} | `{r['check']}` | {bound} | {r['passed']}/{r['seeds']} | "
            f"{_num(r['margin_min'], r['scale'])} | {_num(r['margin_median'], r['scale'])} | "
            f"{_num(r['value_min'])} to {_num(r['value_max'])} | "
            f"{', '.join(map(str, r['failing_seeds'])) or 'none'} |"
        )
    stopped = [r for r in runs if r.get("error")]
    tail = "".join(
        f"\n- {r['chapter']}, seed {r['seed']}: stopped at code cell {r.get('failed_cell')} "
        f"({r['error']})"
        for r in stopped
    )
    return (
        head
        + "\n".join(lines)
        + "\n"
        + (f"\nRuns that stopped early:\n{tail}\n" if stopped else "")
    )


def verify(
    notebooks: Sequence[Path],
    seeds: Sequence[int],
    out_dir: Path,
    table: Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``notebooks`` over ``seeds`` and write the table to ``table`` ``.md`` and ``.json``.

    ``table`` defaults to ``out_dir/robustness``. Returns the JSON payload.
    """
    from .config import profile

    runs = run_seeds(notebooks, seeds, out_dir, use_cache=use_cache, progress=progress)
    rows = robustness(runs)
    payload = {
        "profile": profile(),
        "seeds": list(seeds),
        "checks": rows,
        "runs": [
            {
                k: r.get(k)
                for k in (
                    "chapter",
                    "seed",
                    "seconds",
                    "failed_cell",
                    "error",
                    "completed",
                    "checks_passed",
                    "cached",
                    "run_info",
                )
            }
            for r in runs
        ],
    }
    table = Path(table) if table is not None else out_dir / "robustness"
    from .runner import write_text_atomic

    table.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(table.with_suffix(".json"), json.dumps(payload, indent=2) + "\n")
    write_text_atomic(
        table.with_suffix(".md"),
        markdown(rows, seeds, payload["profile"], payload["runs"]),
    )
    return payload
