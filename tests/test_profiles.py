"""Every chapter's full profile has the same parameters as its quick profile (only the values differ).

The full profile runs on a GPU, which the test machines lack: this catches a key
missing from (or misspelled in) the full parameters before a GPU run fails on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from convbias.notebooks import toc_notebooks

ROOT = Path(__file__).resolve().parents[1]


def profile_parameters(notebook: Path) -> dict[str, dict]:
    """The ``quick`` and ``full`` keyword arguments of the notebook's ``by_profile(...)`` call, evaluated."""
    nb = nbformat.read(notebook, as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(
            "\n".join(
                ln
                for ln in cell.source.splitlines()
                if not ln.lstrip().startswith(("%", "!"))
            )
        )
        imports = [
            node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
        ]
        exec(
            compile(ast.Module(body=imports, type_ignores=[]), str(notebook), "exec"),
            namespace,
        )  # earlier cells' too
        if "by_profile(" not in cell.source:
            continue
        # plain assignments before the parameters (e.g. S = base_seed(0)) may be used in them
        for node in tree.body:
            if "by_profile(" in ast.unparse(node):
                break
            if isinstance(node, ast.Assign):
                exec(
                    compile(
                        ast.Module(body=[node], type_ignores=[]), str(notebook), "exec"
                    ),
                    namespace,
                )
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "by_profile"
            ):
                kwargs = {
                    kw.arg: eval(
                        compile(ast.Expression(kw.value), str(notebook), "eval"),
                        namespace,
                    )
                    for kw in node.keywords
                }
                return kwargs
    raise AssertionError(f"{notebook.name} has no by_profile(...) parameters cell")


def structure(value, path: str = "P") -> dict[str, type]:
    """``{path: type}`` of every leaf; dict keys recurse (lists and tuples are leaves)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(structure(item, f"{path}[{key!r}]"))
        return out
    kind = type(value)
    return {
        path: float if kind is int else kind
    }  # 1 vs 1.0 is not a structural difference


@pytest.mark.parametrize("notebook", toc_notebooks(ROOT), ids=lambda p: p.stem)
def test_full_profile_has_the_quick_profiles_parameters(notebook):
    params = profile_parameters(notebook)
    assert set(params) == {"quick", "full"}, (
        f"{notebook.name}: by_profile needs quick= and full="
    )
    quick, full = structure(params["quick"]), structure(params["full"])
    assert quick.keys() == full.keys(), (
        f"{notebook.name}: only in quick {sorted(quick.keys() - full.keys())}, "
        f"only in full {sorted(full.keys() - quick.keys())}"
    )
    none = type(None)
    differ = {
        k: (quick[k].__name__, full[k].__name__)
        for k in quick
        if quick[k] != full[k]
        and none not in (quick[k], full[k])
        and {quick[k], full[k]} != {list, tuple}
    }
    assert not differ, (
        f"{notebook.name}: parameters of other types in the two profiles: {differ}"
    )
