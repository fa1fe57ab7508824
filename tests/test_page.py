"""The book's pages in a real browser: every page whole, no code line wider than its box.

A fast build of every page without executing a notebook (about 25 s), read by
headless Chromium through Playwright at 1280 px, its maths rendered by a local MathJax
(``make mathjax``). The executed book is checked
the same way, figures included, by ``make book`` (tools/page_check.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import browser  # noqa: E402  (tools/)
import page_check  # noqa: E402
import publish  # noqa: E402


def _chromium() -> str | None:
    try:
        return browser.chromium()
    except FileNotFoundError:
        return None


pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright is not installed: pip install playwright "
    "(it drives the system's Chromium; no browser download)",
)
pytestmark = pytest.mark.skipif(
    _chromium() is None,
    reason="no Chromium: apt-get install chromium to test the pages in a browser",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    jupyter_book = shutil.which("jupyter-book") or str(
        Path(sys.executable).with_name("jupyter-book")
    )
    if not Path(jupyter_book).exists():
        pytest.skip(
            "jupyter-book is not installed (the book extra): pip install -e '.[book]'"
        )
    out = tmp_path_factory.mktemp("pages")
    config = publish.unexecuted_config(ROOT, out / "_config.yml")
    result = subprocess.run(
        [
            jupyter_book,
            "build",
            str(ROOT),
            "--config",
            str(config),
            "--path-output",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CONVBIAS_STATIC": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def measured(built) -> dict:
    """Every page of the book at 1280 px, its maths rendered by the local MathJax if any."""
    pages = page_check.book_pages(built, ROOT)
    return page_check.measure_book(built, pages, shots=None, widths=(1280,))


def test_every_page_reads_whole(measured):
    """The page check on every page: no raw Markdown, cut maths, cramped tables, bad references."""
    if browser.local_mathjax() is None:
        pytest.skip("no local MathJax to render the maths (make mathjax: npm)")
    assert {"intro", "instructors", "references", "02_low_rank_sgd"} <= set(measured)
    maths = [by_width[1280]["raw"] for by_width in measured.values()]
    assert sum(len(raw["math"]) for raw in maths) > 20  # display equations, rendered
    assert page_check.book_problems(measured) == []


def test_no_code_line_is_wider_than_its_box_and_no_widget_is_saved(built, measured):
    pages = page_check.chapter_pages(built, ROOT)
    results = {p.stem: measured[p.stem] for p in pages}
    for stem, by_width in results.items():
        summary = by_width[1280]
        assert summary["code_lines_all"] > 10, (
            stem
        )  # the code cells are on the page, hidden ones opened
        assert summary["code_columns"] >= 88, (
            f"{stem}: a code box shows {summary['code_columns']} characters"
        )
    found = [
        line
        for stem, by_width in results.items()
        for line in page_check.problems(stem, by_width)
    ]
    assert found == []


def test_the_check_sees_what_a_reader_sees(built, tmp_path):
    """The measure itself: a wide line and a saved widget on a copy of a page are found."""
    page = page_check.chapter_pages(built, ROOT)[0]
    html = page.read_text(encoding="utf-8")
    wide = "x = " + "1 + " * 40 + "1"
    widget = '<script type="application/vnd.jupyter.widget-view+json">{"model_id": "a"}</script>'
    bad = page.with_name("bad-page.html")
    first_code = re.compile(
        r'(<div class="cell_input[^>]*>\s*<div class="highlight-\w+ notranslate">'
        r'<div class="highlight"><pre>)'
    )
    assert first_code.search(html), "no code cell on the page"
    html = first_code.sub(lambda m: m.group(1) + wide + "\n", html, count=1)
    bad.write_text(
        html.replace("</article>", widget + "</article>", 1), encoding="utf-8"
    )
    found = page_check.problems(
        "bad",
        page_check.measure_book(built, [bad], shots=None, widths=(1280,))["bad-page"],
    )
    assert any(
        "wider than its box" in line and f"{len(wide)} >" in line for line in found
    ), found
    assert any("widget_views 1" in line for line in found), found
