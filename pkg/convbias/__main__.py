"""Command line: ``python -m convbias {run,student,colab-cell} ...`` (run from a checkout of the book).

- ``run CHAPTER [--profile quick|full] [--out results] [--no-cache] [--trace]``: execute a
  chapter headless (no Jupyter), saving its figures and glued numbers to ``results/<chapter>/``;
  an unchanged chapter (same notebook, profile and code) is restored from the results cache.
  ``--trace`` recomputes and writes each code cell's wall time and the costliest operators
  (sampled with ``torch.profiler``) to ``profile.txt``.
  ``--smoke`` runs it at full size with a few steps per loop and writes its measured costs to ``cost.json``.
- ``estimate [CHAPTERS] [--profile full]``: each chapter's time on a Colab T4 and an H100 and its peak
  memory, predicted from smoke runs (see :mod:`convbias.estimate`).
- ``cache [--prune | --clear]``: where the results cache is and how large; ``--prune`` deletes
  the results of older versions of the code, ``--clear`` all of them.
- ``student OUT_DIR``: write every notebook without solutions or outputs.
- ``colab-cell [--check]``: put (or check) the Colab set-up cell in every chapter.
- ``screenshots [--out DIR]``: render the built book's intro and chapters in headless Chromium.
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
    run.add_argument("--smoke", action="store_true",
                     help="full sizes, a few steps per training loop, checks reported not judged, no cache; "
                          "writes the measured costs to cost.json (see `estimate`)")
    run.add_argument("--trace", action="store_true",
                     help="no cache; write each code cell's wall time and the costliest operators "
                          "(sampled with torch.profiler) to profile.txt")
    _add_estimate_parser(sub)
    store = sub.add_parser("cache", help="show (or prune) the results cache")
    store.add_argument("--prune", action="store_true", help="delete the results of older versions of the code")
    store.add_argument("--clear", action="store_true", help="delete every stored result")
    student = sub.add_parser("student", help="write notebooks without solutions")
    student.add_argument("out_dir", type=Path)
    colab = sub.add_parser("colab-cell", help="sync the Colab set-up cell of every chapter")
    colab.add_argument("--check", action="store_true", help="only report notebooks that differ")
    shots = sub.add_parser("screenshots", help="screenshots of the built book (headless Chromium)")
    shots.add_argument("--out", type=Path, default=Path("_build/screenshots"))
    args = parser.parse_args(argv)

    if args.command == "cache":
        return _cache_command(args.prune, args.clear)
    if args.command == "estimate":
        return _estimate_command(args)

    from . import notebooks

    root = notebooks.book_root()
    if args.command == "run":
        if args.profile:
            os.environ["CONVBIAS_PROFILE"] = args.profile
        nb = notebooks.chapter_notebook(root, args.chapter)
        if args.smoke:
            return _smoke_command(nb, args.out / nb.stem)
        if args.trace:
            summary = notebooks.run_profiled(nb, args.out / nb.stem)
            print(f"{nb.stem}: operator profile -> {summary['profile']}")
        else:
            summary = notebooks.run_chapter(nb, args.out / nb.stem, use_cache=not args.no_cache)
        if summary["cached"]:
            print(f"{nb.stem}: unchanged since its last run with this profile and code: results restored from the cache")
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
    if args.command == "screenshots":
        from . import browser

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
    changed = notebooks.sync_colab_cells(root, check=args.check)
    verb = "differ" if args.check else "updated"
    print(f"{len(changed)} notebook(s) {verb}: {', '.join(p.name for p in changed) or 'none'}")
    return 1 if (args.check and changed) else 0


def _smoke_command(nb: Path, out: Path) -> int:
    from .smoke import run_smoke

    cost = run_smoke(nb, out)
    gb = 2**30
    status = "every cell ran" if cost["completed"] else f"FAILED at cell {cost['failed_cell']}: {cost['error']}"
    reported = f"; {len(cost['checks_reported'])} check cell(s) failed (reported, not judged)" \
        if cost["checks_reported"] else ""
    print(f"{nb.stem} (smoke, {cost['profile']} profile, {cost['smoke_steps']} steps per loop): {status}{reported}; "
          f"{cost['wall_seconds']:.0f} s; peak host memory {cost['peak_host_bytes'] / gb:.2f} GB, "
          f"peak tensor memory {cost['peak_tensor_bytes'] / gb:.2f} GB -> {out / 'cost.json'}")
    return 0 if cost["completed"] else 1


def _add_estimate_parser(sub) -> None:
    est = sub.add_parser("estimate", help="time and memory of each chapter on a Colab T4 and an H100, "
                                          "from full-size smoke runs")
    est.add_argument("chapters", nargs="*", help="chapter numbers (default: every chapter)")
    est.add_argument("--profile", choices=["quick", "full"], default="full")
    est.add_argument("--out", type=Path, default=Path("results"), help="where the smoke runs' cost.json live")
    est.add_argument("--rerun", action="store_true", help="repeat the smoke runs even where cost.json exists")
    est.add_argument("--save-budget", action="store_true",
                     help="write the minutes per chapter the set-up cells announce (the package's budget.json)")


def _estimate_command(args) -> int:
    from . import estimate, notebooks

    root = notebooks.book_root()
    chapters = [notebooks.chapter_notebook(root, c) for c in args.chapters] or estimate.chapters(root)
    costs = [estimate.smoke_cost(nb, args.out / nb.stem, args.profile, rerun=args.rerun) for nb in chapters]
    print(estimate.report(costs))
    if args.save_budget:
        print(f"wrote {estimate.save_budget(costs)}")
    return 0 if all(c["completed"] for c in costs) else 1


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
