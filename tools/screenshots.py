"""Screenshots of the built book's intro and chapter pages in headless Chromium.

    python tools/screenshots.py [--out _build/screenshots]   # after make book

Fails when a page renders blank (low contrast) or overflows the window horizontally.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import browser  # noqa: E402  (beside this file)

from convbias import notebooks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/screenshots.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("_build/screenshots"))
    args = parser.parse_args(argv)
    root = notebooks.book_root()
    html = root / "_build" / "html"
    pages = [html / "book" / "intro.html"] + [html / "book" / f"{nb.stem}.html" for nb in notebooks.toc_notebooks(root)]
    bad = []
    for page in pages:
        shot = browser.screenshot(page, args.out / f"{page.stem}.png")
        wide = browser.overflows(page)
        print(f"{page.stem:<32} contrast {shot['contrast']:5.1f}  overflow {'YES' if wide else 'no'}  -> {shot['png']}")
        if shot["contrast"] < 5 or wide:
            bad.append(page.stem)
    print("layout problems: " + (", ".join(bad) if bad else "none"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
