"""CITATION.cff: valid Citation File Format 1.2.0, its version the package's."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import convbias

ROOT = Path(__file__).resolve().parents[1]
#: the SPDX identifiers the book uses (code: MIT; text and figures: CC BY 4.0)
LICENCES = {"MIT", "CC-BY-4.0"}


def test_the_citation_file_is_cff_1_2_0_and_names_this_release():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    # the keys CFF 1.2.0 requires, and the types its schema gives them
    assert cff["cff-version"] == "1.2.0"
    assert isinstance(cff["message"], str) and cff["message"].strip()
    assert isinstance(cff["title"], str) and cff["title"].strip()
    assert cff["authors"] and all(
        isinstance(a, dict) and (a.get("name") or a.get("family-names"))
        for a in cff["authors"]
    )
    assert cff.get("type") in {"software", "dataset"}
    allowed = {
        "abstract", "authors", "cff-version", "commit", "contact", "date-released",
        "doi", "identifiers", "keywords", "license", "license-url", "message",
        "preferred-citation", "references", "repository", "repository-artifact",
        "repository-code", "title", "type", "url", "version",
    }  # fmt: skip
    assert set(cff) <= allowed, set(cff) - allowed
    licences = cff["license"] if isinstance(cff["license"], list) else [cff["license"]]
    assert set(licences) == LICENCES
    for key in ("repository-code", "url"):
        assert re.match(r"https://", cff[key]), key
    assert str(cff["version"]) == convbias.__version__
