"""Screenshots of the built book in headless Chromium, to check pages as a reader sees them.

``python tools/screenshots.py`` renders the intro and the chapter pages of
``_build/html`` to PNG files and fails when a page renders blank or when its
content overflows the window horizontally (a broken layout).
"""

from __future__ import annotations

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
  return {
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
    page.wait_for_timeout(150)
    if png is not None:  # as the reader first sees it: hidden cells closed
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png), full_page=True)
    result = page.evaluate(MEASURE_JS, PROGRESS_TEXT)
    result["width"] = width
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
