"""Command line: ``python -m convbias {run,cache,student,colab} ...`` (or ``convbias ...``),
from a checkout of the book.

- ``run CHAPTER [--profile quick|full] [--out results] [--no-cache] [--trace]``: execute a
  chapter headless (in a Jupyter kernel, without a notebook server), saving its figures, the
  executed notebook and ``results.json`` (glued numbers, checks, cell times) to ``results/<chapter>/``;
  an unchanged chapter (same notebook, profile, device, data and code) is restored from the
  results cache. ``--trace`` (from a checkout: it uses ``tools/profiling.py``) recomputes and
  writes each code cell's wall time and the costliest operators to ``profile.txt``.
- ``run CHAPTER --seed S``: the same from base seed ``S`` (``CONVBIAS_SEED``; recorded in ``results.json``).
- ``verify [--seeds 0-4] [CHAPTERS ...]``: run chapters over several base seeds and write a
  robustness table (per check: passed k/n, margin min/median) as Markdown and JSON.
- ``run CHAPTER --profile full --smoke``: every cell at full size with a few steps per loop; the
  measured costs go to ``cost.json``. A smoke run writes to ``results/smoke/<chapter>/`` by default,
  marks its files ``"smoke": true`` and never writes over a real run's results.
- ``estimate [CHAPTERS] [--profile full] [--run-missing]``: each chapter's time on a Colab T4 and an
  H100 and its peak memory, predicted from smoke runs (see :mod:`convbias.estimate`); chapters without
  a smoke run are listed with how long theirs would take, and run only with ``--run-missing``.
- ``full-profile [CHAPTERS] [--out results/full-profile] [--records book/full_profile]``: run
  chapters (default: all seven) at their full profile, one after another, without the cache; write
  each run's record (device, threads, commit, date, measured CPU and wall seconds, peak memory, every
  glued value and check) to ``book/full_profile/<chapter>.json`` and the reproducibility page's
  full-profile parts. ``--from-results DIR [--time FILE] [--commit SHA] [--date D]`` records a run
  made before instead (``FILE``: the ``/usr/bin/time -v`` report of a run that did not measure itself).
- ``cache [--prune | --clear] [--dry-run]``: where the results cache is and how large; ``--prune``
  deletes the results of older versions of the code, ``--clear`` all of them (only the cache's
  own folders and files, each named before it goes; never in ``/``, the home folder or a checkout).
- ``student OUT_DIR [--force]``: write every notebook without solutions or outputs (never into
  ``book/``; over existing files only with ``--force``).
- ``colab [OUT_DIR] [--check] [--no-solutions]``: write the Colab copies of the chapters
  (default ``colab/book/``, what the book's Colab button opens): exercises numbered plain
  Markdown, solutions hidden in ``<details>`` (or left out), citations and cross-references
  readable; ``--check`` writes nothing and fails when a copy is stale.
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
    (``CONVBIAS_DEBUG=1`` shows the traceback instead).

    What a command sets in the environment for its runs (``--profile``, ``--seed``) is
    undone when it returns, so a caller running ``main`` in its own process (a test, a
    notebook) keeps its profile and seed.
    """
    saved = dict(os.environ)
    try:
        return _main(argv)
    except _user_errors() as exc:
        if os.environ.get("CONVBIAS_DEBUG"):
            raise
        print(f"python -m convbias: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        _restore_environment(saved)


def _restore_environment(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can cause (bad chapter, profile, folder); bugs still show their traceback."""
    from .cache import UnsafeCacheRoot
    from .config import MissingExtra
    from .data.download import DownloadError

    return (
        UserError,
        MissingExtra,
        UnsafeCacheRoot,
        DownloadError,
        OSError,  # a missing, read-only or full folder (FileNotFoundError, PermissionError, ...)
        ValueError,
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _version() -> str:
    """The running package's version (``convbias.__version__``, the one place it is written)."""
    from . import __version__

    return __version__


#: the help of every --profile option
PROFILE_HELP = (
    "quick (a 2-core CPU in minutes), full (paper scale, for a GPU) or auto (full on a "
    "CUDA GPU, quick otherwise); default: $CONVBIAS_PROFILE, else auto"
)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: every option has a help text, in plain words."""
    parser = argparse.ArgumentParser(
        prog="python -m convbias",
        description="Run, check and hand out the chapters of the book 'Implicit bias in "
        "convolutional networks' (from a checkout of the book; cache works anywhere).",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"convbias {_version()}",
        help="print the package's version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a chapter headless and save its results")
    run.add_argument("chapter", help="chapter number (1, 02, ...) or notebook name")
    run.add_argument("--profile", choices=["quick", "full", "auto"], help=PROFILE_HELP)
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the chapters' results (default results, or results/smoke for a smoke run)",
    )
    run.add_argument(
        "--no-cache", action="store_true", help="recompute even if stored results exist"
    )
    run.add_argument(
        "--smoke",
        action="store_true",
        help="full sizes, a few steps per training loop, checks reported not judged, no cache; "
        "writes the measured costs to cost.json (see the estimate command)",
    )
    run.add_argument(
        "--trace",
        action="store_true",
        help="no cache; write each code cell's wall time and the costliest operators "
        "(sampled with torch.profiler by tools/profiling.py of a checkout) to profile.txt",
    )
    _add_seed_option(run)
    _add_verify_command(sub)
    _add_estimate_parser(sub)
    _add_full_profile_command(sub)
    store = sub.add_parser("cache", help="show (or prune) the results cache")
    store.add_argument(
        "--prune",
        action="store_true",
        help="delete the results of older versions of the code",
    )
    store.add_argument(
        "--clear", action="store_true", help="delete every stored result"
    )
    store.add_argument(
        "--dry-run",
        action="store_true",
        help="with --prune/--clear: only list what would go",
    )
    student = sub.add_parser("student", help="write notebooks without solutions")
    student.add_argument(
        "out_dir", type=Path, help="folder for the notebooks (never the book's own)"
    )
    student.add_argument(
        "--force", action="store_true", help="overwrite notebooks already in OUT_DIR"
    )
    colab = sub.add_parser(
        "colab", help="write the Colab copies of the chapters (plain Markdown)"
    )
    colab.add_argument(
        "out_dir",
        type=Path,
        nargs="?",
        default=None,
        help="folder for the copies (default: colab/book in the checkout)",
    )
    colab.add_argument(
        "--check", action="store_true", help="write nothing; fail when a copy is stale"
    )
    colab.add_argument(
        "--no-solutions",
        action="store_true",
        help="leave the exercise solutions out (students)",
    )
    return parser


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "cache":
        return _cache_command(args.prune, args.clear, args.dry_run)
    _require_cli()
    if args.command in ("run", "verify", "estimate"):
        from .runner import check_environment

        _apply_seed(args)
        if getattr(args, "profile", None):
            os.environ["CONVBIAS_PROFILE"] = args.profile
        check_environment()  # a bad CONVBIAS_* variable: one line, before anything runs
    if args.command == "estimate":
        return _estimate_command(args)
    if args.command == "verify":
        return _verify_command(args)
    if args.command == "full-profile":
        return _full_profile_command(args)
    _apply_seed(args)

    from . import notebooks

    root = notebooks.book_root()
    if args.command == "run":
        from .config import smoke
        from .smoke import DEFAULT_FOLDER

        nb = notebooks.chapter_notebook(root, args.chapter)
        smoke_run = args.smoke or smoke()
        out = args.out or (DEFAULT_FOLDER if smoke_run else Path("results"))
        if args.smoke:
            return _smoke_command(nb, out / nb.stem)
        if smoke_run:  # CONVBIAS_SMOKE=1 in the environment: a smoke run in a kernel
            from .smoke import refuse_real_results

            refuse_real_results(out / nb.stem)
        if args.trace:
            summary = notebooks.run_profiled(nb, out / nb.stem)
            print(f"{nb.stem}: operator profile -> {summary['profile']}")
        else:
            summary = notebooks.run_chapter(
                nb, out / nb.stem, use_cache=not args.no_cache
            )
        if summary["cached"]:
            print(
                f"{nb.stem}: unchanged since its last run (same profile, device, data and code): "
                "results restored from the cache"
            )
        print(
            f"{nb.stem}{' (smoke)' if summary.get('smoke') else ''}: {run_status(summary)}; "
            f"{summary['seconds']} s; {len(summary['figures'])} figures, "
            f"{len(summary['values'])} values -> {out / nb.stem}"
        )
        return 0 if summary["checks_passed"] is True else 1
    if args.command == "student":
        return _student_command(root, args.out_dir, args.force)
    if args.command == "colab":
        return _colab_command(root, args.out_dir, args.check, not args.no_solutions)
    return 2  # argparse allows no other command


#: what the commands that read or run notebooks import (the ``cli`` extra)
CLI_MODULES = ("nbformat", "nbclient", "ipykernel", "yaml")


def _require_cli() -> None:
    """A one-line error naming ``convbias[cli]`` when a package of the Jupyter runtime is missing."""
    from .config import require_extra

    for module in CLI_MODULES:
        require_extra(module, "cli", "python -m convbias (its notebook commands)")


def run_status(summary: dict) -> str:
    """What a run's summary says, computed from it: where it stopped, which checks failed, or all passed."""
    from .checks import summary_line

    if summary.get("failed_cell") is not None:
        return f"FAILED at cell {summary['failed_cell']}: {summary.get('error')}"
    line = summary_line(summary.get("checks", []))
    if summary.get("checks_failed") and not summary.get("checks_judged", True):
        line += " (CONVBIAS_CHECKS=report: shown, not judged; the run did not pass)"
    return line


def _student_command(root: Path, out_dir: Path, force: bool) -> int:
    from . import notebooks

    written, total = notebooks.student_edition(root, out_dir, force=force)
    print(f"wrote {len(written)} notebooks without {total} solutions to {out_dir}")
    return 0


def _colab_command(
    root: Path, out_dir: Path | None, check: bool, solutions: bool
) -> int:
    from . import notebooks

    changed = notebooks.colab_edition(root, out_dir, solutions=solutions, check=check)
    where = out_dir or root / notebooks.COLAB_DIR / "book"
    if check:
        if changed:
            print(
                f"stale Colab copies in {where}: {', '.join(p.name for p in changed)}: run python -m convbias colab",
                file=sys.stderr,
            )
            return 1
        print(f"the Colab copies in {where} are up to date")
        return 0
    print(
        f"wrote {len(changed)} Colab copies to {where} ({len(notebooks.toc_notebooks(root)) - len(changed)} unchanged)"
    )
    return 0


def _add_seed_option(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--seed",
        type=_seed,
        default=None,
        metavar="S",
        help="base seed of the chapter (default: the chapter's own); sets CONVBIAS_SEED",
    )


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"a seed is a non-negative integer, got {text!r}"
        )
    return value


def _apply_seed(args: argparse.Namespace) -> None:
    """``--seed S`` sets ``CONVBIAS_SEED`` (idempotent)."""
    if getattr(args, "seed", None) is not None:
        from .config import SEED_VAR

        os.environ[SEED_VAR] = str(args.seed)


def _add_verify_command(sub) -> None:
    verify = sub.add_parser(
        "verify", help="run chapters over several seeds and tabulate their checks"
    )
    verify.add_argument(
        "chapters", nargs="*", help="chapter numbers or names (default: every chapter)"
    )
    verify.add_argument(
        "--seeds", default="0-4", help="base seeds, e.g. 0-4 or 0,3,7 (default 0-4)"
    )
    verify.add_argument(
        "--profile", choices=["quick", "full", "auto"], help=PROFILE_HELP
    )
    verify.add_argument(
        "--out",
        type=Path,
        default=Path("results/verify"),
        help="folder for each run's results",
    )
    verify.add_argument(
        "--table",
        type=Path,
        default=None,
        help="where to write the table, without suffix: TABLE.md and TABLE.json "
        "(default OUT/robustness)",
    )
    verify.add_argument(
        "--no-cache", action="store_true", help="recompute even if stored results exist"
    )


def _verify_command(args: argparse.Namespace) -> int:
    from . import notebooks, verify
    from .config import smoke

    seeds = verify.parse_seeds(args.seeds)  # a bad range: one line (ValueError), exit 2
    if smoke():
        raise UserError(
            "verify tabulates real runs, and CONVBIAS_SMOKE is on (a smoke run's numbers mean "
            "nothing): unset it"
        )
    root = notebooks.book_root()
    chosen = (
        [notebooks.chapter_notebook(root, c) for c in args.chapters]
        if args.chapters
        else [nb for nb in notebooks.toc_notebooks(root) if nb.stem[:2].isdigit()]
    )
    payload = verify.verify(
        chosen, seeds, args.out, table=args.table, use_cache=not args.no_cache
    )
    table = args.table or args.out / "robustness"
    bad = [r for r in payload["checks"] if r["passed"] < r["seeds"]]
    stopped = verify.stopped_runs(payload)
    print(
        f"{len(payload['checks'])} checks over seeds {args.seeds}: "
        f"{len(payload['checks']) - len(bad)} passed on every seed"
        + (
            f", {len(bad)} did not ({', '.join(r['check'] for r in bad)})"
            if bad
            else ""
        )
        + (
            f"; {len(stopped)} run(s) did not finish ("
            + ", ".join(f"{r['chapter']} seed {r['seed']}" for r in stopped)
            + ")"
            if stopped
            else ""
        )
        + f" -> {table.with_suffix('.md')}"
    )
    return 1 if bad or stopped or not payload["checks"] else 0


def _add_full_profile_command(sub) -> None:
    fp = sub.add_parser(
        "full-profile",
        help="run chapters at their full profile one after another and record each run",
    )
    fp.add_argument(
        "chapters", nargs="*", help="chapter numbers or names (default: every chapter)"
    )
    fp.add_argument(
        "--out",
        type=Path,
        default=Path("results/full-profile"),
        help="folder for each run's files (default results/full-profile)",
    )
    fp.add_argument(
        "--records",
        type=Path,
        default=None,
        help="folder of the records (default: book/full_profile of the checkout)",
    )
    fp.add_argument(
        "--from-results",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the run already made in DIR (its results.json) instead of running",
    )
    fp.add_argument(
        "--time",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --from-results: the /usr/bin/time -v report of that run (record it on "
        "the machine that made the run: its downloaded data are listed from there)",
    )
    fp.add_argument(
        "--commit", default=None, help="with --from-results: the run's commit"
    )
    fp.add_argument(
        "--date", default=None, help="with --from-results: the run's date (YYYY-MM-DD)"
    )


def _full_profile_command(args: argparse.Namespace) -> int:
    from . import notebooks, report

    root = notebooks.book_root()
    records = args.records or root / "book" / "full_profile"
    page = root / "book" / "reproducibility.md"
    if args.from_results is not None:
        if args.chapters:
            raise UserError("--from-results records one run: name no chapter")
        from .runner import data_source

        # a run that did not list its downloaded data: this machine's, where it was made
        record = report.full_result_record(
            args.from_results / "results.json",
            args.time,
            args.commit,
            args.date,
            downloaded=data_source(),
        )
        if "downloaded_data" not in record["sources"].get("data", ""):
            record["sources"]["data"] = (
                "the data cache of the machine that made the record (the run did not list it)"
            )
        written = [report.write_full_result(record, records)]
        failed = [] if record["checks_passed"] else [record["chapter"]]
    else:
        if args.time or args.commit or args.date:
            raise UserError("--time, --commit and --date go with --from-results")
        os.environ["CONVBIAS_PROFILE"] = "full"
        chosen = (
            [notebooks.chapter_notebook(root, c) for c in args.chapters]
            if args.chapters
            else [nb for nb in notebooks.toc_notebooks(root) if nb.stem[:2].isdigit()]
        )
        print(
            f"running the full profile of {len(chosen)} chapter(s), one after another, "
            f"without the cache: {', '.join(nb.stem for nb in chosen)}",
            flush=True,
        )
        written, failed = [], []
        for nb in chosen:
            notebooks.run_chapter(nb, args.out / nb.stem, use_cache=False)
            record = report.full_result_record(args.out / nb.stem / "results.json")
            written.append(report.write_full_result(record, records))
            if not record["checks_passed"]:
                failed.append(nb.stem)
            print(f"{nb.stem}: {report.run_line(record)} -> {written[-1]}", flush=True)
    if (
        page.exists()
        and records.resolve() == (root / "book" / "full_profile").resolve()
    ):
        report.update_full_results_section(page, records)
        print(f"updated {page}")
    print(
        f"{len(written)} record(s) written"
        + (f"; checks did not pass in {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _smoke_command(nb: Path, out: Path) -> int:
    from .smoke import run_smoke

    cost = run_smoke(nb, out)
    gb = 2**30
    status = (
        "every cell ran"
        if cost["completed"]
        else f"FAILED at cell {cost['failed_cell']}: {cost['error']}"
    )
    reported = (
        f"; {len(cost['checks_reported'])} failed check(s) reported, not judged (a smoke run is "
        "never a pass)"
        if cost["checks_reported"]
        else ""
    )
    print(
        f"{nb.stem} (smoke, {cost['profile']} profile, {cost['smoke_steps']} steps per loop): {status}{reported}; "
        f"{cost['wall_seconds']:.0f} s; peak host memory {cost['peak_host_bytes'] / gb:.2f} GB, "
        f"peak tensor memory {cost['peak_tensor_bytes'] / gb:.2f} GB -> {out / 'cost.json'}"
    )
    return 0 if cost["completed"] else 1


def _add_estimate_parser(sub) -> None:
    est = sub.add_parser(
        "estimate",
        help="time and memory of each chapter on a Colab T4 and an H100, "
        "from full-size smoke runs",
    )
    est.add_argument(
        "chapters", nargs="*", help="chapter numbers (default: every chapter)"
    )
    est.add_argument(
        "--profile",
        choices=["quick", "full"],
        default="full",
        help="the profile whose time and memory are estimated (default: full)",
    )
    est.add_argument(
        "--out",
        type=Path,
        default=Path("results") / "smoke",
        help="where the smoke runs' cost.json live (default results/smoke, never a real run's folder)",
    )
    est.add_argument(
        "--run-missing",
        action="store_true",
        help="run the smoke runs that are missing (without it, estimate only says which and how long)",
    )
    est.add_argument(
        "--rerun",
        action="store_true",
        help="repeat every smoke run, even where cost.json exists",
    )
    est.add_argument(
        "--save-budget",
        action="store_true",
        help="write the minutes per chapter the set-up cells announce (the package's budget.json)",
    )


def _estimate_command(args) -> int:
    from . import estimate, notebooks

    root = notebooks.book_root()
    chapters = [
        notebooks.chapter_notebook(root, c) for c in args.chapters
    ] or estimate.chapters(root)
    for nb in chapters:  # before anything runs
        if estimate.holds_real_results(args.out / nb.stem):
            raise UserError(
                f"{args.out / nb.stem} holds the real results of {nb.stem}: estimate writes its "
                "smoke runs elsewhere (give another --out)"
            )
    stored = {
        nb: estimate.stored_cost(args.out / nb.stem, args.profile) for nb in chapters
    }
    missing = (
        list(chapters) if args.rerun else [nb for nb, c in stored.items() if c is None]
    )
    if missing and not (args.run_missing or args.rerun):
        have = [c for c in stored.values() if c is not None]
        if have:
            print(estimate.report(have))
        print(estimate.plan(missing, args.out))
        return 1
    for i, nb in enumerate(missing, 1):
        print(
            f"smoke run {i}/{len(missing)}: {nb.stem} -> {args.out / nb.stem}",
            flush=True,
        )
        stored[nb] = estimate.smoke_cost(
            nb, args.out / nb.stem, args.profile, rerun=True
        )
    costs = [stored[nb] for nb in chapters]
    print(estimate.report(costs))
    if args.save_budget:
        print(f"wrote {estimate.save_budget(costs)}")
    return 0 if all(c["completed"] for c in costs) else 1


def _cache_command(prune: bool, clear: bool, dry_run: bool = False) -> int:
    from .cache import ResultCache, code_fingerprint

    cache = ResultCache(active=True)
    if prune or clear:
        freed = cache.prune(keep_current=not clear, dry_run=dry_run, report=print)
        verb = "would delete" if dry_run else "deleted"
        print(f"{verb} {freed / 2**20:.1f} MB of stored results from {cache.root}")
    usage = cache.usage()
    if not usage:
        print(f"no stored results in {cache.root}")
    for fingerprint, (entries, size) in usage.items():
        note = (
            " (this code)"
            if fingerprint == code_fingerprint()
            else " (older code: --prune deletes it)"
        )
        print(
            f"{cache.root / fingerprint}: {entries} results, {size / 2**20:.1f} MB{note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
