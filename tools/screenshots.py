"""Screenshots of the built book's pages in headless Chromium (1280 px and 390 px).

    python tools/screenshots.py [--out _build/screenshots]   # after make book

The same run as ``tools/page_check.py`` (which ``make book`` calls): it writes
``<out>/<page>-<width>.png`` for every page of ``_toc.yml`` and fails when a page shows
a problem a reader would see (the list is in ``tools/page_check.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import page_check  # noqa: E402  (beside this file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/screenshots.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=Path("_build/screenshots"))
    args = parser.parse_args(argv)
    return page_check.main(["--screenshots", str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
