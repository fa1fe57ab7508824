"""What only a reader running a notebook live sees: progress bars and widgets.

A static build of the book (``make book``, ``python -m convbias run``) sets
``CONVBIAS_STATIC=1``: progress bars are then not shown at all (nothing half-full is
saved into the page) and a widget draws its default figure once, with a sentence
saying how to run it live. Used by every chapter's training loops and widgets.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

STATIC_VAR = "CONVBIAS_STATIC"
LIVE_HINT = (
    "*This figure shows the default values. To move the controls, run the notebook "
    "live: the Colab button at the top of the page, or a local Jupyter.*"
)


def is_static() -> bool:
    """True in a static build of the book (``CONVBIAS_STATIC=1``): no bars, no live widgets."""
    return os.environ.get(STATIC_VAR, "").strip().lower() in {"1", "true", "yes"}


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    enabled: bool = True,
    **kw: Any,
):
    """A tqdm progress bar that disappears when done (``leave=False``).

    Off when ``enabled`` is false or in a static build, so no frozen bar is saved
    with a notebook's outputs.
    """
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        leave=False,
        disable=not enabled or is_static(),
        **kw,
    )


def explore(draw: Callable[..., Any], **controls: Any) -> None:
    """Draw ``draw(**defaults)`` now; in a live notebook add ``controls`` to redraw it.

    ``controls`` are ipywidgets (sliders, dropdowns) whose ``value`` is the default.
    In a static build only the default figure is drawn, followed by :data:`LIVE_HINT`.
    The computation behind ``draw`` runs when the reader presses the button, not on
    every slider move.
    """
    from IPython import get_ipython
    from IPython.display import Markdown, display

    if is_static() or get_ipython() is None:
        import matplotlib.pyplot as plt

        draw(**{name: w.value for name, w in controls.items()})
        plt.show()
        if get_ipython() is None:
            print(LIVE_HINT.strip("*"))
        else:
            display(Markdown(LIVE_HINT))
        return
    from ipywidgets import interactive

    panel = interactive(draw, {"manual": True, "manual_name": "Run"}, **controls)
    panel.update()
    display(panel)
