"""The Colab copies (colab/book/): plain Markdown, exercises numbered as in the book, kept up to date."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from convbias import notebooks

ROOT = Path(__file__).resolve().parents[1]
LEFTOVER = re.compile(
    r"\{cite|:::\{|```\{|\{glue|\{numref\}|\{term\}|\{doc\}|\{ref\}|\{py:|^\([\w-]+\)=",
    re.M,
)


def markdown(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
    ]


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("colab")
    notebooks.colab_edition(ROOT, out)
    student = tmp_path_factory.mktemp("student")
    notebooks.colab_edition(ROOT, student, solutions=False)
    return out, student


def test_no_myst_markup_is_left(copies):
    out, _ = copies
    for nb in notebooks.toc_notebooks(ROOT):
        for cell in markdown(out / nb.name):
            left = LEFTOVER.search(cell)
            assert left is None, (
                f"{nb.name}: {left.group(0)!r} left in: {cell[max(0, left.start() - 60) : left.end() + 60]!r}"
            )


def test_exercises_are_numbered_per_chapter_and_solutions_hidden(copies):
    """Exercise 2.1, 2.2, ... in chapter 2's copy, as the built book numbers them."""
    out, student = copies
    chapters = notebooks.numbered_chapters(ROOT)
    assert chapters["01_intrinsic_dimension"] == 1 and "appendix_rank" not in chapters
    appendix = []
    for nb in notebooks.toc_notebooks(ROOT):
        sources = sum(
            len(re.findall(r"^[`:]{3,}\{exercise\}", c, re.M)) for c in markdown(nb)
        )
        cells = markdown(out / nb.name)
        numbers = [
            n
            for c in cells
            for n in re.findall(r"^\*\*Exercise ([\d.]+)\.\*\*", c, re.M)
        ]
        if nb.stem in chapters:
            assert sources > 0, nb.name
            chapter = chapters[nb.stem]
            assert numbers == [f"{chapter}.{i}" for i in range(1, sources + 1)], nb.name
        else:
            appendix += numbers
        solutions = sum(c.count("<details>") for c in cells)
        assert solutions == sum(
            len(re.findall(r"^[`:]{3,}\{solution\}", c, re.M)) for c in markdown(nb)
        )
        assert not any(
            "<details>" in c or "Solution" in c for c in markdown(student / nb.name)
        ), nb.name
    assert appendix == [str(i) for i in range(1, len(appendix) + 1)]


def test_citations_are_readable_with_a_reference_list(copies):
    out, _ = copies
    index = notebooks.BookIndex(ROOT)
    for nb in notebooks.toc_notebooks(ROOT):
        keys = {
            k.strip()
            for c in markdown(nb)
            for g in re.findall(r"\{cite:[pt]\}`([^`]+)`", c)
            for k in g.split(",")
        }
        cells = markdown(out / nb.name)
        if keys:
            assert cells[-1].startswith("## References")
            for key in keys:
                assert index.bib[key]["title"] in cells[-1], (nb.name, key)


def test_the_conversion_of_each_construct(tmp_path):
    index = notebooks.BookIndex(ROOT)
    key = next(k for k, e in index.bib.items() if e.get("year") == "2020a")
    convert = notebooks.ColabConverter(index, "01_x")
    text = convert.convert(
        "(sec-a)=\n## A\n\nSee {cite:p}`"
        + key
        + "` and {cite:t}`"
        + key
        + "`, the {term}`stable rank`,\n"
        "{doc}`the API <api>`, {py:func}`convbias.rank.stable_rank`, {glue:text}`ch1_x:.2f`.\n\n"
        ":::{note}\nA note.\n:::\n\n```{glue:figure} ch1-fig-a\n:name: fig-x\n:alt: alt\n\nWhat to see.\n```\n"
    )
    assert (
        "(Heckel & Soltanolkotabi, 2020a)" in text
        and "Heckel & Soltanolkotabi (2020a)" in text
    )
    assert (
        "[stable rank](https://convbias.github.io/implicit-bias-cnn-book/book/glossary.html#term-stable-rank)"
        in text
    )
    assert (
        "[the API](https://convbias.github.io/implicit-bias-cnn-book/book/api.html)"
        in text
    )
    assert (
        "[`convbias.rank.stable_rank`](https://convbias.github.io/implicit-bias-cnn-book/"
        "book/api_measures.html#convbias.rank.stable_rank)"
        in text
        and "> **Note.**\n>\n> A note." in text
    )
    assert "What to see." in text and LEFTOVER.search(text) is None


def test_the_committed_copies_are_up_to_date():
    stale = notebooks.colab_edition(ROOT, check=True)
    assert stale == [], (
        f"stale Colab copies {[p.name for p in stale]}: run python -m convbias colab"
    )


def test_the_colab_buttons_open_the_copies():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["path_to_book"] == notebooks.COLAB_DIR
    assert config["launch_buttons"]["colab_url"]
    readme = (ROOT / "README.md").read_text()
    assert all(
        f"/blob/main/{notebooks.COLAB_DIR}/book/" in link
        for link in re.findall(
            r"https://colab\.research\.google\.com/github/\S+?\.ipynb", readme
        )
    )


def test_a_reference_line_links_to_the_paper():
    entry = {"author": "Le, Thien and Jegelka, Stefanie", "year": "2022", "title": "T"}
    assert notebooks.reference_line({**entry, "eprint": "2201.11968"}).endswith(
        "[arXiv:2201.11968](https://arxiv.org/abs/2201.11968)"
    )
    assert notebooks.reference_line({**entry, "doi": "10.1/x"}).endswith(
        "[doi:10.1/x](https://doi.org/10.1/x)"
    )
    assert notebooks.reference_line(entry) == "Le, Thien; Jegelka, Stefanie (2022). T."
