"""The package's layers: who may import whom, read from the source with ``ast``.

``LAYERS`` below is the one statement of the rules (CONTRIBUTING.md points here). Each
row names a layer, its modules (a name is a top-level module or subpackage of
``convbias``: ``"models"`` covers ``convbias.models.*``) and the layers it may import
besides its own; modules of one layer may import each other. Every import counts,
including those inside functions. Decisions the table encodes:

- ``config`` is at the bottom and imports nothing from ``convbias``.
- ``rank`` (rank measures of matrices: pure tensor maths, no data, training or files)
  sits directly on ``config``, below ``data`` and ``models``: a data generator may
  report its data's stable rank, a model reshape its filters with ``rank.as_matrix``.
- ``data`` and ``models`` import only ``config`` and ``rank``: a model never imports
  training, data, the results cache or a chapter's experiment.
- ``checks`` (the ``Check`` vocabulary) imports nothing but ``config``; the phenomenon
  modules build checks, the runner reports them.
- ``store`` (the results cache ``cache``, its file format ``safe_store`` and
  ``executors``, which run a sweep's items through it) is a utility under the phenomenon
  modules, on ``config`` only: every sweep stores its items there.
- ``train`` (training loops, and ``losses``) sits above ``data`` and ``models``.
- The phenomenon modules, one per idea of the book, may use everything above; they
  import no book tooling.
- Book tooling (runner, reports, plots, the command line) stands beside the phenomenon
  modules: it imports neither them nor ``train``/``models``. Nothing imports
  ``__main__``.

The package root ``convbias`` (its ``__version__``) may be imported from anywhere: it
imports no module when it is imported.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import convbias

PACKAGE = Path(convbias.__file__).resolve().parent
REPO = PACKAGE.parent.parent

#: (layer, modules, layers it may import besides its own): the one table of the rules
# fmt: off
LAYERS: list[tuple[str, set[str], set[str]]] = [
    ("config", {"config"}, set()),
    ("rank", {"rank"}, {"config"}),
    ("checks", {"checks"}, {"config"}),
    ("live", {"live"}, {"config"}),  # progress bars and widgets, for every loop and chapter
    ("data", {"data"}, {"config", "rank"}),
    ("models", {"models"}, {"config", "rank"}),
    ("store", {"cache", "safe_store", "executors"}, {"config"}),
    ("train", {"train", "losses"}, {"config", "live", "rank", "data", "models"}),
    ("phenomena", {"intrinsic_dimension", "sweep", "lowrank", "collapse", "gradients",
                   "one_example", "denoise", "efcn", "relax", "convex_cnn", "spectral",
                   "capacity", "oscillation", "sharpness"},
     {"config", "live", "rank", "checks", "data", "models", "store", "train"}),
    ("tooling", {"chapter", "plotting", "report", "runner", "notebooks",
                 "verify", "smoke", "costs", "estimate", "__main__"},
     {"config", "live", "checks", "data", "store"}),
]
# fmt: on

#: imports that break a rule today and are being removed: (importer, imported module)
KNOWN_EXCEPTIONS: set[tuple[str, str]] = (
    set()
)  # (importer, imported) pairs allowed against the table

LAYER_OF = {module: layer for layer, modules, _ in LAYERS for module in modules}
MAY_IMPORT = {layer: allowed | {layer} for layer, _, allowed in LAYERS}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The ``convbias`` modules (or names) the file at ``path`` imports, anywhere."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "convbias"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "convbias":
                target = node.module
            else:
                continue
            if (
                node.module is None or target == "convbias"
            ):  # from . import x: x is a module or a name
                found |= {f"{target}.{a.name}" for a in node.names}
            else:
                found.add(target)
    return found


def top_level(module: str) -> str | None:
    """``convbias.models.mlp`` -> ``models``; the package root (or its names): None."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    name = parts[1]
    is_module = (
        name in LAYER_OF
        or (PACKAGE / name / "__init__.py").exists()
        or (PACKAGE / f"{name}.py").exists()
    )
    return name if is_module else None


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(p): imports_of(p) for p in SOURCES}


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for importer, targets in sorted(graph.items()):
        src = top_level(importer)
        if src is None:
            continue
        for target in sorted(targets):
            dst = top_level(target)
            if dst is None or dst == src or (importer, target) in KNOWN_EXCEPTIONS:
                continue
            if dst == "__main__":
                out.append(f"{importer} imports {target}: nothing may import __main__")
            elif LAYER_OF.get(dst) not in MAY_IMPORT[LAYER_OF[src]]:
                out.append(
                    f"{importer} ({LAYER_OF[src]}) imports {target} "
                    f"({LAYER_OF.get(dst)}): {LAYER_OF[src]} may import only "
                    f"{sorted(MAY_IMPORT[LAYER_OF[src]])}"
                )
    return out


def public_modules() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()
    }


def test_every_module_has_a_layer():
    missing = {top_level(m) for m in GRAPH} - set(LAYER_OF) - {None}
    assert not missing, (
        f"add these modules to LAYERS in tests/test_layers.py: {sorted(missing)}"
    )


def test_imports_follow_the_layers():
    problems = violations(GRAPH)
    assert not problems, "imports that break the layers (see LAYERS):\n" + "\n".join(
        problems
    )


def test_known_exceptions_are_still_needed():
    stale = {
        pair for pair in KNOWN_EXCEPTIONS if pair[1] not in GRAPH.get(pair[0], set())
    }
    assert not stale, (
        f"these imports are gone: delete them from KNOWN_EXCEPTIONS: {sorted(stale)}"
    )


def test_the_package_root_imports_no_module():
    assert not GRAPH["convbias"], GRAPH["convbias"]


def test_the_checker_sees_an_upward_import():
    """The rules catch ``from ..train import fit`` in a model, data in the cache."""
    model = module_name(PACKAGE / "models" / "mlp.py")
    assert imports_of(PACKAGE / "models" / "mlp.py") == GRAPH[model]
    broken = {**GRAPH, model: GRAPH[model] | {"convbias.train"}}
    assert any(
        p.startswith("convbias.models.mlp (models) imports convbias.train")
        for p in violations(broken)
    )
    broken = {
        **GRAPH,
        "convbias.cache": GRAPH["convbias.cache"] | {"convbias.data.download"},
    }
    assert any(
        "convbias.cache (store) imports convbias.data.download" in p
        for p in violations(broken)
    )
    broken = {
        **GRAPH,
        "convbias.sweep": GRAPH["convbias.sweep"] | {"convbias.__main__"},
    }
    assert any("nothing may import __main__" in p for p in violations(broken))


def test_parser_resolves_relative_and_absolute_imports():
    sub = PACKAGE / "models" / "__init__.py"
    assert "convbias.models.patch_cnn" in imports_of(
        sub
    )  # from .patch_cnn import ... in a package
    assert (
        "convbias.safe_store" in GRAPH["convbias.cache"]
    )  # from . import safe_store, inside a method
    assert (
        "convbias.data.background" in GRAPH["convbias.intrinsic_dimension"]
    )  # from .data.background import


def test_all_lists_every_public_module():
    assert set(convbias.__all__) == public_modules()
    for name in convbias.__all__:
        assert name in convbias.__doc__, f"the package docstring does not list {name}"


#: modules whose docstring does not say yet which chapter uses it (on its way)
NAMES_NO_CHAPTER_YET = {
    "denoise",
    "one_example",
    "relax",
    "train",
}
USED_BY = re.compile(r"Used by (every chapter|chapters? \d|the appendix|the book)")


@pytest.mark.parametrize("name", sorted(public_modules()))
def test_public_module_names_its_chapter_or_role(name):
    """Each public module's docstring says which chapter (or the tooling) uses it."""
    path = (
        PACKAGE / f"{name}.py"
        if (PACKAGE / f"{name}.py").exists()
        else PACKAGE / name / "__init__.py"
    )
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    says = bool(USED_BY.search(doc)) or (name == "models" and "(chapter 1)" in doc)
    if name in NAMES_NO_CHAPTER_YET:
        assert not says, (
            f"convbias.{name} names its chapter: delete it from NAMES_NO_CHAPTER_YET"
        )
    else:
        assert says, (
            f"convbias.{name}: say which chapter uses it ('Used by chapter N.')"
        )


def test_readme_layout_lists_every_module():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Layout") :]
    table = table[: table.index("\n## ", 3)]
    missing = [m for m in sorted(public_modules()) if f"`{m}`" not in table]
    assert not missing, f"README's layout table does not list {missing}"


def test_importing_models_loads_no_training_data_or_cache():
    """What ``import convbias.models`` loads in a fresh interpreter: its layers only."""
    code = (
        "import sys, convbias.models; print(*(m for m in sys.modules if 'bias' in m))"
    )
    path = os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    run = [sys.executable, "-c", code]
    out = subprocess.run(run, capture_output=True, text=True, env=env, check=True)
    loaded = {top_level(m) for m in out.stdout.split()} - {None}
    pending = {
        top_level(t) for i, t in KNOWN_EXCEPTIONS if i.startswith("convbias.models")
    }
    extra = loaded - pending - MAY_IMPORT["models"]
    assert not extra, f"import convbias.models loads {sorted(extra)}"
