"""Screenshots of the built book in headless Chromium, to check pages as a reader sees them.

``python tools/screenshots.py`` renders the intro and the chapter pages of
``_build/html`` to PNG files and fails when a page renders blank or when its
content overflows the window horizontally (a broken layout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=4000",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        "no Chromium found: install it (Debian: apt-get install chromium) to take screenshots"
    )


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600) -> dict:
    """Render ``page`` to ``png``; return simple layout measures of the picture."""
    if not page.exists():
        raise FileNotFoundError(
            f"{page} does not exist: build the book first (make book)"
        )
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return {
        "page": page.name,
        "png": str(png),
        "size": pixels.shape[::-1],
        "contrast": float(pixels.std()),
    }


def overflows(page: Path, width: int = 1280) -> bool:
    """True when the page's document is wider than the window (horizontal scrolling)."""
    script = "<script>window.onload=()=>{document.title=String(document.documentElement.scrollWidth)}</script>"
    html = page.read_text(encoding="utf-8").replace("</head>", script + "</head>", 1)
    with tempfile.TemporaryDirectory() as profile:
        probe = page.with_name(f".probe-{page.name}")
        probe.write_text(html, encoding="utf-8")
        try:
            dom = subprocess.run(
                [
                    chromium(),
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={width},900",
                    "--dump-dom",
                    probe.resolve().as_uri(),
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
        finally:
            probe.unlink(missing_ok=True)
    start = dom.find("<title>") + len("<title>")
    title = dom[start : dom.find("</title>", start)]
    return title.isdigit() and int(title) > width


# ----------------------------------------------------------------------------- page measures (Playwright)
#: tqdm's text bar ("76%|███▋ | 73/96") or its widget's text ("76% 73/96 [00:12<00:03, 5.8it/s]")
PROGRESS_TEXT = r"\d{1,3}%\s*\|[^\n]*\||\d+/\d+ \[\d+:\d+<|\d+(\.\d+)?(it|s)/s\]"
#: a Matplotlib tick label in the house style (points), drawn at the image's natural size
NOMINAL_PT = 9.9

MEASURE_JS = r"""
(progressText) => {
  // cells a reader has to open (hide-input, hide-output): noted, then opened to be measured
  const collapsed = new Set();
  for (const d of document.querySelectorAll('details:not([open])')) {
    d.querySelectorAll('pre, img').forEach(el => collapsed.add(el));
    d.open = true;
  }
  const visible = el => el.offsetParent !== null && el.clientWidth > 0;
  const columns = pre => {
    const probe = document.createElement('span');
    probe.textContent = 'x'.repeat(200);
    probe.style.cssText = 'visibility:hidden;position:absolute;white-space:pre';
    pre.appendChild(probe);
    const char = probe.getBoundingClientRect().width / 200;
    probe.remove();
    const cs = getComputedStyle(pre);
    const room = pre.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    return Math.floor(room / char + 1e-3);
  };
  const boxes = selector => {
    const out = [];
    for (const pre of document.querySelectorAll(selector)) {
      if (!visible(pre)) continue;
      const lines = pre.textContent.replace(/\n$/, '').split('\n').map(l => l.replace(/\t/g, '    '));
      out.push({shown: !collapsed.has(pre), columns: columns(pre), lengths: lines.map(l => l.length),
                scrolls: pre.scrollWidth > pre.clientWidth + 1});
    }
    return out;
  };
  const images = [];
  for (const img of document.querySelectorAll('main img, article img')) {
    if (!visible(img) || !img.naturalWidth) continue;
    if (img.closest('.headerbtn, .dropdown-buttons, nav, .navbar-brand')) continue;
    images.push({collapsed: collapsed.has(img), src: img.getAttribute('src'), alt: img.getAttribute('alt') || '',
                 natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
                 in_output: !!img.closest('.cell_output, figure, .figure')});
  }
  const re = new RegExp(progressText);
  const outputs = [...document.querySelectorAll('.cell_output')].map(o => o.innerText);
  const article = document.querySelector('article') || document.querySelector('main') || document.body;
  // the prose of an element: its text without maths, code or scripts
  const prose = el => {
    const copy = el.cloneNode(true);
    copy.querySelectorAll('script, style, .headerlink').forEach(n => n.remove());
    copy.querySelectorAll('mjx-container, code, pre, .math').forEach(n => n.replaceWith(' \u2026 '));
    return copy.textContent.replace(/\s+/g, ' ').trim();
  };
  const blocks = [...article.querySelectorAll(
    'p, li, td, th, caption, figcaption, dt, dd, h1, h2, h3, h4, h5, h6')].filter(
    el => !el.closest('.cell_input, nav, .bd-sidebar-primary, .bd-sidebar-secondary'));
  // a Markdown table that did not render: a paragraph of `|` characters
  const raw_tables = blocks.filter(el => el.tagName === 'P').map(prose).filter(t => {
    const pipes = (t.match(/\|/g) || []).length;
    return pipes >= 6 || (pipes >= 3 && /\|\s*:?(-{3,}|[\u2013\u2014])/.test(t));  // |---| or its dashes
  }).map(t => t.slice(0, 80));
  // a word written twice ("Exercise Exercise 9"); maths, code and links' repeated labels aside
  const doubled = new Set();
  for (const el of blocks) {
    if ([...el.children].some(c => ['P', 'LI', 'UL', 'OL', 'TABLE', 'DL'].includes(c.tagName))) continue;
    for (const m of prose(el).matchAll(/\b([A-Za-z][A-Za-z'’-]*)\s+\1\b/gi)) doubled.add(m[0]);
  }
  // a paragraph that repeats the one before it, whole or in part (a fragment pasted twice)
  const paras = blocks.filter(el => el.tagName === 'P').map(el => el.textContent.replace(/\s+/g, ' ').trim());
  const repeated = [];
  for (let k = 1; k < paras.length; k++) {
    if (paras[k].length >= 40 && paras[k - 1].includes(paras[k])) repeated.push({text: paras[k].slice(0, 80)});
  }
  // how to run the notebook live, said more than once on a page
  const live_hints = blocks.filter(
    el => el.tagName === 'P' && /run (the notebook|it) live/i.test(el.textContent)).length;
  // display maths (MathJax 3): the width it needs and the width of its column
  const math = [];
  for (const c of article.querySelectorAll('mjx-container[display="true"]')) {
    if (!visible(c)) continue;
    const m = c.querySelector('mjx-math');
    let tex = '';
    try { tex = MathJax.startup.document.getMathItemsWithin(c)[0].math; } catch (e) {}
    math.push({tex: tex.replace(/\s+/g, ' ').trim().slice(0, 70), need: m ? m.getBoundingClientRect().width : 0,
               room: c.clientWidth || c.parentElement.clientWidth,
               scrolls: ['auto', 'scroll'].includes(getComputedStyle(c).overflowX)});
  }
  const math_source = article.querySelectorAll('div.math, span.math').length;
  // tables: cells without horizontal padding (text runs together), tables cut off by their box
  const tables = [];
  for (const t of article.querySelectorAll('table')) {
    if (!visible(t)) continue;
    const rows = [...t.rows].filter(r => r.cells.length > 1);
    if (!rows.length) continue;
    const collapse = getComputedStyle(t).borderCollapse === 'collapse';
    const spacing = collapse ? 0 : parseFloat(getComputedStyle(t).borderSpacing) || 0;
    let tight = 0, cells = 0;
    for (const r of rows) for (const cell of r.cells) {
      if (!cell.textContent.trim()) continue;
      const cs = getComputedStyle(cell);
      cells += 1;
      if (parseFloat(cs.paddingLeft) + parseFloat(cs.paddingRight) + spacing < 4) tight += 1;
    }
    let clipped = false;
    const right = t.getBoundingClientRect().right;
    for (let a = t.parentElement; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (['auto', 'scroll'].includes(ox)) break;
      if (['hidden', 'clip'].includes(ox) && right > a.getBoundingClientRect().right + 1) { clipped = true; break; }
    }
    const words = [...t.querySelectorAll('td, th')].filter(c => c.scrollWidth > c.clientWidth + 1).length;
    tables.push({text: prose(t.rows[0]).slice(0, 60), in_output: !!t.closest('.cell_output'), cells, tight,
                 clipped, cells_overflowing: words});
  }
  // images: alt text
  const alts = [...article.querySelectorAll('img')].filter(i => !i.closest('.headerbtn, nav, .navbar-brand'))
    .map(i => ({src: i.getAttribute('src') || '', alt: (i.getAttribute('alt') || '').trim(),
                caption: !!(i.closest('figure') && i.closest('figure').querySelector('figcaption'))}));
  // numbered things on the page (figures, tables, exercises) and the links that name one
  const numbered = {};
  for (const n of article.querySelectorAll('.caption-number')) {
    const owner = n.closest('figure, table, div.exercise, div.solution, .admonition, div.code-block-caption, .figure');
    if (!owner) continue;
    const ids = [owner.id, ...[...owner.querySelectorAll(':scope > span[id]')].map(s => s.id)];
    const prev = owner.previousElementSibling;
    if (prev && prev.tagName === 'SPAN' && prev.id) ids.push(prev.id);
    for (const id of ids.filter(Boolean)) numbered[id] = n.textContent.replace(/\s+/g, ' ').trim();
  }
  const ids = [...article.querySelectorAll('[id]')].map(e => e.id);
  const links = [...article.querySelectorAll('a[href]')].filter(a => !a.closest('.headerlink'))
    .map(a => ({text: a.textContent.replace(/\s+/g, ' ').trim(), href: a.href}))
    .filter(l => /\b(Fig(ure|\.)|Exercise|Table)\s*\d/.test(l.text));
  // "Figure 3" written as plain text (outside a link): named, not linked
  const unlinked = [];
  for (const el of blocks) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (n.parentElement.closest('a, mjx-container, code, pre, .caption-number')) continue;
      for (const m of n.textContent.matchAll(/\b(Figure|Fig\.|Exercise)\s+(\d+(\.\d+)?)/g)) {
        const t = prose(el), at = Math.max(t.indexOf(m[0]), 0);
        unlinked.push({text: m[0], context: t.slice(Math.max(0, at - 70), at + m[0].length + 40)});
      }
    }
  }
  const exercises_outside = [...article.querySelectorAll('div.exercise')].filter(e => {
    const s = e.closest('section');
    const h = s && s.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
    return !(h && /exercise/i.test(h.textContent));
  }).map(e => prose(e.querySelector('.admonition-title') || e).slice(0, 60));
  const font = sel => {  // the smallest size of the elements (px), or null
    const sizes = [...article.querySelectorAll(sel)].map(el => parseFloat(getComputedStyle(el).fontSize));
    return sizes.length ? Math.min(...sizes) : null;
  };
  return {
    raw_tables, doubled: [...doubled], repeated, live_hints, math, math_source, tables, alts, numbered, ids, links,
    unlinked: unlinked.filter((u, i, a) => a.findIndex(v => v.context === u.context && v.text === u.text) === i),
    exercises_outside,
    font_prose: font('section > p'), font_code: font('div.cell_input pre'), font_output: font('div.cell_output pre'),
    url: location.href.split('#')[0],
    code: boxes('div.cell_input pre'),
    output: boxes('div.cell_output pre'),
    images,
    widget_elements: document.querySelectorAll('.jupyter-widgets, .widget-view, .widget-output').length,
    widget_views: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widget_state: document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]').length,
    progress_outputs: outputs.filter(t => re.test(t)).length,
    layout_warnings: outputs.filter(t => t.includes('FigureLayoutWarning')).length,
    scroll_width: document.documentElement.scrollWidth,
  };
}
"""


#: where the built pages load MathJax 3 from (Sphinx's default ``mathjax_path``)
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/"
#: MathJax 3 on this machine, installed by ``make mathjax`` (npm install --prefix .mathjax mathjax@3)
LOCAL_MATHJAX = (
    Path(__file__).resolve().parents[1]
    / ".mathjax"
    / "node_modules"
    / "mathjax"
    / "es5"
)


def local_mathjax() -> Path | None:
    """MathJax 3's ``es5`` folder (``$CONVBIAS_MATHJAX`` or ``.mathjax/``), or None."""
    folder = Path(os.environ.get("CONVBIAS_MATHJAX", LOCAL_MATHJAX))
    return folder if (folder / "tex-mml-chtml.js").is_file() else None


def offline(page, mathjax: Path | None) -> None:
    """Serve MathJax from ``mathjax`` in place of its CDN; refuse every other network request.

    The check renders the maths as a reader's browser does, without the network: the
    page asks the CDN for MathJax and its fonts, and gets the local copy's files.
    """

    def refuse(route):
        route.abort()

    def serve(route):
        name = route.request.url[len(MATHJAX_CDN) :].split("?")[0]
        path = (mathjax / name).resolve() if mathjax else None
        if path and path.is_file() and mathjax.resolve() in path.parents:
            route.fulfill(path=str(path))
        else:
            route.abort()

    page.route("http*://**", refuse)
    page.route(MATHJAX_CDN + "**", serve)  # the later route is tried first


#: waits until MathJax (if the page loads it) has typeset the page
TYPESET_JS = """
() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? Promise.race([MathJax.startup.promise.then(() => true),
                  new Promise(done => setTimeout(() => done(false), 20000))])
  : false
"""


def playwright_browser(playwright):
    """Headless Chromium through Playwright, using the system's Chromium (no browser download)."""
    return playwright.chromium.launch(
        executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"]
    )


def measure(
    page, url: str, width: int = 1280, height: int = 900, png: Path | None = None
) -> dict:
    """Load ``url`` in the Playwright ``page`` at ``width`` px; return its layout measures.

    ``code``/``output``: one entry per code box (input cells, text outputs) with its
    line lengths, how many characters its box shows and whether it is shown before
    the reader opens it (``shown`` is false in a ``hide-input`` cell; such cells are
    opened to be measured); ``images``: natural and displayed widths. With ``png``, a
    full-page screenshot (hidden cells closed) is written there first.
    """
    page.set_viewport_size({"width": width, "height": height})
    page.goto(url, wait_until="load")
    typeset = page.evaluate(
        TYPESET_JS
    )  # the maths laid out before anything is measured
    page.wait_for_timeout(150)
    if png is not None:  # as the reader first sees it: hidden cells closed
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(png), full_page=True, timeout=120_000
        )  # a long page, a busy machine
    result = page.evaluate(MEASURE_JS, PROGRESS_TEXT)
    result["width"] = width
    result["mathjax"] = typeset
    return result


def summary(m: dict) -> dict:
    """Counts a reader notices from :func:`measure`'s result: overflowing lines, image scales, debris."""
    shown = [b for b in m["code"] if b["shown"]]
    cols = [b["columns"] for b in m["code"]]
    wide = [n for b in shown for n in b["lengths"] if n > b["columns"]]
    wide_all = [n for b in m["code"] for n in b["lengths"] if n > b["columns"]]
    out_shown = m["output"]
    out_wide = [n for b in out_shown for n in b["lengths"] if n > b["columns"]]
    figures = [i for i in m["images"] if i["in_output"]]
    scales = [i["shown"] / i["natural"] for i in figures]
    return {
        "code_cells": len(m["code"]),
        "code_cells_shown": len(shown),
        "code_lines": sum(len(b["lengths"]) for b in shown),
        "code_lines_wide": len(wide),
        "code_lines_all": sum(len(b["lengths"]) for b in m["code"]),
        "code_lines_wide_all": len(wide_all),
        "code_longest": max((n for b in shown for n in b["lengths"]), default=0),
        "code_columns": min(cols) if cols else None,
        "output_lines": sum(len(b["lengths"]) for b in out_shown),
        "output_lines_wide": len(out_wide),
        "output_boxes_wide": sum(
            any(n > b["columns"] for n in b["lengths"]) for b in out_shown
        ),
        "figures": len(figures),
        "min_scale": min(scales, default=1.0),
        "min_font_pt": NOMINAL_PT * min(scales, default=1.0),
        "shrunk": [i["src"] for i in figures if i["shown"] < i["natural"] - 1],
        "path_alt": sum(
            1 for i in figures if i["alt"] == i["src"] or i["alt"].endswith(".png")
        ),
        "widget_elements": m["widget_elements"],
        "widget_views": m["widget_views"],
        "widget_state": m["widget_state"],
        "progress_outputs": m["progress_outputs"],
        "layout_warnings": m["layout_warnings"],
        "page_overflow": m["scroll_width"] > m["width"],
    }
