"""Turn a built book into the published site (``make site``).

    python tools/publish.py downloads _build          # executed notebooks as the pages' downloads
    python tools/publish.py student-config _build/student/_config.yml  # for the student build
    python tools/publish.py student _build/html/student  # the student edition beside the site

``downloads``: the page's ``.ipynb`` button serves ``_build/html/_sources/<page>.ipynb``,
a copy of the source notebook, which is committed without outputs. This replaces each
copy by the notebook the build executed (``_build/jupyter_execute/<page>.ipynb``),
figures and numbers included, and fails if a page has no executed notebook.

``student-config``: ``_config.yml`` with sphinx-exercise's ``hide_solutions`` switched on,
executing through the main build's notebook cache (so nothing runs twice), for
``jupyter-book build . --config <it> --path-output _build/student``.

``student``: the student build's HTML (when given with ``--html``) and every notebook
of ``_toc.yml`` without the exercise solutions and without outputs, one by one and
as ``convbias-student.zip``, with an ``index.html`` that lists them, to publish under
``<site>/student/``.
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
import zipfile
from pathlib import Path

from convbias import notebooks


def executed_downloads(build: Path) -> list[Path]:
    """Copy ``build/jupyter_execute/**.ipynb`` over their ``build/html/_sources`` copies; returns them."""
    sources, executed = build / "html" / "_sources", build / "jupyter_execute"
    pages = sorted(sources.rglob("*.ipynb"))
    if not pages:
        raise FileNotFoundError(
            f"no notebooks in {sources}: build the book first (make book)"
        )
    missing = [p for p in pages if not (executed / p.relative_to(sources)).exists()]
    if missing:
        raise FileNotFoundError(
            f"not executed by the build: {', '.join(str(p.relative_to(sources)) for p in missing)}"
        )
    for page in pages:
        shutil.copyfile(executed / page.relative_to(sources), page)
    return pages


def student_config(root: Path, out: Path) -> Path:
    """Write the student build's configuration to ``out``: solutions hidden, the main build's cache."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    config.setdefault("execute", {})["cache"] = str(
        (root / "_build" / ".jupyter_cache").resolve()
    )
    config["title"] = f"{config.get('title', 'Book')} (student edition)"
    local = config["sphinx"].get("local_extensions") or {}
    for (
        name,
        folder,
    ) in local.items():  # relative to the configuration file, which moves
        local[name] = str((root / folder).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def strip_sources(sources: Path) -> int:
    """Remove the solutions from the page sources a site serves for download; returns the files changed."""
    changed = 0
    for path in sorted(sources.rglob("*")):
        if path.suffix == ".ipynb":
            stripped = path.with_name(
                path.stem + ".student.ipynb"
            )  # a copy in the built site
            notebooks.student_version(path, stripped, force=True)
            stripped.replace(path)
            changed += 1
        elif path.suffix == ".md":
            text = path.read_text(encoding="utf-8")
            if notebooks.strip_solutions(text) != text:
                path.write_text(notebooks.strip_solutions(text), encoding="utf-8")
                changed += 1
    return changed


def unexecuted_config(root: Path, out: Path) -> Path:
    """Write ``_config.yml`` with notebook execution off to ``out`` (a fast build of the pages' layout).

    ``jupyter-book build . --config <out> --path-output <folder>`` then renders every
    page from the notebooks' saved outputs (none: they are committed without).
    """
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
    # nothing was executed, so nothing was glued: only these warnings are expected
    sphinx["suppress_warnings"] = [
        *sphinx.get("suppress_warnings", []),
        "mystnb.glue",
        "mystnb.glue_ref",
    ]
    local = config.setdefault("sphinx", {}).get("local_extensions") or {}
    for name, folder in local.items():
        local[name] = str((root / folder).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


MARK = ".student-edition"  # names a folder this script wrote (and may replace)


def student_edition(
    root: Path, out: Path, html_dir: Path | None = None
) -> tuple[int, int]:
    """Write the student notebooks, their zip and an index page to ``out``; returns (notebooks, solutions).

    With ``html_dir`` (the student build's HTML) its pages come first and the notebooks
    go to ``out/notebooks/``.
    """
    if out.exists():
        if not (out / MARK).exists():
            raise FileExistsError(
                f"{out} exists and is not a student edition written by this script"
            )
        shutil.rmtree(out)
    if html_dir is not None:
        shutil.copytree(html_dir, out)
        strip_sources(out / "_sources")
        page = out / "notebooks"
    else:
        page = out
    (out / MARK).parent.mkdir(parents=True, exist_ok=True)
    (out / MARK).write_text("written by tools/publish.py student\n")
    out = page
    out.mkdir(parents=True, exist_ok=True)
    pages, removed = notebooks.toc_notebooks(root), 0
    index = notebooks.BookIndex(
        root
    )  # plain Markdown as on Colab, without the solutions
    for nb in pages:
        removed += notebooks.colab_version(nb, out / nb.name, index, solutions=False)[
            "solutions"
        ]
    with zipfile.ZipFile(
        out / "convbias-student.zip", "w", zipfile.ZIP_DEFLATED
    ) as archive:
        for nb in pages:
            archive.write(out / nb.name, nb.name)
    items = "\n".join(
        f'<li><a href="{html.escape(nb.name)}" download>{html.escape(nb.stem)}</a></li>'
        for nb in pages
    )
    (out / "index.html").write_text(
        "<!doctype html><meta charset=utf-8><title>Student edition</title>\n"
        "<h1>Student edition</h1>\n<p>The chapters as notebooks without the exercise solutions and "
        "without outputs, to run and answer yourself. "
        '<a href="convbias-student.zip" download>All of them (zip)</a>.</p>\n'
        f'<ul>\n{items}\n</ul>\n<p><a href="../index.html">Back to the book</a></p>\n',
        encoding="utf-8",
    )
    return len(pages), removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/publish.py", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("downloads").add_argument("build", type=Path)
    sub.add_parser("student-config").add_argument("out", type=Path)
    sub.add_parser("unexecuted-config").add_argument("out", type=Path)
    student = sub.add_parser("student")
    student.add_argument("out", type=Path)
    student.add_argument("--html", type=Path, help="the student build's HTML folder")
    args = parser.parse_args(argv)
    if args.command == "downloads":
        pages = executed_downloads(args.build)
        print(f"{len(pages)} page downloads are now the executed notebooks")
    elif args.command == "student-config":
        print(
            f"student build configuration -> {student_config(notebooks.book_root(), args.out)}"
        )
    elif args.command == "unexecuted-config":
        print(
            f"unexecuted build configuration -> {unexecuted_config(notebooks.book_root(), args.out)}"
        )
    else:
        count, removed = student_edition(notebooks.book_root(), args.out, args.html)
        print(
            f"student edition: {count} notebooks without {removed} solutions -> {args.out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
