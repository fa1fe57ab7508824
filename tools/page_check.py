"""The built book's pages as a reader sees them, measured in headless Chromium.

    python tools/page_check.py                      # after make book: check _build/html
    python tools/page_check.py --html DIR --table before.md --no-fail   # measure only

For every page of ``_toc.yml`` (the intro, the chapters, the appendices) it loads the
page at 1280 px (a laptop) and 390 px (a phone), its maths typeset by a local MathJax
(``make mathjax``; no network), saves a full-page screenshot of each to
``_build/screenshots/`` and fails (exit status 1) when, at 1280 px,

- a figure is displayed narrower than its natural width (its text is shrunk below
  the point size it was drawn at),
- a visible code line is wider than its code box (the reader scrolls sideways),
- an output mentions a ``FigureLayoutWarning`` (a figure wider than the column or text
  under 9 pt, see :mod:`convbias.plotting`),
- a progress bar or a live widget was saved (``CONVBIAS_STATIC=1`` builds save none),
- a Markdown table did not render (a paragraph of ``|`` characters),
- a display equation is wider than the column (or the maths was not rendered at all),
- a table's cells have no horizontal spacing (their texts run together),
- a word is written twice ("Exercise Exercise 9"), a paragraph repeats (part of) the
  one before it, or how to run the notebook live is said twice on a page,
- a reference names a figure, table or exercise other than the one it links to, or
  names "Figure 3" as plain text where it is not another work's figure,
- an image has no alt text or its file name as alt text,
- code is set under 80 % of the prose's size,
- an exercise stands outside its page's Exercises section,

or when a page is wider than the phone's window, or a table is cut off by its box,
at 390 px. ``--table`` writes the measures (per page) as a Markdown table. Needs
Playwright and Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import browser  # noqa: E402  (beside this file)

from convbias import notebooks  # noqa: E402

WIDTHS = (1280, 390)
#: a figure may be this much narrower on the page than drawn (rounding, a tight bounding box)
SHRINK_TOLERANCE = 0.02
HIDING_TAGS = (
    "hide-input",
    "hide-output",
    "hide-cell",
    "remove-input",
    "remove-output",
    "remove-cell",
)


def notebook_counts(path: Path) -> dict:
    """From the notebook's source: cells hidden by a tag, ``interact_manual`` calls."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    hidden = sum(
        1
        for c in nb["cells"]
        if set(c.get("metadata", {}).get("tags", [])) & set(HIDING_TAGS)
    )
    manual = 0
    for cell in code:
        source = "".join(cell["source"])
        source = "\n".join(
            line
            for line in source.splitlines()
            if not line.lstrip().startswith(("%", "!"))
        )
        try:
            tree = ast.parse(source)
        except SyntaxError:
            manual += source.count("interact_manual(")
            continue
        manual += sum(
            1
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            == "interact_manual"
        )
    widget_outputs = sum(
        1
        for c in code
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    )
    return {
        "code_cells_nb": len(code),
        "hidden_cells": hidden,
        "interact_manual": manual,
        "widget_outputs_nb": widget_outputs,
    }


def image_dpi(html_page: Path, src: str) -> float | None:
    """The resolution a PNG was drawn at (its pHYs chunk), or None."""
    try:
        from PIL import Image

        with Image.open((html_page.parent / src).resolve()) as img:
            dpi = img.info.get("dpi")
        return float(dpi[0]) if dpi else None
    except (OSError, ValueError):
        return None


def measure_book(
    html: Path, pages: list[Path], shots: Path | None, widths=WIDTHS
) -> dict[str, dict[int, dict]]:
    """``{page stem: {width: browser.summary(...) + raw measures}}`` for the pages of ``html``."""
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[int, dict]] = {}
    with sync_playwright() as pw:
        chrome = browser.playwright_browser(pw)
        try:
            tab = chrome.new_page()
            browser.offline(tab, browser.local_mathjax())
            for page in pages:
                if not page.exists():
                    raise FileNotFoundError(
                        f"{page} does not exist: build the book first (make book)"
                    )
                results[page.stem] = {}
                for width in widths:
                    png = shots / f"{page.stem}-{width}.png" if shots else None
                    raw = browser.measure(
                        tab, page.resolve().as_uri(), width=width, png=png
                    )
                    summary = browser.summary(raw)
                    dpis = [
                        image_dpi(page, i["src"])
                        for i in raw["images"]
                        if i["in_output"]
                    ]
                    summary["dpi"] = min((d for d in dpis if d), default=None)
                    summary["png"] = str(png) if png else None
                    summary["raw"] = raw
                    results[page.stem][width] = summary
        finally:
            chrome.close()
    return results


def problems(
    stem: str, by_width: dict[int, dict], book: dict[str, dict] | None = None
) -> list[str]:
    """What a reader would notice on this page, one line each."""
    found = []
    wide = by_width.get(1280)
    if wide is not None:
        raw = wide["raw"]
        for img in raw["images"]:
            if img["in_output"] and img["shown"] < img["natural"] * (
                1 - SHRINK_TOLERANCE
            ):
                found.append(
                    f"{stem}: figure {Path(img['src']).name} drawn {img['natural']} px wide, shown at "
                    f"{img['shown']:.0f} px: its text is shrunk to {img['shown'] / img['natural']:.0%}"
                    " (draw it at the column width, convbias.plotting.subplots)"
                )
        for box in raw["code"]:
            long = [n for n in box["lengths"] if n > box["columns"]]
            if long:
                where = (
                    "a code cell"
                    if box["shown"]
                    else "a hidden code cell (once opened)"
                )
                found.append(
                    f"{stem}: {where} has {len(long)} line(s) wider than its box "
                    f"({max(long)} > {box['columns']} characters)"
                )
        if wide["layout_warnings"]:
            found.append(
                f"{stem}: {wide['layout_warnings']} output(s) show a FigureLayoutWarning"
            )
        debris = {
            k: wide[k]
            for k in (
                "widget_views",
                "widget_state",
                "widget_elements",
                "progress_outputs",
            )
            if wide[k]
        }
        if debris:
            found.append(
                f"{stem}: saved widgets or progress bars ({', '.join(f'{k} {v}' for k, v in debris.items())}):"
                " build with CONVBIAS_STATIC=1"
            )
    for width, summary in by_width.items():
        if summary["page_overflow"]:
            found.append(
                f"{stem}: the page is wider than a {width} px window (horizontal scrolling)"
            )
        for t in summary["raw"].get("tables", []):
            if t["clipped"] or (width == 1280 and t["cells_overflowing"]):
                found.append(
                    f"{stem}: at {width} px a table is cut off by its box"
                    f" ({t['cells_overflowing']} cell(s) wider than their column): {t['text']!r}"
                )
    if wide is not None:
        found += reading_problems(stem, wide["raw"], book or {})
    return found


#: the kind of thing a reference names, from its words ("Fig. 2.3", "Figure 9", "Exercise 1")
KINDS = {"fig": "figure", "figure": "figure", "exercise": "exercise", "table": "table"}
NUMBERED = re.compile(r"\b(Fig(?:ure)?\.?|Exercise|Table)\s*(\d+(?:\.\d+)*)", re.I)
#: words near an unlinked "Figure 3" that say it is another work's figure, not the book's
ELSEWHERE = re.compile(
    r"paper|their|et al|article|in \[|\]\s*$|\d{4}\)?\s*$|of the original", re.I
)
#: the least horizontal padding a table cell's text needs from its neighbours (px)
MIN_CELL_PADDING = 4
#: code may be this much smaller than the prose beside it (typeset code: about 85 %)
MIN_CODE_RATIO = 0.8


def named(text: str) -> tuple[str, str] | None:
    """``("figure", "2.3")`` for "Figure 2.3" or "Fig. 2.3"; None when the text names none."""
    m = NUMBERED.search(text)
    if not m:
        return None
    return KINDS[m.group(1).lower().rstrip(".").replace("fig", "fig")], m.group(2)


def reading_problems(stem: str, raw: dict, book: dict[str, dict]) -> list[str]:
    """What breaks the reading at 1280 px: raw Markdown, cut maths, cramped tables, bad references."""
    found = []
    for text in raw.get("raw_tables", []):
        found.append(
            f"{stem}: a Markdown table did not render (a paragraph of '|'): {text!r}"
        )
    for phrase in raw.get("doubled", []):
        found.append(f"{stem}: a word written twice: {phrase!r}")
    for rep in raw.get("repeated", []):
        found.append(
            f"{stem}: a paragraph repeats (part of) the one before it: {rep['text']!r}"
        )
    if raw.get("live_hints", 0) > 1:
        found.append(
            f"{stem}: how to run the notebook live is said {raw['live_hints']} times"
        )
    for m in raw.get("math", []):
        if m["need"] > m["room"] + 1:
            found.append(
                f"{stem}: a display equation is {m['need']:.0f} px wide in a {m['room']:.0f} px column"
                f" (cut off or scrolled): {m['tex']!r}"
            )
    if raw.get("math_source") and raw.get("mathjax") is False:
        found.append(
            f"{stem}: the maths was not rendered: no local MathJax (make mathjax), its width unchecked"
        )
    for t in raw.get("tables", []):
        if t["tight"]:
            found.append(
                f"{stem}: a table's cells have no spacing ({t['tight']} of {t['cells']} cells with under"
                f" {MIN_CELL_PADDING} px between texts): {t['text']!r}"
            )
    prose, code = raw.get("font_prose"), raw.get("font_code")
    if prose and code and code < MIN_CODE_RATIO * prose:
        found.append(
            f"{stem}: code at {code:g} px beside {prose:g}-px prose"
            f" (under {MIN_CODE_RATIO:.0%} of it: hard to read side by side)"
        )
    for img in raw.get("alts", []):
        alt, src = img["alt"], img["src"]
        if (
            not alt
            or alt == src
            or Path(src).name in alt
            or re.search(r"\.(png|svg|jpe?g|gif)$", alt)
        ):
            found.append(
                f"{stem}: an image has {'no alt text' if not alt else f'its path as alt text ({alt!r})'}:"
                f" {Path(src).name}"
            )
    for title in raw.get("exercises_outside", []):
        found.append(f"{stem}: an exercise outside an Exercises section: {title!r}")
    labels = {raw.get("url"): raw, **book}
    for link in raw.get("links", []):
        says = named(link["text"])
        if says is None:
            continue
        url, _, frag = link["href"].partition("#")
        target = labels.get(url)
        if target is None:  # a page this run did not read
            continue
        label = target.get("numbered", {}).get(frag)
        if label is None:
            what = (
                "nothing"
                if frag not in target.get("ids", [])
                else "no numbered figure or exercise"
            )
            found.append(
                f"{stem}: the reference {link['text']!r} points at {what} (#{frag})"
            )
        elif named(label) != says:
            found.append(
                f"{stem}: the reference {link['text']!r} points at {label!r} (#{frag})"
            )
    for ref in raw.get("unlinked", []):
        before = ref["context"].split(ref["text"])[0]
        if ELSEWHERE.search(ref["context"]) or ELSEWHERE.search(before[-25:]):
            continue
        found.append(
            f"{stem}: {ref['text']!r} is named without a link to it (whose figure?): {ref['context']!r}"
        )
    return found


def book_problems(results: dict[str, dict[int, dict]]) -> list[str]:
    """Every page's problems, references to another page resolved against that page."""
    book = {
        r[1280]["raw"]["url"]: r[1280]["raw"] for r in results.values() if 1280 in r
    }
    return [
        line
        for stem, by_width in results.items()
        for line in problems(stem, by_width, book)
    ]


def table(results: dict[str, dict[int, dict]], counts: dict[str, dict]) -> str:
    """The measures as a Markdown table, one row per page (code and figures at 1280 px)."""
    cols = [
        "Page",
        "code lines shown",
        "wider than box",
        "all code lines (hidden opened)",
        "wider than box",
        "longest",
        "box shows (chars)",
        "output lines wider",
        "hidden cells",
        "figures",
        "smallest scale",
        "smallest tick font",
        "widget views / state",
        "progress outputs",
        "interact_manual",
        "page wider than 390 px",
    ]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    keys = [
        "code_lines",
        "code_lines_wide",
        "code_lines_all",
        "code_lines_wide_all",
        "output_lines_wide",
        "output_lines",
        "widget_views",
        "widget_state",
        "progress_outputs",
    ]
    total = dict.fromkeys(keys + ["hidden_cells", "interact_manual"], 0)
    smallest = (float("inf"), float("inf"))
    for stem, by_width in results.items():
        s, c = by_width[1280], counts.get(stem, {})
        phone = by_width.get(390, {}).get("page_overflow")
        dpi = s["dpi"] or 110
        px = s["min_scale"] * browser.NOMINAL_PT / 72 * dpi
        smallest = min(smallest, (s["min_font_pt"], px))
        columns = sorted({b["columns"] for b in s["raw"]["code"]})
        rows.append(
            f"| {stem} | {s['code_lines']} | {s['code_lines_wide']} | {s['code_lines_all']} | "
            f"{s['code_lines_wide_all']} | {s['code_longest']} | {'-'.join(map(str, columns[:1] + columns[-1:]))} | "
            f"{s['output_lines_wide']} of {s['output_lines']} | {c.get('hidden_cells', '-')} | {s['figures']} | "
            f"{s['min_scale']:.2f} | {s['min_font_pt']:.1f} pt ({px:.1f} px) | "
            f"{s['widget_views']} / {s['widget_state']} | {s['progress_outputs']} | {c.get('interact_manual', '-')} | "
            f"{'yes' if phone else 'no'} |"
        )
        for key in keys:
            total[key] += s[key]
        for key in ("hidden_cells", "interact_manual"):
            total[key] += c.get(key, 0)
    rows.append(
        f"| **all** | {total['code_lines']} | {total['code_lines_wide']} | {total['code_lines_all']} | "
        f"{total['code_lines_wide_all']} | | | {total['output_lines_wide']} of {total['output_lines']} | "
        f"{total['hidden_cells']} | | | {smallest[0]:.1f} pt ({smallest[1]:.1f} px) | "
        f"{total['widget_views']} / {total['widget_state']} | {total['progress_outputs']} | "
        f"{total['interact_manual']} | |"
    )
    return "\n".join(rows) + "\n"


def book_pages(html: Path, root: Path) -> list[Path]:
    """Every page of ``_toc.yml`` (the root, chapters, appendices), in book order."""
    return [html / f"{Path(f).with_suffix('')}.html" for f in notebooks.toc_files(root)]


def chapter_pages(html: Path, root: Path) -> list[Path]:
    return [
        html / nb.relative_to(root).with_suffix(".html")
        for nb in notebooks.toc_notebooks(root)
    ]


def browser_missing() -> str | None:
    """Why the pages cannot be read in a browser here (no Playwright, no Chromium), or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright)"
    try:
        browser.chromium()
    except FileNotFoundError as err:
        return str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/page_check.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--html", type=Path, default=None, help="the built HTML (default: _build/html)"
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="the book whose notebooks are counted (default: this checkout)",
    )
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument(
        "--table",
        type=Path,
        default=None,
        help="write the measures as a Markdown table",
    )
    parser.add_argument(
        "--pages", nargs="*", default=None, help="page stems (default: every chapter)"
    )
    parser.add_argument(
        "--no-fail", action="store_true", help="report, exit 0 whatever is found"
    )
    args = parser.parse_args(argv)
    missing = browser_missing()
    if missing:
        print(
            f"page check skipped: {missing}; the HTML is built, its pages are not checked"
        )
        return 0
    root = notebooks.book_root()
    html = args.html or root / "_build" / "html"
    nb_root = args.notebooks or root
    pages = book_pages(html, root)
    if args.pages:
        pages = [p for p in pages if p.stem in args.pages]
    results = measure_book(html, pages, args.screenshots)
    counts = {}
    for page in pages:
        source = nb_root / "book" / f"{page.stem}.ipynb"
        if source.exists():
            counts[page.stem] = notebook_counts(source)
    found = book_problems(results)
    text = table(results, counts)
    print(text)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text, encoding="utf-8")
    for line in found:
        print(line)
    print(
        f"screenshots: {args.screenshots}/<page>-<width>.png ({len(pages) * len(WIDTHS)} files)"
    )
    print(f"page problems: {len(found) if found else 'none'}")
    return 1 if found and not args.no_fail else 0


if __name__ == "__main__":
    sys.exit(main())
