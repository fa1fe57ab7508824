"""Command line: ``python -m convbias {run,cache,student} ...`` (or ``convbias ...``), from a checkout of the book.

- ``run CHAPTER [--profile quick|full] [--out results] [--no-cache] [--trace]``: execute a
  chapter headless (in a Jupyter kernel, without a notebook server), saving its figures, the
  executed notebook and ``results.json`` (glued numbers, checks, cell times) to ``results/<chapter>/``;
  an unchanged chapter (same notebook, profile, device, data and code) is restored from the
  results cache. ``--trace`` (from a checkout: it uses ``tools/profiling.py``) recomputes and
  writes each code cell's wall time and the costliest operators to ``profile.txt``.
- ``cache [--prune | --clear]``: where the results cache is and how large; ``--prune`` deletes
  the results of older versions of the code, ``--clear`` all of them.
- ``student OUT_DIR``: write every notebook without solutions or outputs.

Maintainers' commands (the Colab cell, screenshots) live in the checkout's ``tools/`` folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbias", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a chapter headless and save its results")
    run.add_argument("chapter", help="chapter number (1, 02, ...) or notebook name")
    run.add_argument("--profile", choices=["quick", "full", "auto"], default=None)
    run.add_argument("--out", type=Path, default=Path("results"))
    run.add_argument("--no-cache", action="store_true", help="recompute even if stored results exist")
    run.add_argument("--trace", action="store_true",
                     help="no cache; write each code cell's wall time and the costliest operators "
                          "(sampled with torch.profiler by tools/profiling.py of a checkout) to profile.txt")
    store = sub.add_parser("cache", help="show (or prune) the results cache")
    store.add_argument("--prune", action="store_true", help="delete the results of older versions of the code")
    store.add_argument("--clear", action="store_true", help="delete every stored result")
    student = sub.add_parser("student", help="write notebooks without solutions")
    student.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)

    if args.command == "cache":
        return _cache_command(args.prune, args.clear)

    from . import notebooks

    root = notebooks.book_root()
    if args.command == "run":
        if args.profile:
            os.environ["CONVBIAS_PROFILE"] = args.profile
        nb = notebooks.chapter_notebook(root, args.chapter)
        if args.trace:
            summary = notebooks.run_profiled(nb, args.out / nb.stem)
            print(f"{nb.stem}: operator profile -> {summary['profile']}")
        else:
            summary = notebooks.run_chapter(nb, args.out / nb.stem, use_cache=not args.no_cache)
        if summary["cached"]:
            print(f"{nb.stem}: unchanged since its last run (same profile, device, data and code): results restored from the cache")
        status = "all checks passed" if summary["checks_passed"] else f"FAILED at cell {summary['failed_cell']}: {summary.get('error')}"
        print(f"{nb.stem}: {status}; {summary['seconds']} s; {len(summary['figures'])} figures, "
              f"{len(summary['values'])} values -> {args.out / nb.stem}")
        return 0 if summary["checks_passed"] else 1
    if args.command == "student":
        total = 0
        for nb in notebooks.toc_notebooks(root):
            total += notebooks.student_version(nb, args.out_dir / nb.name)
        print(f"wrote {len(notebooks.toc_notebooks(root))} notebooks without {total} solutions to {args.out_dir}")
        return 0
    return 2  # argparse allows no other command


def _cache_command(prune: bool, clear: bool) -> int:
    from .cache import LOOSE, ResultCache, code_fingerprint

    cache = ResultCache(active=True)
    if prune or clear:
        freed = cache.prune(keep_current=not clear)
        print(f"deleted {freed / 2**20:.1f} MB of stored results from {cache.root}")
    usage = cache.usage()
    if not usage:
        print(f"no stored results in {cache.root}")
    for fingerprint, (entries, size) in usage.items():
        note = " (this code)" if fingerprint == code_fingerprint() else " (older code: --prune deletes it)"
        where = cache.root if fingerprint == LOOSE else cache.root / fingerprint
        print(f"{where}: {entries} results, {size / 2**20:.1f} MB{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
