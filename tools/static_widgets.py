"""Sphinx extension (``_config.yml``: ``sphinx: local_extensions``): no saved widget state on a page.

Creating an ipywidgets control (a slider handed to :func:`convbias.live.explore`)
makes the kernel record the widget's state even when, in a static build
(``CONVBIAS_STATIC=1``), no widget is displayed; myst-nb then embeds that state in
the page, with the widget scripts loaded from a CDN, for nothing a reader can use.
This drops both from every page before it is written. It also turns
``_config.yml``'s ``nitpick_ignore`` pairs (YAML lists) into the tuples Sphinx compares.
"""

from __future__ import annotations

from typing import Any

WIDGET_KEYS = (
    "ipywidgets_"  # myst-nb's keys: ipywidgets_state, ipywidgets_0, ipywidgets_1, ...
)


def drop_widget_scripts(app: Any, pagename: str, *args: Any) -> None:
    metadata = getattr(app.env, "nb_metadata", None) or {}
    js_files = metadata.get(pagename, {}).get("js_files", {})
    for key in [k for k in js_files if k.startswith(WIDGET_KEYS)]:
        del js_files[key]


def nitpick_pairs(app: Any, config: Any) -> None:
    """``_config.yml`` can only write ``nitpick_ignore`` as lists; Sphinx compares (type, target) tuples."""
    config.nitpick_ignore = [tuple(pair) for pair in config.nitpick_ignore]


def setup(app: Any) -> dict:
    app.connect("config-inited", nitpick_pairs)
    app.connect(
        "html-page-context", drop_widget_scripts, priority=100
    )  # before myst-nb adds them (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
