"""Command line: ``python -m convbias {run,cache,student} ...`` (or ``convbias ...``), from a checkout of the book.

- ``run CHAPTER [--profile quick|full] [--out results] [--no-cache] [--trace]``: execute a
  chapter headless (in a Jupyter kernel, without a notebook server), saving its figures, the
  executed notebook and ``results.json`` (glued numbers, checks, cell times) to ``results/<chapter>/``;
  an unchanged chapter (same notebook, profile, device, data and code) is restored from the
  results cache. ``--trace`` (from a checkout: it uses ``tools/profiling.py``) recomputes and
  writes each code cell's wall time and the costliest operators to ``profile.txt``.
- ``cache [--prune | --clear] [--dry-run]``: where the results cache is and how large; ``--prune``
  deletes the results of older versions of the code, ``--clear`` all of them (only the cache's
  own folders and files, each named before it goes; never in ``/``, the home folder or a checkout).
- ``student OUT_DIR [--force]``: write every notebook without solutions or outputs (never into
  ``book/``; over existing files only with ``--force``).
- ``--version``: the package's version.

Maintainers' commands (the Colab cell, screenshots) live in the checkout's ``tools/`` folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class UserError(Exception):
    """A mistake in the command line (a chapter that does not exist, a folder that must not be written)."""


def main(argv: list[str] | None = None) -> int:
    """The command line; a user's mistake is answered in one line on stderr with exit status 2
    (``CONVBIAS_DEBUG=1`` shows the traceback instead)."""
    try:
        return _main(argv)
    except _user_errors() as exc:
        if os.environ.get("CONVBIAS_DEBUG"):
            raise
        print(f"python -m convbias: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can cause (bad chapter, profile, folder); bugs still show their traceback."""
    from .cache import UnsafeCacheRoot
    from .data.download import DownloadError

    return (UserError, UnsafeCacheRoot, DownloadError, FileNotFoundError, FileExistsError, PermissionError,
            NotADirectoryError, ValueError)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _version() -> str:
    """The running package's version (``convbias.__version__``, the one place it is written)."""
    from . import __version__

    return __version__


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbias", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"convbias {_version()}")
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
    store.add_argument("--dry-run", action="store_true", help="with --prune/--clear: only list what would go")
    student = sub.add_parser("student", help="write notebooks without solutions")
    student.add_argument("out_dir", type=Path)
    student.add_argument("--force", action="store_true", help="overwrite notebooks already in OUT_DIR")
    args = parser.parse_args(argv)

    if args.command == "cache":
        return _cache_command(args.prune, args.clear, args.dry_run)

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
        return _student_command(root, args.out_dir, args.force)
    return 2  # argparse allows no other command


def _student_command(root: Path, out_dir: Path, force: bool) -> int:
    from . import notebooks

    written, total = notebooks.student_edition(root, out_dir, force=force)
    print(f"wrote {len(written)} notebooks without {total} solutions to {out_dir}")
    return 0


def _cache_command(prune: bool, clear: bool, dry_run: bool = False) -> int:
    from .cache import LOOSE, ResultCache, code_fingerprint

    cache = ResultCache(active=True)
    if prune or clear:
        freed = cache.prune(keep_current=not clear, dry_run=dry_run, report=print)
        verb = "would delete" if dry_run else "deleted"
        print(f"{verb} {freed / 2**20:.1f} MB of stored results from {cache.root}")
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
