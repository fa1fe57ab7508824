"""Operations on the book's notebooks: the Colab set-up cell, student versions, headless runs.

- :func:`sync_colab_cells` puts the same first code cell in every chapter: on Colab
  only, it installs the book's tagged release (the repository named in
  ``_config.yml`` at the tag ``v<convbias.__version__>``), leaving Colab's own torch
  alone, and offers in one line to keep the results cache on Google Drive.
- :func:`student_version` removes the hidden solutions (``{solution}`` blocks) and
  all outputs, for handing notebooks to students; ``student_edition`` does it for every
  chapter, never into the book's own folders nor over existing files unless forced.
- :func:`~convbias.runner.run_headless` / :func:`~convbias.runner.run_chapter` execute a
  chapter in a Jupyter kernel, saving its figures, glued values and checks.

Used by the book's tooling (the command line, ``make student``), not by a chapter's code.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

COLAB_TAG = "colab-setup"
COLAB_TAGS = [COLAB_TAG, "remove-cell"]  # remove-cell: not on the HTML page
SOLUTION_BLOCK = re.compile(r"^(:{3,}|`{3,})\{solution\}.*?^\1[ \t]*$\n?", re.S | re.M)


# ----------------------------------------------------------------------------- the book
def book_root(start: str | Path | None = None) -> Path:
    """The folder holding ``_toc.yml``, searched upwards from ``start`` (default: cwd)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder
    raise FileNotFoundError(f"no _toc.yml in {here} or above: run this from a checkout of the book")


def toc_notebooks(root: Path) -> list[Path]:
    """Notebooks named in ``_toc.yml``, in book order."""
    import yaml

    files: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((root / "_toc.yml").read_text()))
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def chapter_notebook(root: Path, chapter: str) -> Path:
    """The notebook of a chapter named by number (``1``, ``01``) or file stem."""
    notebooks = toc_notebooks(root)
    for nb in notebooks:
        if nb.stem == chapter or (chapter.isdigit() and nb.stem.startswith(f"{int(chapter):02d}_")):
            return nb
    names = ", ".join(nb.stem for nb in notebooks)
    raise ValueError(f"no chapter {chapter!r} in _toc.yml; chapters: {names}")


def repository_url(root: Path) -> str:
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    try:
        return config["repository"]["url"].rstrip("/")
    except (KeyError, TypeError, AttributeError):
        raise ValueError("_config.yml has no repository: url: entry") from None


# ----------------------------------------------------------------------------- Colab cell
DRIVE_RESULTS = "/content/drive/MyDrive/convbias-results"


def release_spec(repo_url: str, version: str | None = None) -> str:
    """What pip installs for the book's tagged release: ``git+<repository>@v<version>``."""
    if version is None:
        from . import __version__ as version
    return f"git+{repo_url.rstrip('/')}@v{version}"


def colab_cell_source(repo_url: str, version: str | None = None) -> str:
    """Source of the set-up cell: a no-op except on Colab, where it installs the tagged release.

    ``%pip`` installs into the running kernel; one line switches the results cache to
    Google Drive, so that a disconnected runtime resumes where it stopped.
    """
    return (
        "# On Google Colab only: install this book's release (Colab's own torch is kept).\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    RELEASE = \"{release_spec(repo_url, version)}\"\n"
        "    %pip install -q {RELEASE}\n"
        "    KEEP_RESULTS_ON_DRIVE = False  # True: results on Google Drive survive a disconnect\n"
        "    if KEEP_RESULTS_ON_DRIVE:\n"
        "        import os\n"
        "\n"
        "        from google.colab import drive\n"
        "\n"
        "        drive.mount(\"/content/drive\")\n"
        f"        os.environ[\"CONVBIAS_RESULTS\"] = \"{DRIVE_RESULTS}\""
    )


def sync_colab_cells(root: Path, check: bool = False) -> list[Path]:
    """Make the first code cell of every chapter the Colab set-up cell.

    Returns the notebooks that differed; with ``check`` nothing is written.
    """
    import nbformat

    source = colab_cell_source(repository_url(root))
    changed = []
    for path in toc_notebooks(root):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if COLAB_TAG in c.get("metadata", {}).get("tags", [])]
        if (len(tagged) == 1 and tagged[0].source == source and _first_code(nb) is tagged[0]
                and tagged[0].metadata.get("tags") == COLAB_TAGS):
            continue
        changed.append(path)
        if check:
            continue
        nb.cells = [c for c in nb.cells if c not in tagged]
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(COLAB_TAGS)})
        cell.id = COLAB_TAG  # a fixed id keeps the file stable across syncs
        first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        nb.cells.insert(first, cell)
        nbformat.write(nb, path)
    return changed


def _first_code(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


# ----------------------------------------------------------------------------- student version
def strip_solutions(markdown: str) -> str:
    """Remove ``{solution}`` directive blocks (colon or backtick fences) from MyST markdown."""
    return SOLUTION_BLOCK.sub("", markdown)


def student_version(src: Path, dst: Path, force: bool = False) -> int:
    """Write ``src`` without solutions or outputs to ``dst``; returns the number of solutions removed.

    Refuses (``FileExistsError``) to overwrite an existing ``dst`` unless ``force``,
    and never writes over ``src`` itself.
    """
    import nbformat

    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise FileExistsError(f"{dst} is the notebook itself: write the student version somewhere else")
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists: pass --force (force=True) to overwrite it")
    nb = nbformat.read(src, as_version=4)
    removed = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            removed += len(SOLUTION_BLOCK.findall(cell.source))
            cell.source = strip_solutions(cell.source)
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells = [c for c in nb.cells if c.cell_type != "markdown" or c.source.strip()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    nbformat.write(nb, tmp)
    tmp.replace(dst)  # an interrupted write leaves no half-written notebook under the final name
    return removed


def student_edition(root: Path, out_dir: Path, force: bool = False) -> tuple[list[Path], int]:
    """Every chapter of the book at ``root`` without solutions, in ``out_dir``; returns (files, solutions removed).

    Refuses to write into the book's own folders (``book/`` or any folder holding
    one of its notebooks) and, unless ``force``, over notebooks already in ``out_dir``;
    both checks run before anything is written.
    """
    sources = toc_notebooks(root)
    out = Path(out_dir).resolve()
    book_dirs = {(Path(root) / "book").resolve(), *(nb.parent.resolve() for nb in sources)}
    for folder in book_dirs:
        if out == folder or folder in out.parents:
            raise ValueError(f"{out_dir} is inside the book's own folder {folder}: its notebooks would lose "
                                  "their solutions. Give a folder outside the book, e.g. handout/")
    targets = [out / nb.name for nb in sources]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"{out_dir} already holds {len(existing)} of the notebooks ({existing[0].name}, ...): "
                              "pass --force to overwrite them")
    total = sum(student_version(nb, t, force=force) for nb, t in zip(sources, targets))
    return targets, total


# ----------------------------------------------------------------------------- headless runs
from .runner import run_chapter, run_headless, run_profiled  # noqa: E402,F401  (their home is runner)
