"""Sphinx extension (``_config.yml``: ``sphinx: local_extensions``): author-year bibliography labels.

The chapters cite author-year (``bibtex_reference_style: author_year``); the
bibliography's default labels are numbers ([1], [2], ...) that no citation shows.
This registers the pybtex style ``authoryear`` (pybtex's ``plain``, sorted by
author, year, title) whose labels read like the citations: "Heckel and
Soltanolkotabi, 2020a" (two papers of the same authors and year carry a/b in
their ``year`` field, book/references.bib).
"""

from __future__ import annotations

from typing import Any

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def authors(entry: Any) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [" ".join(p.prelast_names + p.last_names) for p in people]
    if not last:
        return entry.key
    if len(last) == 1:
        return last[0]
    if len(last) == 2:
        return f"{last[0]} and {last[1]}"
    return f"{last[0]} et al."


def label(entry: Any) -> str:
    """The label of an entry, as the author-year citation writes it."""
    return f"{authors(entry)}, {entry.fields.get('year', 'n.d.')}".replace(
        "{", ""
    ).replace("}", "")


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield label(entry)


class AuthorYearStyle(PlainStyle):
    default_label_style = "authoryear"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app: Any) -> dict:
    return {"parallel_read_safe": True, "parallel_write_safe": True}
