"""A static build saves no progress bar and no widget: the plumbing (cheap, no build)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat

from convbias import runner
from convbias.live import STATIC_VAR

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import static_widgets  # noqa: E402  (tools/)


def test_headless_runs_are_static(monkeypatch):
    monkeypatch.delenv(STATIC_VAR, raising=False)
    assert runner.kernel_environment()[STATIC_VAR] == "1"
    monkeypatch.setenv(STATIC_VAR, "0")  # a caller's explicit choice is kept
    assert runner.kernel_environment()[STATIC_VAR] == "0"


def test_every_book_build_is_static():
    makefile = (ROOT / "Makefile").read_text()
    builds = [
        line
        for line in makefile.splitlines()
        if re.search(r"(jupyter-book build|sphinx-build)", line)
        and not line.lstrip().startswith("#")
    ]
    assert len(builds) >= 3, builds  # book, student, linkcheck
    assert all("$(STATIC)" in line for line in builds), builds
    assert re.search(r"^STATIC\s*:=\s*CONVBIAS_STATIC=1$", makefile, re.M)
    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert re.search(r'CONVBIAS_STATIC: "1"', workflow)


def test_strip_widgets_keeps_text_and_images():
    view = {
        "application/vnd.jupyter.widget-view+json": {"model_id": "a"},
        "text/plain": "HBox()",
    }
    cell = nbformat.v4.new_code_cell(
        "x",
        outputs=[
            nbformat.v4.new_output("display_data", data=view),
            nbformat.v4.new_output("display_data", data={**view, "image/png": "iVBOR"}),
            nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
        ],
    )
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {"state": {}}})
    assert runner.strip_widgets(nb) == 1
    assert "widgets" not in nb.metadata
    assert [sorted(o.get("data", {})) for o in cell.outputs] == [
        ["image/png", "text/plain"],
        [],
    ]


def test_pages_carry_no_widget_scripts():
    js = {
        "ipywidgets_state": (None, {}),
        "ipywidgets_0": ("require.js", {}),
        "mathjax": ("m.js", {}),
    }
    app = SimpleNamespace(
        env=SimpleNamespace(nb_metadata={"book/01": {"js_files": js}})
    )
    static_widgets.drop_widget_scripts(app, "book/01")
    assert list(js) == ["mathjax"]
    static_widgets.drop_widget_scripts(
        SimpleNamespace(env=SimpleNamespace()), "book/02"
    )  # a Markdown page


def test_student_config_finds_the_local_extensions(tmp_path):
    import publish
    import yaml

    out = publish.student_config(ROOT, tmp_path / "student" / "_config.yml")
    local = yaml.safe_load(out.read_text())["sphinx"]["local_extensions"]
    assert all(
        Path(folder).is_absolute() and (Path(folder) / f"{name}.py").exists()
        for name, folder in local.items()
    )


def test_make_book_checks_the_pages_it_built():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\nbook:") : makefile.index("\ntest:")]
    assert (
        "tools/page_check.py --html _build/html --screenshots _build/screenshots"
        in recipe
    )
