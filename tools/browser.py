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

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=4000"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no Chromium found: install it (Debian: apt-get install chromium) to take screenshots")


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600) -> dict:
    """Render ``page`` to ``png``; return simple layout measures of the picture."""
    if not page.exists():
        raise FileNotFoundError(f"{page} does not exist: build the book first (make book)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return {"page": page.name, "png": str(png), "size": pixels.shape[::-1], "contrast": float(pixels.std())}


def overflows(page: Path, width: int = 1280) -> bool:
    """True when the page's document is wider than the window (horizontal scrolling)."""
    script = ("<script>window.onload=()=>{document.title=String(document.documentElement.scrollWidth)}</script>")
    html = page.read_text(encoding="utf-8").replace("</head>", script + "</head>", 1)
    with tempfile.TemporaryDirectory() as profile:
        probe = page.with_name(f".probe-{page.name}")
        probe.write_text(html, encoding="utf-8")
        try:
            dom = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900",
                                  "--dump-dom", probe.resolve().as_uri()], check=True, capture_output=True,
                                 text=True, timeout=120).stdout
        finally:
            probe.unlink(missing_ok=True)
    start = dom.find("<title>") + len("<title>")
    title = dom[start: dom.find("</title>", start)]
    return title.isdigit() and int(title) > width
