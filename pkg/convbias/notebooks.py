"""Operations on the book's notebooks: the Colab set-up cell, student versions, headless runs.

- :func:`sync_colab_cells` puts the same first code cell in every chapter: on Colab
  only, it installs the package with the chapters' extra from the repository named in
  ``_config.yml`` (:func:`install_ref`: the tag ``v<convbias.__version__>`` of a release,
  ``main`` for a development version), leaving Colab's own torch and Jupyter alone,
  stops in one line if that fails, and offers to keep the results cache on Google Drive.
- :func:`student_version` removes the hidden solutions (``{solution}`` blocks) and
  all outputs; ``student_edition`` writes every chapter for handing to students as its
  Colab copy without solutions, never into the book's own folders nor over existing
  files unless forced.
- :func:`colab_version` / :func:`colab_edition`: the Colab copies (``colab/book/``),
  MyST turned into plain Markdown (numbered exercises, hidden solutions, readable
  citations, cross-references as text or links to the online book).
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
    raise FileNotFoundError(
        f"no _toc.yml in {here} or above: run this from a checkout of the book"
    )


def toc_files(root: Path) -> list[str]:
    """Every page ``_toc.yml`` names (its root, chapters, appendices), in book order, without suffix."""
    import yaml

    files: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    files.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((root / "_toc.yml").read_text()))
    return files


def toc_notebooks(root: Path) -> list[Path]:
    """Notebooks named in ``_toc.yml``, in book order."""
    return [
        root / f"{f}.ipynb" for f in toc_files(root) if (root / f"{f}.ipynb").exists()
    ]


def chapter_notebook(root: Path, chapter: str) -> Path:
    """The notebook of a chapter named by number (``1``, ``01``) or file stem."""
    notebooks = toc_notebooks(root)
    for nb in notebooks:
        if nb.stem == chapter or (
            chapter.isdigit() and nb.stem.startswith(f"{int(chapter):02d}_")
        ):
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


def install_ref(version: str | None = None) -> str:
    """The git reference the Colab cell installs: ``v<version>`` for a release, ``main`` before it.

    A development version (``X.Y.Z.devN``, PEP 440) has no tag yet, so its notebooks
    install the repository's ``main``, which is what the Colab button opens; a release
    version is tagged ``v<version>`` by the release recipe (README) before it is published.
    """
    if version is None:
        from . import __version__ as version
    return "main" if ".dev" in version else f"v{version}"


def release_spec(repo_url: str, version: str | None = None) -> str:
    """What the Colab cell's pip installs: the package with the chapters' extra, from git."""
    return f"convbias[chapters] @ git+{repo_url.rstrip('/')}@{install_ref(version)}"


def colab_cell_source(repo_url: str, version: str | None = None) -> str:
    """Source of the set-up cell: a no-op except on Colab, where it installs the package.

    It installs :func:`release_spec` with pip in a subprocess, leaving what Colab already
    has alone (its torch, IPython, ipykernel, ipywidgets and traitlets satisfy the
    package's floors), and stops the notebook with a one-line error when the install
    fails or installs another version than the notebook's (``VERSION``). One line
    switches the results cache to Google Drive, so that a disconnected runtime resumes
    where it stopped.
    """
    if version is None:
        from . import __version__ as version
    return (
        "# On Google Colab only: install the book's package and what the chapters use\n"
        "# (Colab's torch and Jupyter stay as they are); a failed install stops here.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        "    from importlib.metadata import version\n"
        "\n"
        "    class SetupError(Exception):\n"
        "        def _render_traceback_(self):  # one line, no traceback\n"
        '            return [f"SetupError: {self}"]\n'
        "\n"
        f'    VERSION = "{version}"  # the package version of this notebook\n'
        f'    REPOSITORY = "{repo_url.rstrip("/")}"\n'
        f'    PACKAGE = f"convbias[chapters] @ git+{{REPOSITORY}}@{install_ref(version)}"\n'
        "    pip = subprocess.run(\n"
        '        [sys.executable, "-m", "pip", "install", "-q", PACKAGE],\n'
        "        capture_output=True,\n"
        "        text=True,\n"
        "    )\n"
        "    if pip.returncode != 0:\n"
        '        errors = [l for l in pip.stderr.splitlines() if "error" in l.lower()]\n'
        "        why = errors[0].strip() if errors else pip.stderr.strip()[-300:]\n"
        '        raise SetupError(f"pip install {PACKAGE!r} failed: {why}")\n'
        '    if version("convbias") != VERSION:\n'
        "        raise SetupError(\n"
        '            f"this notebook is for convbias {VERSION}, pip installed "\n'
        "            f\"{version('convbias')}: open the chapter again from the book\"\n"
        "        )\n"
        "    KEEP_RESULTS_ON_DRIVE = False  # True: results on Google Drive survive a disconnect\n"
        "    if KEEP_RESULTS_ON_DRIVE:\n"
        "        import os\n"
        "\n"
        "        from google.colab import drive\n"
        "\n"
        '        drive.mount("/content/drive")\n'
        f'        os.environ["CONVBIAS_RESULTS"] = "{DRIVE_RESULTS}"'
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
        tagged = [
            c for c in nb.cells if COLAB_TAG in c.get("metadata", {}).get("tags", [])
        ]
        if (
            len(tagged) == 1
            and tagged[0].source == source
            and _first_code(nb) is tagged[0]
            and tagged[0].metadata.get("tags") == COLAB_TAGS
        ):
            continue
        changed.append(path)
        if check:
            continue
        nb.cells = [c for c in nb.cells if c not in tagged]
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(COLAB_TAGS)})
        cell.id = COLAB_TAG  # a fixed id keeps the file stable across syncs
        first = next(
            (i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells)
        )
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
        raise FileExistsError(
            f"{dst} is the notebook itself: write the student version somewhere else"
        )
    if dst.exists() and not force:
        raise FileExistsError(
            f"{dst} exists: pass --force (force=True) to overwrite it"
        )
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
    tmp.replace(
        dst
    )  # an interrupted write leaves no half-written notebook under the final name
    return removed


def student_edition(
    root: Path, out_dir: Path, force: bool = False
) -> tuple[list[Path], int]:
    """Every chapter of the book at ``root`` without solutions, in ``out_dir``; returns (files, solutions removed).

    The copies are the Colab copies (:func:`colab_version`) without the solutions:
    plain Markdown, exercises numbered as in the book, outputs cleared.

    Refuses to write into the book's own folders (``book/`` or any folder holding
    one of its notebooks) and, unless ``force``, over notebooks already in ``out_dir``;
    both checks run before anything is written.
    """
    sources = toc_notebooks(root)
    out = Path(out_dir).resolve()
    book_dirs = {
        (Path(root) / "book").resolve(),
        *(nb.parent.resolve() for nb in sources),
    }
    for folder in book_dirs:
        if out == folder or folder in out.parents:
            raise ValueError(
                f"{out_dir} is inside the book's own folder {folder}: its notebooks would lose "
                "their solutions. Give a folder outside the book, e.g. handout/"
            )
    targets = [out / nb.name for nb in sources]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out_dir} already holds {len(existing)} of the notebooks ({existing[0].name}, ...): "
            "pass --force to overwrite them"
        )
    index = BookIndex(
        root
    )  # plain Markdown as on Colab: numbered exercises, readable citations
    total = sum(
        colab_version(nb, t, index, solutions=False)["solutions"]
        for nb, t in zip(sources, targets)
    )
    return targets, total


# ----------------------------------------------------------------------------- Colab copies
BOOK_URL = "https://convbias.github.io/implicit-bias-cnn-book/"
COLAB_DIR = (
    "colab"  # the copies: colab/book/<chapter>.ipynb, what the Colab button opens
)
FENCE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}(?P<arg>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$\n?",
    re.S | re.M,
)
ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]*)`")
TARGET = re.compile(r"^\((?P<label>[\w-]+)\)=[ \t]*\n", re.M)
ADMONITIONS = {
    "note",
    "tip",
    "warning",
    "important",
    "caution",
    "attention",
    "hint",
    "seealso",
    "admonition",
    "margin",
    "sidebar",
    "danger",
    "error",
}


def read_bib(path: Path) -> dict[str, dict[str, str]]:
    """A small BibTeX reader: key -> fields (braces removed), enough for the book's references.bib."""
    text = Path(path).read_text(encoding="utf-8")
    entries: dict[str, dict[str, str]] = {}
    for match in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", text, re.S):
        fields = {"type": match.group(1).lower()}
        for field in re.finditer(
            r"(\w+)\s*=\s*\{((?:[^{}]|\{[^{}]*\})*)\}", match.group(3)
        ):
            fields[field.group(1).lower()] = re.sub(
                r"[{}]", "", " ".join(field.group(2).split())
            )
        entries[match.group(2)] = fields
    return entries


def _last_names(authors: str) -> list[str]:
    names = []
    for person in authors.split(" and "):
        person = person.strip()
        if person == "others":
            return names + ["others", "others"]  # "et al." below
        names.append(
            person.split(",")[0].strip() if "," in person else person.split()[-1]
        )
    return names


def cite_authors(entry: dict[str, str]) -> str:
    last = _last_names(entry.get("author", "Anonymous"))
    if len(last) == 1:
        return last[0]
    if len(last) == 2:
        return f"{last[0]} & {last[1]}"
    return f"{last[0]} et al."


def reference_line(entry: dict[str, str]) -> str:
    """One entry of a chapter's reference list: authors (year). Title. Venue. A link to it."""
    people = []
    for person in entry.get("author", "").split(" and "):
        if person.strip() == "others":
            people.append("et al.")
            continue
        last, _, first = person.partition(",")
        people.append(f"{last.strip()}, {first.strip()}" if first else person.strip())
    authors = "; ".join(people)
    venue = (
        entry.get("booktitle") or entry.get("journal") or entry.get("publisher") or ""
    )
    if entry.get("eprint"):
        link = f" [arXiv:{entry['eprint']}](https://arxiv.org/abs/{entry['eprint']})"
    elif entry.get("doi"):
        link = f" [doi:{entry['doi']}](https://doi.org/{entry['doi']})"
    elif entry.get("url"):
        link = f" <{entry['url']}>"
    else:
        link = ""
    return (
        f"{authors} ({entry.get('year', 'n.d.')}). {entry.get('title', '')}."
        + (f" *{venue}*." if venue else "")
        + link
    )


def numbered_chapters(root: Path) -> dict[str, int]:
    """Page stem -> chapter number, for the pages of ``_toc.yml``'s ``numbered`` parts.

    As Sphinx numbers them: 1, 2, ... in book order, continuing from one numbered part
    to the next (jupyter-book's multi-part numbering); other pages have no number.
    """
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    numbered: list[str] = []
    for part in toc.get("parts", []):
        if part.get("numbered"):
            numbered += [Path(c["file"]).stem for c in part.get("chapters", [])]
    return {stem: i for i, stem in enumerate(numbered, start=1)}


class BookIndex:
    """What the book's cross-references point to, numbered as the built book numbers them.

    Exercises (sphinx-exercise) and figures (``{glue:figure}`` / ``{figure}`` with a
    ``:name:``) are numbered per chapter as Sphinx numbers them (``numfig_secnum_depth:
    1``): "2.3" is chapter 2's third, the chapters being the documents of the parts of
    ``_toc.yml`` marked ``numbered``; the pages outside them (the appendix) share one
    count, 1, 2, ...; section targets ``(label)=`` keep their page and heading.
    """

    def __init__(self, root: Path, book_url: str = BOOK_URL):
        import nbformat

        self.root, self.url = Path(root), book_url.rstrip("/") + "/"
        self.exercises: dict[str, tuple[str, str]] = {}
        self.figures: dict[str, tuple[str, str]] = {}
        self.chapters = numbered_chapters(self.root)
        self.sections: dict[str, tuple[str, str]] = {}
        self.titles: dict[str, str] = {}

        self.bib = (
            read_bib(self.root / "book" / "references.bib")
            if (self.root / "book" / "references.bib").exists()
            else {}
        )
        counts: dict[tuple[str, int | None], int] = {}

        def number(kind: str, stem: str) -> str:
            chapter = self.chapters.get(stem)
            counts[kind, chapter] = counts.get((kind, chapter), 0) + 1
            n = counts[kind, chapter]
            return f"{chapter}.{n}" if chapter else str(n)

        for nb_path in toc_notebooks(self.root):
            stem = nb_path.stem
            nb = nbformat.read(nb_path, as_version=4)
            markdown = "\n\n".join(
                c.source for c in nb.cells if c.cell_type == "markdown"
            )
            for block in FENCE.finditer(markdown):
                name, body = block.group("name"), block.group("body")
                label = re.search(r"^:(?:label|name):\s*(\S+)", body, re.M)
                if name == "exercise" and not re.search(r"^:nonumber:", body, re.M):
                    n = number("exercise", stem)
                    if label:
                        self.exercises[label.group(1)] = (stem, n)
                elif name in ("glue:figure", "figure") and label:
                    self.figures[label.group(1)] = (stem, number("figure", stem))
            for target in TARGET.finditer(markdown):
                heading = re.search(r"^#+\s+(.+)$", markdown[target.end() :], re.M)
                self.sections[target.group("label")] = (
                    stem,
                    heading.group(1).strip() if heading else target.group("label"),
                )
            title = re.search(r"^#\s+(.+)$", markdown, re.M)
            self.titles[stem] = title.group(1).strip() if title else stem
        glossary = self.root / "book" / "glossary.md"
        # the glossary's terms as written (Sphinx keeps their case in the anchors: term-Huberized-ReLU)
        self.terms = (
            {
                t.strip().lower(): t.strip()
                for t in re.findall(
                    r"^([^\s`:#][^\n]*)\n  \S",
                    glossary.read_text(encoding="utf-8"),
                    re.M,
                )
            }
            if glossary.exists()
            else {}
        )
        # the API pages (tools/api_page.py): which page documents each module
        self.api_pages = {
            module: md.stem
            for md in sorted((self.root / "book").glob("api*.md"))
            for module in re.findall(
                r"^\.\. py:module:: (\S+)", md.read_text(encoding="utf-8"), re.M
            )
        }
        for md in (self.root / "book").glob("*.md"):
            title = re.search(r"^#\s+(.+)$", md.read_text(encoding="utf-8"), re.M)
            self.titles.setdefault(
                md.stem, title.group(1).strip() if title else md.stem
            )

    def page(self, stem: str, anchor: str = "") -> str:
        return f"{self.url}book/{stem}.html" + (f"#{anchor}" if anchor else "")

    def api_page(self, target: str) -> str:
        """The address of a documented name (``convbias.rank.stable_rank``) on its API page."""
        module = target
        while module and module not in self.api_pages:
            module = module.rpartition(".")[0]
        return self.page(self.api_pages.get(module, "api"), target)


def _split_target(text: str) -> tuple[str | None, str]:
    match = re.fullmatch(r"\s*(.*?)\s*<([^>]+)>\s*", text, re.S)
    return (match.group(1), match.group(2)) if match else (None, text.strip())


class ColabConverter:
    """MyST markdown of one chapter -> plain Markdown that Colab (or any Jupyter) renders."""

    def __init__(
        self,
        index: BookIndex,
        stem: str,
        solutions: bool = True,
        values: dict | None = None,
    ):
        self.index, self.stem, self.solutions = index, stem, solutions
        self.values = values or {}
        self.cited: list[str] = []

    # --- roles
    def cite(self, keys: str, textual: bool) -> str:
        parts = []
        for key in [k.strip() for k in keys.split(",") if k.strip()]:
            entry = self.index.bib.get(key)
            if key not in self.cited:
                self.cited.append(key)
            if entry is None:
                parts.append(key)
            elif textual:
                parts.append(f"{cite_authors(entry)} ({entry.get('year', 'n.d.')})")
            else:
                parts.append(f"{cite_authors(entry)}, {entry.get('year', 'n.d.')}")
        return " and ".join(parts) if textual else "(" + "; ".join(parts) + ")"

    def reference(self, text: str, numbered: bool) -> str:
        title, label = _split_target(text)
        if label in self.index.exercises:
            stem, number = self.index.exercises[label]
            name = f"Exercise {number}"
        elif label in self.index.figures:
            stem, number = self.index.figures[label]
            name = f"Figure {number}"
        elif label in self.index.sections:
            stem, name = self.index.sections[label]
        else:
            return title or label
        if numbered and title and "%s" in title:
            name = title.replace("%s", name.split()[-1])
        elif title and not numbered:
            name = title
        if stem == self.stem:
            return name
        return f"[{name}]({self.index.page(stem, label if label in self.index.sections else '')})"

    def glue(self, text: str) -> str:
        key, _, spec = text.partition(":")
        if key in self.values:
            value = self.values[key]
            try:
                return format(value, spec) if spec else str(value)
            except (TypeError, ValueError):
                return str(value)
        return f"[*value in the online book*]({self.index.page(self.stem)})"

    def role(self, match: re.Match) -> str:
        role, text = match.group("role"), match.group("text")
        if role in ("cite:p", "cite", "cite:ps", "cite:alp"):
            return self.cite(text, textual=False)
        if role in ("cite:t", "cite:ts", "cite:author"):
            return self.cite(text, textual=True)
        if role in ("numref", "ref", "eq"):
            return self.reference(text, numbered=role == "numref")
        if role.startswith("glue"):
            return self.glue(text)
        if role == "term":
            title, term = _split_target(text)
            term = self.index.terms.get(term.lower(), term)
            anchor = "term-" + re.sub(r"[^\w]+", "-", term).strip("-")
            return f"[{title or term}]({self.index.page('glossary', anchor)})"
        if role == "doc":
            title, target = _split_target(text)
            stem = Path(target).stem
            return f"[{title or self.index.titles.get(stem, stem)}]({self.index.page(stem)})"
        if role.startswith("py:"):
            title, target = _split_target(text)
            target = target.lstrip("~")
            shown = title or (
                text.lstrip("~").rsplit(".", 1)[-1] if text.startswith("~") else target
            )
            return f"[`{shown}`]({self.index.api_page(target)})"
        if role == "math":
            return f"${text}$"
        title, target = _split_target(text)
        return title or target

    # --- directives
    def directive(self, match: re.Match) -> str:
        name, arg = match.group("name"), match.group("arg").strip()
        options, body = {}, match.group("body")
        lines = body.split("\n")
        while lines and re.match(r"^:[\w-]+:", lines[0]):
            key, _, value = lines.pop(0)[1:].partition(":")
            options[key] = value.strip()
        body = "\n".join(lines).strip("\n")
        if name == "exercise":
            label = options.get("label")
            number = self.index.exercises.get(label, (None, None))[1] if label else None
            head = f"**Exercise {number}.**" if number else "**Exercise.**"
            if arg:
                head += f" *{arg}.*"
            return f"{head} {body.strip()}\n"
        if name == "solution":
            if not self.solutions:
                return ""
            number = self.index.exercises.get(arg, (None, None))[1]
            summary = f"Solution to Exercise {number}" if number else "Solution"
            return f"<details>\n<summary>{summary}</summary>\n\n{body.strip()}\n\n</details>\n"
        if name in ("glue:figure", "figure"):
            label = options.get("name")
            number = self.index.figures.get(label, (None, None))[1] if label else None
            head = f"**Figure {number}.** " if number else ""
            image = (
                f"![{options.get('alt', '')}]({arg})\n\n" if name == "figure" else ""
            )
            where = (
                ""
                if name == "figure"
                else "*(The figure is drawn by the code cell above.)* "
            )
            return f"{image}{head}{where}{body.strip()}\n"
        if name in ("math", "equation"):
            return f"$$\n{body.strip()}\n$$\n"
        if name in ("code-block", "code", "code-cell"):
            return f"```{arg.split()[0] if arg else ''}\n{body}\n```\n"
        if name in (
            "glossary",
            "bibliography",
            "toctree",
            "tableofcontents",
            "eval-rst",
            "raw",
        ):
            return ""
        title = (
            arg if name == "admonition" and arg else name.replace("-", " ").capitalize()
        )
        quoted = "\n".join(
            "> " + line if line else ">" for line in body.strip().split("\n")
        )
        return f"> **{title}.**\n>\n{quoted}\n"

    def convert(self, markdown: str) -> str:
        text = TARGET.sub("", markdown)
        text = re.sub(r"^<!--.*?-->\s*$\n?", "", text, flags=re.M | re.S)
        for _ in range(5):  # innermost first: a fence whose body holds no other fence
            new = FENCE.sub(
                lambda m: (
                    self.directive(m)
                    if not FENCE.search(m.group("body"))
                    else m.group(0)
                ),
                text,
            )
            if new == text:
                break
            text = new
        return ROLE.sub(self.role, text).strip("\n")


def colab_version(
    src: Path,
    dst: Path,
    index: BookIndex,
    solutions: bool = True,
    values: dict | None = None,
) -> dict[str, int]:
    """Write the Colab copy of ``src`` to ``dst``: MyST turned into plain Markdown, outputs cleared.

    Exercises become "**Exercise N.** ...", numbered as in the book; solutions a
    hidden ``<details>`` block (left out when ``solutions`` is false); citations
    "(Heckel & Soltanolkotabi, 2020a)" with a reference list at the end; figure
    captions, cross-references, glossary terms and API names text or links to the
    online book. Returns counts: exercises, solutions, citations.
    """
    import nbformat

    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise FileExistsError(
            f"{dst} is the notebook itself: write the Colab copy somewhere else"
        )
    nb = nbformat.read(src, as_version=4)
    convert = ColabConverter(index, src.stem, solutions=solutions, values=values)
    counts = {"exercises": 0, "solutions": 0}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            counts["exercises"] += len(
                re.findall(r"^[`:]{3,}\{exercise\}", cell.source, re.M)
            )
            counts["solutions"] += len(
                re.findall(r"^[`:]{3,}\{solution\}", cell.source, re.M)
            )
            cell.source = convert.convert(cell.source)
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells = [c for c in nb.cells if c.cell_type != "markdown" or c.source.strip()]
    banner = (
        f"*This is the Colab copy of a chapter of* [{index.titles.get('intro', 'the book')}]({index.url}): "
        f"[read it online]({index.page(src.stem)}). Run the first cell to install the book's package."
    )
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(banner))
    nb.cells[0].id = "colab-banner"
    if convert.cited:
        lines = [
            f"- {reference_line(index.bib[k])}" for k in convert.cited if k in index.bib
        ]
        cell = nbformat.v4.new_markdown_cell("## References\n\n" + "\n".join(lines))
        cell.id = "colab-references"
        nb.cells.append(cell)
    counts["citations"] = len(convert.cited)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    nbformat.write(nb, tmp)
    tmp.replace(dst)
    return counts


def colab_edition(
    root: Path, out_dir: Path | None = None, solutions: bool = True, check: bool = False
) -> list[Path]:
    """The Colab copy of every chapter in ``out_dir`` (default ``<root>/colab/book``).

    With ``check`` nothing is written: returns the copies that are missing or differ
    from what would be written (stale).
    """
    import tempfile

    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root / COLAB_DIR / "book"
    book_dirs = {
        (root / "book").resolve(),
        *(nb.parent.resolve() for nb in toc_notebooks(root)),
    }
    if out.resolve() in book_dirs:
        raise ValueError(
            f"{out} is the book's own folder: write the Colab copies somewhere else, e.g. colab/book"
        )
    index = BookIndex(root)
    stale = []
    with tempfile.TemporaryDirectory() as scratch:
        for nb in toc_notebooks(root):
            target = out / nb.name
            fresh = Path(scratch) / nb.name
            colab_version(nb, fresh, index, solutions=solutions)
            if target.exists() and target.read_bytes() == fresh.read_bytes():
                continue
            stale.append(target)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                fresh.replace(target)
    return stale


# ----------------------------------------------------------------------------- headless runs
from .runner import run_chapter, run_headless, run_profiled  # noqa: E402,F401  (their home is runner)
