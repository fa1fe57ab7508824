"""The built book's chapter pages as a reader sees them, measured in headless Chromium.

    python tools/page_check.py                      # after make book: check _build/html
    python tools/page_check.py --html DIR --table before.md --no-fail   # measure only

For every chapter page of ``_toc.yml`` it loads the page at 1280 px (a laptop) and
390 px (a phone), saves a full-page screenshot of each to ``_build/screenshots/``
and fails (exit status 1) when, at 1280 px,

- a figure is displayed narrower than its natural width (its text is shrunk below
  the point size it was drawn at),
- a visible code line is wider than its code box (the reader scrolls sideways),
- an output mentions a ``FigureLayoutWarning`` (a figure wider than the column or text
  under 9 pt, see :mod:`convbias.plotting`),
- a progress bar or a live widget was saved (``CONVBIAS_STATIC=1`` builds save none),

or when a page is wider than the phone's window at 390 px. ``--table`` writes the
measures (per chapter) as a Markdown table. Needs Playwright and Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import ast
import json
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


def problems(stem: str, by_width: dict[int, dict]) -> list[str]:
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
    return found


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
    pages = chapter_pages(html, root)
    if args.pages:
        pages = [p for p in pages if p.stem in args.pages]
    results = measure_book(html, pages, args.screenshots)
    counts = {}
    for page in pages:
        source = nb_root / "book" / f"{page.stem}.ipynb"
        if source.exists():
            counts[page.stem] = notebook_counts(source)
    found = [
        line for stem, by_width in results.items() for line in problems(stem, by_width)
    ]
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
