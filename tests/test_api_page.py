"""The API page documents every name the chapter notebooks take from convbias (read at test time)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from convbias import notebooks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import api_page  # noqa: E402  (tools/)


def documented(page: str) -> set[str]:
    """Qualified names the page documents (auto* entries, py:data under their py:module)."""
    names, module = set(), None
    for line in page.splitlines():
        if m := re.match(r"\.\. py:module:: (\S+)", line):
            module = m.group(1)
        elif m := re.match(r"\.\. (auto\w+|py:data):: (\S+)", line):
            name = m.group(2)
            names.add(name if "." in name else f"{module}.{name}")
    return names


def test_the_parser_finds_every_form_of_import():
    source = (
        "from convbias.rank import stable_rank as sr\nfrom convbias import report, live\n"
        "import convbias.plotting as cp\nreport.spread([1])\nlive.explore(f)\ncp.subplots(1)\n"
        "%matplotlib inline\n"
    )
    uses = {
        u.qualified
        for u in api_page.uses_in_source(
            "\n".join(
                "" if line.startswith("%") else line for line in source.splitlines()
            )
        )
    }
    assert uses == {
        "convbias.rank.stable_rank",
        "convbias.report.spread",
        "convbias.live.explore",
        "convbias.plotting.subplots",
    }


def test_every_name_a_notebook_imports_is_on_the_api_page():
    uses = api_page.notebook_uses(notebooks.toc_notebooks(ROOT))
    assert len(uses) > 20  # the chapters use the package
    page = documented(
        "\n".join(text for text in api_page.pages(ROOT).values())
    )  # every API page: what the book shows is what pages() writes (checked below)
    missing = sorted(
        {
            f"{u.qualified} ({u.notebook})"
            for u in uses
            if u.qualified not in page and "{}.{}".format(*api_page.home(u)) not in page
        }
    )
    assert not missing, f"not on book/api.md (run python tools/api_page.py): {missing}"


def test_the_api_page_is_up_to_date():
    pytest.importorskip(
        "sphinx", reason="the API page is rendered with the book's tools (.[book])"
    )
    for name, text in api_page.pages(ROOT).items():
        assert (ROOT / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run python tools/api_page.py"
        )


def test_the_api_is_split_into_pages_each_in_the_toc():
    """No page holds the whole package: each module on one group's page, each page in the toc."""
    texts = api_page.pages(ROOT)
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    groups = [name for name in texts if name != "book/api.md"]
    assert len(groups) >= 5
    for name in groups:
        assert f"file: {name.removesuffix('.md')}" in toc, name
    modules = [
        m
        for name in groups
        for m in re.findall(r"^\.\. py:module:: (\S+)", texts[name], re.M)
    ]
    assert len(modules) == len(set(modules)) > 30
    assert max(len(texts[name]) for name in groups) < 0.5 * sum(
        map(len, texts.values())
    )
    with pytest.raises(LookupError, match="add 'nowhere' to GROUPS"):
        api_page.group_of("convbias.nowhere")
