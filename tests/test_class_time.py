"""Class time: one table per chapter that adds up to its Total, and to the instructors page's plan.

The convention (every chapter's first markdown cell):

    | Part of the lecture | Minutes |
    |---|---|
    | Theory at the board: ... | 30 |
    | ... | ... |
    | **Total** | **90** |

90 minutes for a chapter, 20 for the appendix; no other class-time note in the notebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from convbias import notebooks

ROOT = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"^\|\s*Part of the lecture\s*\|\s*Minutes\s*\|\s*$", re.M)
OLD_NOTES = re.compile(r"class time:|time for a class", re.I)
TOTALS = {"appendix_rank": 20}
CHAPTER_TOTAL = 90


def markdown_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
    ]


def class_time(cells: list[str]) -> tuple[list[tuple[str, int]], int]:
    """(rows, total) of the notebook's one class-time table; AssertionError says what is wrong."""
    tables = [(i, m) for i, cell in enumerate(cells) for m in HEADER.finditer(cell)]
    assert len(tables) == 1, (
        f"{len(tables)} class-time tables (header '| Part of the lecture | Minutes |'), want 1"
    )
    index, match = tables[0]
    others = [c for i, c in enumerate(cells) if i != index and OLD_NOTES.search(c)]
    assert not others, (
        f"another class-time note: {OLD_NOTES.search(others[0]).group(0)!r}"
    )
    lines = cells[index][match.end() :].strip("\n").splitlines()
    assert lines and re.fullmatch(
        r"\|\s*:?-+:?\s*\|\s*:?-+:?\s*\|", lines[0].strip()
    ), "no |---|---| row under the header"
    rows, total = [], None
    for line in lines[1:]:
        if not line.strip().startswith("|"):
            break
        part, minutes = [c.strip() for c in line.strip().strip("|").split("|")]
        if re.fullmatch(r"\*\*Total\*\*", part):
            total = int(minutes.strip("*"))
            break
        assert re.fullmatch(r"\d+", minutes), f"minutes must be a number: {line!r}"
        rows.append((part, int(minutes)))
    assert total is not None, "no **Total** row"
    return rows, total


def instructors_minutes() -> dict[str, int]:
    """Chapter stem -> minutes, from the table of book/instructors.md."""
    text = (ROOT / "book" / "instructors.md").read_text(encoding="utf-8")
    found = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"\{doc\}`([\w]+)`.*\|\s*(\d+)\s*\|\s*$", text, re.M)
    }
    appendix = re.search(r"\{doc\}`(appendix_\w+)` \((\d+) minutes\)", text)
    if appendix:
        found[appendix.group(1)] = int(appendix.group(2))
    return found


def check(path: Path, planned: dict[str, int]) -> None:
    rows, total = class_time(markdown_cells(path))
    assert sum(m for _, m in rows) == total, (
        f"{path.stem}: rows add up to {sum(m for _, m in rows)}, Total says {total}"
    )
    want = TOTALS.get(path.stem, CHAPTER_TOTAL)
    assert total == want, f"{path.stem}: total {total} min, the course plans {want}"
    assert planned.get(path.stem) == total, (
        f"{path.stem}: book/instructors.md says {planned.get(path.stem)} min"
    )


def fake(tmp_path: Path, *cells: str) -> Path:
    path = tmp_path / "01_fake.ipynb"
    path.write_text(
        json.dumps(
            {
                "cells": [
                    {"cell_type": "markdown", "source": c, "metadata": {}}
                    for c in cells
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    return path


GOOD = (
    "# Title\n\n**Question.** ...\n\n| Part of the lecture | Minutes |\n|---|---|\n"
    "| Theory at the board: the bound | 30 |\n| Running the notebook: the sweep | 20 |\n"
    "| Running the notebook: the widget | 10 |\n| Exercises | 30 |\n| **Total** | **90** |\n"
)


def test_the_convention_on_a_small_notebook(tmp_path):
    check(fake(tmp_path, GOOD, "## Set-up\n\ntext"), {"01_fake": 90})
    with pytest.raises(AssertionError, match="add up to 80"):
        check(fake(tmp_path, GOOD.replace("| 10 |", "| 0 |")), {"01_fake": 90})
    with pytest.raises(AssertionError, match="another class-time note"):
        check(
            fake(tmp_path, GOOD, "## Sweep\n\n*(class time: 10 min)*"), {"01_fake": 90}
        )
    with pytest.raises(AssertionError, match="instructors.md says 80"):
        check(fake(tmp_path, GOOD), {"01_fake": 80})
    with pytest.raises(AssertionError, match="2 class-time tables"):
        check(fake(tmp_path, GOOD, GOOD), {"01_fake": 90})
    with pytest.raises(AssertionError, match="course plans 90"):
        check(
            fake(
                tmp_path,
                GOOD.replace(
                    "| 30 |\n| **Total** | **90**", "| 20 |\n| **Total** | **80**"
                ),
            ),
            {"01_fake": 80},
        )


def test_the_instructors_page_plans_every_chapter():
    planned = instructors_minutes()
    stems = [nb.stem for nb in notebooks.toc_notebooks(ROOT)]
    assert sorted(planned) == sorted(stems)
    assert all(planned[s] == TOTALS.get(s, CHAPTER_TOTAL) for s in stems)


@pytest.mark.parametrize("stem", [nb.stem for nb in notebooks.toc_notebooks(ROOT)])
def test_every_chapter_table_adds_up_to_the_plan(stem):
    check(ROOT / "book" / f"{stem}.ipynb", instructors_minutes())
