"""Put the Colab set-up cell in every chapter (``--check``: only list the notebooks that differ).

    python tools/colab_cell.py [--check]      # from the checkout, with the package importable

The cell's source is :func:`convbias.notebooks.colab_cell_source`: it installs
``convbias[chapters]`` from the repository named in ``_config.yml``, at the tag
``v<convbias.__version__>`` for a release and at ``main`` for a development version
(:func:`convbias.notebooks.install_ref`). Run it after changing either (the release
recipe in the README), then ``python -m convbias colab`` for the Colab copies; only that
cell of each notebook is rewritten.
"""

from __future__ import annotations

import argparse
import sys

from convbias import notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/colab_cell.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="only report notebooks that differ"
    )
    args = parser.parse_args(argv)
    changed = notebooks.sync_colab_cells(notebooks.book_root(), check=args.check)
    verb = "differ" if args.check else "updated"
    print(
        f"{len(changed)} notebook(s) {verb}: {', '.join(p.name for p in changed) or 'none'}"
    )
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
