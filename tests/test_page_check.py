"""tools/page_check.py's verdicts on measured pages (no browser: measures written by hand)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

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


# ----------------------------------------------------------------------------- pages read in Chromium
#: a page as the book's theme lays it out, reduced to what the check reads
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
<style>body {{ width: 700px; margin: 0 auto; font-size: 16px }}
td, th {{ padding: 4px 8px }} table {{ border-collapse: collapse }}
div.cell_input pre {{ font-size: 13px }}</style></head>
<body><main><article>
<section id="the-claim"><h1>A chapter</h1>
<p>The claim, with short maths: <span class="math">\\(x\\)</span>.</p>
<div class="cell"><div class="cell_input"><pre>y = 2</pre></div></div>
<div class="math">\\[ f(x) = \\sum_i a_i x_i \\]</div>
<figure id="fig-sweep"><img src="sweep.png" alt="the rank against the step size">
<figcaption><p><span class="caption-number">Fig. 1 </span>A sweep.</p></figcaption></figure>
<figure id="fig-grid"><img src="sweep.png" alt="the grid of runs">
<figcaption><p><span class="caption-number">Fig. 2 </span>A grid.</p></figcaption></figure>
<p>As <a class="reference internal" href="#fig-sweep">Figure 1</a> shows, and the paper's Figure 3 too.</p>
<table><tr><th>check</th><th>bound</th></tr><tr><td>passed</td><td>0.3</td></tr></table>
{defect}
</section>
<section id="exercises"><h2>Exercises</h2>
<div class="exercise admonition" id="ex-one"><p class="admonition-title">
<span class="caption-number">Exercise 1 </span></p><p>Try it.</p></div></section>
</article></main></body></html>
"""

#: one page per class of problem, each seeded with one defect, and the words the check says
DEFECTS = {
    "raw_table": (
        "<p>| Lecture | Chapter |\n|---|---|\n| 1 | Intrinsic dimension |</p>",
        "a Markdown table did not render",
    ),
    "wide_maths": (
        '<div class="math">\\[ '
        + " + ".join(f"a_{{{i}}} x_{{{i}}}^2" for i in range(14))
        + " \\]</div>",
        "a display equation is",
    ),
    "cramped_table": (
        '<table><tr><td style="padding:0">passed</td><td style="padding:0">data_srank_growth</td></tr></table>',
        "a table's cells have no spacing",
    ),
    "doubled_word": (
        '<p>Try <a class="reference internal" href="#ex-one">Exercise Exercise 1</a> first.</p>',
        "a word written twice: 'Exercise Exercise'",
    ),
    "wrong_reference": (
        '<p>The grid, <a class="reference internal" href="#fig-grid">Figure 1</a>, shows it.</p>',
        "the reference 'Figure 1' points at 'Fig. 2'",
    ),
    "unlinked_reference": (
        "<table><tr><td>paper</td><td>same (Figure 1)</td></tr></table>",
        "'Figure 1' is named without a link to it",
    ),
    "image_path_alt": (
        '<figure><img src="sweep.png" alt="sweep.png"></figure>',
        "an image has its path as alt text",
    ),
    "image_no_alt": (
        '<figure><img src="sweep.png"></figure>',
        "an image has no alt text",
    ),
    "repeated_paragraph": (
        "<p>The grid trains every setting as one ensemble of small networks.</p>" * 2,
        "a paragraph repeats (part of) the one before it",
    ),
    "repeated_fragment": (
        "<p>Before lecture 1, assign the appendix: all seven lectures measure some rank or "
        "spectrum, and the difference between stable, effective and numerical rank matters "
        "in every one of them.</p><p>or spectrum, and the difference between stable, "
        "effective and numerical rank matters in every one of them.</p>",
        "a paragraph repeats (part of) the one before it",
    ),
    "live_hint_twice": (
        "<p>To move the sliders, run the notebook live (the Colab button).</p>"
        "<p><em>This figure shows the default values. To move the controls, run the notebook live.</em></p>",
        "how to run the notebook live is said 2 times",
    ),
    "small_code": (
        '<div class="cell"><div class="cell_input"><pre style="font-size:12px">x = 1</pre></div></div>',
        "code at 12 px beside 16-px prose",
    ),
    "stray_exercise": (
        '<div class="exercise admonition" id="ex-two"><p class="admonition-title">'
        '<span class="caption-number">Exercise 2 </span></p><p>Lost.</p></div>',
        "an exercise outside an Exercises section",
    ),
}


@pytest.fixture(scope="module")
def seeded_pages(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if page_check.browser_missing():
        pytest.skip(page_check.browser_missing())
    if browser.local_mathjax() is None:
        pytest.skip("no local MathJax to render the maths: make mathjax")
    from PIL import Image

    folder = tmp_path_factory.mktemp("seeded")
    Image.new("RGB", (300, 200), "white").save(folder / "sweep.png")
    pages = []
    for name, (defect, _) in {"clean": ("", ""), **DEFECTS}.items():
        page = folder / f"{name}.html"
        page.write_text(PAGE.format(defect=defect), encoding="utf-8")
        pages.append(page)
    results = page_check.measure_book(folder, pages, shots=None, widths=(1280,))
    return {
        stem: page_check.problems(stem, by_width) for stem, by_width in results.items()
    }


def test_a_clean_page_read_in_chromium_has_no_problem(seeded_pages):
    assert seeded_pages["clean"] == []


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_each_class_of_defect_fails_the_check(seeded_pages, name):
    found = seeded_pages[name]
    words = DEFECTS[name][1]
    assert len(found) == 1 and words in found[0], found
