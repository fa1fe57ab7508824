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
    page = documented((ROOT / "book" / "api.md").read_text(encoding="utf-8"))
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
    assert (ROOT / "book" / "api.md").read_text(encoding="utf-8") == api_page.render(
        ROOT
    ), "book/api.md is stale: run python tools/api_page.py"
