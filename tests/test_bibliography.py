"""book/references.bib: every cited key exists, and no two entries get the same author-year label."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
BIB = ROOT / "book" / "references.bib"


def test_author_year_labels_are_unique():
    pytest.importorskip("pybtex", reason="pybtex comes with the book's tools (.[book])")
    import bib_style  # tools/
    from pybtex.database import parse_file

    entries = parse_file(BIB).entries
    labels = Counter(bib_style.label(e) for e in entries.values())
    assert (
        labels["Heckel and Soltanolkotabi, 2020a"]
        == labels["Heckel and Soltanolkotabi, 2020b"]
        == 1
    )
    assert [label for label, n in labels.items() if n > 1] == []


def test_every_cited_key_is_in_the_bibliography():
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(encoding="utf-8"), re.M))
    assert len(keys) > 10
    cited = set()
    for path in [*ROOT.glob("book/*.ipynb"), *ROOT.glob("book/*.md")]:
        for group in re.findall(
            r"\{cite:[pt]\}`([^`]+)`", path.read_text(encoding="utf-8")
        ):
            cited |= {k.strip() for k in group.split(",")}
    assert len(cited) > 10
    assert sorted(cited - keys) == []


def test_every_reference_links_to_the_paper():
    """A reader can open each reference: an arXiv id, a DOI or a URL on every entry."""
    text = BIB.read_text(encoding="utf-8")
    entries = re.findall(r"^@\w+\{([^,\s]+),(.*?)^\}", text, re.M | re.S)
    assert len(entries) > 10
    unlinked = [
        key
        for key, body in entries
        if not re.search(r"^\s*(eprint|doi|url)\s*=\s*\{\S+\}", body, re.M)
    ]
    assert unlinked == []
    for key, body in entries:
        eprint = re.search(r"^\s*eprint\s*=\s*\{([^}]*)\}", body, re.M)
        if eprint:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", eprint.group(1)), key
            assert re.search(r"archiveprefix\s*=\s*\{arXiv\}", body, re.I), key
