"""The Colab set-up cell: it pins the package's version, and a failed install stops the notebook in one line."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import convbias
from convbias import notebooks

ROOT = Path(__file__).resolve().parents[1]


def _setup_cells() -> dict[str, str]:
    """The Colab cell of every chapter and of every Colab copy, by file."""
    paths = notebooks.toc_notebooks(ROOT)
    paths += [ROOT / notebooks.COLAB_DIR / "book" / p.name for p in paths]
    cells = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        cell = next(
            c for c in nb.cells if notebooks.COLAB_TAG in c.metadata.get("tags", [])
        )
        cells[str(path.relative_to(ROOT))] = cell.source
    return cells


def _evaluated(source: str, name: str) -> str:
    """The value the cell gives ``name`` (on Colab), without running pip."""
    values = {}
    for line in source.splitlines():
        match = re.match(r"\s+(VERSION|REPOSITORY|PACKAGE) = (.+?)(  #.*)?$", line)
        if match:
            values[match[1]] = eval(match[2], {}, dict(values))
    return values[name]


def test_every_colab_cell_pins_the_package_version_and_installs_what_exists():
    cells = _setup_cells()
    assert len(cells) >= 2 * 7
    url = notebooks.repository_url(ROOT)
    for where, source in cells.items():
        assert _evaluated(source, "VERSION") == convbias.__version__, where
        package = _evaluated(source, "PACKAGE")
        assert package == notebooks.release_spec(url), where
        # a development version installs main (no tag exists yet); a release, its tag
        ref = package.rsplit("@", 1)[1]
        assert ref == (
            "main" if ".dev" in convbias.__version__ else f"v{convbias.__version__}"
        ), where


def test_install_ref_names_a_tag_only_for_a_release():
    assert notebooks.install_ref("0.2.0.dev0") == "main"
    assert notebooks.install_ref("0.2.0") == "v0.2.0"


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory):
    """The cell run in a Jupyter kernel that believes it is on Colab, installing a package that does not exist."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    source = notebooks.colab_cell_source(notebooks.repository_url(ROOT))
    missing = tmp_path_factory.mktemp("nothing") / "convbias-not-here"
    source = re.sub(
        r'PACKAGE = f".*"', f'PACKAGE = "{missing}[chapters]"', source, count=1
    )
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")'
            ),
            nbformat.v4.new_code_cell(source),
            nbformat.v4.new_code_cell('print("the notebook went on")'),
        ]
    )
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    with pytest.raises(CellExecutionError):
        client.execute()
    return nb


def test_a_failed_install_stops_the_notebook_with_one_line(kernel_run):
    setup, after = kernel_run.cells[1], kernel_run.cells[2]
    (error,) = [o for o in setup.outputs if o.output_type == "error"]
    assert error.ename == "SetupError"
    assert len(error.traceback) == 1 and "\n" not in error.traceback[0]
    assert error.traceback[0].startswith("SetupError: pip install")
    assert "convbias-not-here" in error.traceback[0]
    assert after.get("execution_count") is None and not after.outputs  # never ran
