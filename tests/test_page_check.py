"""tools/page_check.py's verdicts on measured pages (no browser: measures written by hand)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import browser  # noqa: E402  (tools/)
import page_check  # noqa: E402


def measured(**changes) -> dict:
    raw = {
        "code": [{"shown": True, "columns": 88, "lengths": [88, 40], "scrolls": False}],
        "output": [{"shown": True, "columns": 88, "lengths": [80], "scrolls": False}],
        "images": [
            {
                "collapsed": False,
                "src": "a.png",
                "alt": "a sweep",
                "natural": 671,
                "shown": 671,
                "in_output": True,
            }
        ],
        "widget_elements": 0,
        "widget_views": 0,
        "widget_state": 0,
        "progress_outputs": 0,
        "layout_warnings": 0,
        "scroll_width": 1280,
        "width": 1280,
    }
    raw.update(changes)
    summary = browser.summary(raw)
    summary["raw"] = raw
    return summary


def test_a_clean_page_passes():
    assert (
        page_check.problems(
            "ch", {1280: measured(), 390: measured(scroll_width=390, width=390)}
        )
        == []
    )


def test_each_problem_a_reader_would_see_is_named():
    shrunk = [
        {
            "collapsed": False,
            "src": "_images/b.png",
            "alt": "",
            "natural": 1464,
            "shown": 676,
            "in_output": True,
        }
    ]
    found = page_check.problems(
        "ch",
        {
            1280: measured(
                images=shrunk,
                layout_warnings=1,
                widget_views=3,
                code=[
                    {"shown": False, "columns": 88, "lengths": [90], "scrolls": True}
                ],
            ),
            390: measured(scroll_width=500, width=390),
        },
    )
    text = "\n".join(found)
    assert (
        "b.png drawn 1464 px wide, shown at 676 px: its text is shrunk to 46%" in text
    )
    assert (
        "a hidden code cell (once opened) has 1 line(s) wider than its box (90 > 88"
        in text
    )
    assert "FigureLayoutWarning" in text and "widget_views 3" in text
    assert "wider than a 390 px window" in text
    assert len(found) == 5


def test_a_figure_a_few_pixels_wider_is_rounding():
    near = [
        {
            "collapsed": False,
            "src": "c.png",
            "alt": "",
            "natural": 680,
            "shown": 671,
            "in_output": True,
        }
    ]
    assert page_check.problems("ch", {1280: measured(images=near)}) == []
    assert round(
        browser.summary(measured(images=near)["raw"])["min_font_pt"], 2
    ) == round(9.9 * 671 / 680, 2)


def test_hidden_cells_and_dead_panels_are_counted_from_the_notebook(tmp_path):
    cells = [
        {
            "cell_type": "code",
            "metadata": {"tags": ["hide-input"]},
            "source": "x = 1",
            "outputs": [],
        },
        {
            "cell_type": "code",
            "metadata": {"tags": ["remove-cell", "colab-setup"]},
            "source": "%pip x",
            "outputs": [],
        },
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [
                {
                    "output_type": "display_data",
                    "data": {"application/vnd.jupyter.widget-view+json": {}},
                }
            ],
            "source": "from ipywidgets import interact_manual\ninteract_manual(f, a=1)",
        },
    ]
    path = tmp_path / "n.ipynb"
    path.write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    assert page_check.notebook_counts(path) == {
        "code_cells_nb": 3,
        "hidden_cells": 2,
        "interact_manual": 1,
        "widget_outputs_nb": 1,
    }


def test_without_chromium_the_check_says_so_and_passes(monkeypatch, capsys):
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    assert page_check.main(["--pages", "appendix_rank"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("page check skipped: no Chromium found") and out.count("\n") == 1
    )
