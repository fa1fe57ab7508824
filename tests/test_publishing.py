"""The published book: CI workflows, licences, packaging metadata, Binder, site downloads."""

from __future__ import annotations

import ast
import re
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))  # maintainers' tooling, outside the wheel

import publish  # noqa: E402

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def makefile_targets() -> set[str]:
    return set(
        re.findall(
            r"^([A-Za-z][\w.-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M
        )
    )


def triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    return (
        {on: None}
        if isinstance(on, str)
        else dict.fromkeys(on)
        if isinstance(on, list)
        else on
    )


def test_workflows_parse_and_run_only_makefile_targets():
    targets = makefile_targets()
    assert {
        "test",
        "test-colab",
        "test-fullsize",
        "book",
        "site",
        "linkcheck",
    } <= targets
    assert {"dist", "github-release"} <= targets
    assert [w.name for w in WORKFLOWS] == [
        "book.yml",
        "linkcheck.yml",
        "release.yml",
        "tests.yml",
    ]
    called = set()
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for name, job in workflow["jobs"].items():
            if "uses" in job:  # a reusable workflow of this repository
                assert job["uses"].startswith("./.github/workflows/"), (path.name, name)
                called.add((path.name, job["uses"].rsplit("/", 1)[1]))
                continue
            for step in job["steps"]:
                assert ("run" in step) != ("uses" in step), f"{path.name}: {step}"
                if "run" in step:
                    words = step["run"].split()
                    assert words[0] == "make" and all("=" in w for w in words[2:]), (
                        f"{path.name} runs {step['run']!r}, not a make target"
                    )
                    assert words[1] in targets, (
                        f"{path.name}: make {words[1]} is not a Makefile target"
                    )
                    called.add((path.name, words[1]))
    assert called == {
        ("tests.yml", "ci"),
        ("tests.yml", "test-colab"),
        ("tests.yml", "test-fullsize"),
        ("book.yml", "site"),
        ("linkcheck.yml", "linkcheck"),
        ("release.yml", "github-release"),
        ("release.yml", "book.yml"),
    }
    assert (
        "make test" in (ROOT / ".ci" / "run").read_text()
    )  # CI and the workflow run the same command


def test_actions_are_pinned_by_commit_and_kept_current_by_dependabot():
    pinned = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+[\d.]*$")
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if re.match(r"\s+(- )?uses: (?!\./)", line):
                action = line.split("uses:", 1)[1].strip()
                assert pinned.match(action), (
                    f"{path.name}: {action} is not pinned by commit"
                )
    dependabot = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert {u["package-ecosystem"] for u in dependabot["updates"]} == {"github-actions"}


def test_ci_covers_colabs_python_and_installs_chromium():
    tests = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text())
    assert {"3.11", "3.12"} <= set(
        tests["jobs"]["test"]["strategy"]["matrix"]["python"]
    )
    colab = tests["jobs"]["colab-stack"]["steps"]
    assert any(s.get("with", {}).get("python-version") == "3.12" for s in colab)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install" in ci and "chromium" in ci and "command -v chromium" in ci
    test_extra = PYPROJECT["project"]["optional-dependencies"]["test"]
    assert "convbias[book]" in test_extra  # jupyter-book: the page tests run, not skip
    assert any(r.startswith("playwright") for r in test_extra)


def test_conda_environment_takes_the_cpu_torch():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip
    assert any(re.fullmatch(r"torch==[\d.]+\+cpu", line) for line in pip)


def test_the_notebook_cache_of_the_site_build_keeps_its_code_fingerprint():
    """`make book` drops a restored jupyter cache unless _build/.package-code matches: cache both."""
    book = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    cache = next(
        s
        for s in book["jobs"]["build"]["steps"]
        if "actions/cache" in s.get("uses", "")
    )
    paths = set(cache["with"]["path"].split())
    assert {"_build/.jupyter_cache", "_build/.package-code"} <= paths
    makefile = (ROOT / "Makefile").read_text()
    assert "_build/.package-code" in makefile and "_build/.jupyter_cache" in makefile


def test_workflow_triggers_and_deployment():
    flows = {w.stem: yaml.safe_load(w.read_text()) for w in WORKFLOWS}
    assert {"push", "pull_request"} <= set(triggers(flows["tests"]))
    assert triggers(flows["book"])["push"] == {"branches": ["main"]}
    assert triggers(flows["linkcheck"])["schedule"] == [{"cron": "0 6 * * 1"}]  # weekly
    uses = [
        s.get("uses", "")
        for job in flows["book"]["jobs"].values()
        for s in job["steps"]
    ]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    upload = next(
        s
        for job in flows["book"]["jobs"].values()
        for s in job["steps"]
        if s.get("uses", "").startswith("actions/upload-pages-artifact")
    )
    assert upload["with"]["path"] == "_build/html"
    assert flows["book"]["permissions"] == {
        "contents": "read",
        "pages": "write",
        "id-token": "write",
    }


def test_licences_and_single_version_source():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert project["dynamic"] == ["version"] and "version" not in project
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "convbias.__version__"
    }
    assert project["scripts"] == {"convbias": "convbias.__main__:main"}
    assert (ROOT / "pkg" / "convbias" / "py.typed").exists()
    assert "CC BY 4.0" in (ROOT / "book" / "intro.md").read_text()
    assert (
        "CC BY 4.0"
        in yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["extra_footer"]
    )
    versions = [
        p
        for p in (ROOT / "pkg").rglob("*.py")
        if re.search(r"^__version__\s*=", p.read_text(), re.M)
    ]
    assert versions == [ROOT / "pkg" / "convbias" / "__init__.py"]


def _guarded(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside ``try: ... except ImportError`` (optional imports)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name)
            and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            lines |= {
                n.lineno
                for stmt in node.body
                for n in ast.walk(stmt)
                if isinstance(n, (ast.Import, ast.ImportFrom))
            }
    return lines


def test_every_runtime_import_of_the_package_is_a_declared_dependency():
    from importlib.metadata import packages_distributions

    declared = _names(PYPROJECT["project"]["dependencies"])
    extras = {
        extra: _names(reqs)
        for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items()
    }
    owners = packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    tools = {
        p.stem for p in (ROOT / "tools").glob("*.py")
    }  # imported from a checkout only (run --trace)
    missing = {}
    for path in sorted((ROOT / "pkg" / "convbias").rglob("*.py")):
        tree = ast.parse(path.read_text())
        optional = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in (
                {n.split(".")[0] for n in names}
                - stdlib
                - tools
                - {"convbias", "__future__"}
            ):
                dists = {d.lower() for d in owners.get(top, [top])}
                if node.lineno not in optional and not dists & (
                    declared | extras["cli"] | extras["chapters"]
                ):
                    missing.setdefault(top, []).append(f"{path.name}:{node.lineno}")
        for call in ast.walk(tree):  # config.require_extra("module", "extra", ...)
            if (
                isinstance(call, ast.Call)
                and getattr(call.func, "id", "") == "require_extra"
                and len(call.args) >= 2
                and all(isinstance(a, ast.Constant) for a in call.args[:2])
            ):
                module, extra = call.args[0].value, call.args[1].value
                dists = {d.lower() for d in owners.get(module, [module])}
                if not dists & extras.get(extra, set()):
                    missing.setdefault(module, []).append(
                        f"{path.name}: not in [{extra}]"
                    )
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    from convbias.__main__ import CLI_MODULES  # required, in one line, by the CLI

    for module in CLI_MODULES:
        assert {d.lower() for d in owners[module]} & extras["cli"], module
    assert "pandas" in declared


def _names(requirements: list[str]) -> set[str]:
    names = set()
    for req in requirements:
        name = re.split(r"[<>=!\[ ;]", req, maxsplit=1)[0].lower()
        names.add(name)
        if name == "convbias":  # an extra naming others: convbias[convex]
            for extra in re.search(r"\[(.*)\]", req)[1].split(","):
                names |= _names(PYPROJECT["project"]["optional-dependencies"][extra])
    return names


def test_the_base_install_carries_only_what_the_library_needs():
    """The convex solvers and the Jupyter runtime are extras; their floors admit Colab's kernel stack."""
    from packaging.requirements import Requirement

    base = _names(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    for heavy in ("cvxpy", "clarabel", "nbformat", "nbclient", "ipykernel", "pyyaml"):
        assert heavy not in base, heavy
    assert {"cvxpy", "clarabel"} <= _names(extras["convex"])
    assert {"nbformat", "nbclient", "ipykernel", "pyyaml"} <= _names(extras["cli"])
    assert {"cvxpy", "ipywidgets"} <= _names(extras["chapters"])
    colab = {"ipython": "7.34.0", "ipykernel": "6.17.1", "ipywidgets": "7.7.1"}
    colab["traitlets"] = "5.7.1"
    for extra in ("chapters", "cli", "convex"):
        for text in [*PYPROJECT["project"]["dependencies"], *extras[extra]]:
            req = Requirement(text)
            if req.name.lower() in colab:
                assert req.specifier.contains(colab[req.name.lower()]), (extra, text)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    from convbias import spectral
    from convbias.__main__ import main
    from convbias.config import MissingExtra

    monkeypatch.setitem(sys.modules, "cvxpy", None)  # as if not installed
    problem = spectral.frequency_sparse_problem(n=8, d=8)
    with pytest.raises(MissingExtra, match=r"pip install 'convbias\[convex\]'"):
        spectral.solve_spectral_program(problem, lam=0.1)
    monkeypatch.setitem(sys.modules, "nbclient", None)
    assert main(["student", "out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'convbias[cli]'" in err


def test_binder_uses_cpu_torch_and_the_quick_profile():
    requirements = (ROOT / "binder" / "requirements.txt").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", requirements, re.M)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert "CONVBIAS_PROFILE=quick" in (ROOT / "binder" / "start").read_text()
    assert (
        '-e ".[chapters]"' in (ROOT / "binder" / "postBuild").read_text()
    )  # chapter 6's cvxpy
    launch = yaml.safe_load((ROOT / "_config.yml").read_text())["launch_buttons"]
    assert launch["thebe"] is True and launch["binderhub_url"].startswith("https://")


def test_site_downloads_are_the_executed_notebooks(tmp_path):
    build = tmp_path / "_build"
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    executed = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "1 + 1",
                outputs=[
                    nbformat.v4.new_output(
                        "execute_result", data={"text/plain": "2"}, execution_count=1
                    )
                ],
            )
        ]
    )
    for folder, nb in (
        (build / "html" / "_sources" / "book", source),
        (build / "jupyter_execute" / "book", executed),
    ):
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "01_a.ipynb")
    assert publish.executed_downloads(build) == [
        build / "html" / "_sources" / "book" / "01_a.ipynb"
    ]
    served = nbformat.read(
        build / "html" / "_sources" / "book" / "01_a.ipynb", as_version=4
    )
    assert served.cells[0].outputs[0]["data"]["text/plain"] == "2"
    nbformat.write(
        source, build / "html" / "_sources" / "book" / "02_b.ipynb"
    )  # a page the build did not run
    with pytest.raises(FileNotFoundError, match="02_b"):
        publish.executed_downloads(build)


def test_student_edition_beside_the_site(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_a\n"
    )
    (tmp_path / "_config.yml").write_text("title: T\nsphinx:\n  config:\n    x: 1\n")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("Q\n\n:::{solution} ex\nA\n:::\n"),
            nbformat.v4.new_code_cell(
                "1", outputs=[nbformat.v4.new_output("stream", text="1")]
            ),
        ]
    )
    nbformat.write(nb, tmp_path / "book" / "01_a.ipynb")
    config = yaml.safe_load(
        publish.student_config(
            tmp_path, tmp_path / "_build" / "student" / "_config.yml"
        ).read_text()
    )
    assert config["sphinx"]["config"] == {"x": 1, "hide_solutions": True}
    assert config["execute"]["cache"] == str(
        tmp_path / "_build" / ".jupyter_cache"
    )  # nothing executes twice
    # the student build's HTML, whose page sources still hold the solutions
    html_dir = tmp_path / "_build" / "student" / "_build" / "html"
    (html_dir / "_sources" / "book").mkdir(parents=True)
    (html_dir / "index.html").write_text("<html>student</html>")
    nbformat.write(nb, html_dir / "_sources" / "book" / "01_a.ipynb")
    (html_dir / "_sources" / "book" / "page.md").write_text(
        "Q\n\n:::{solution} ex\nHIDDEN\n:::\n"
    )
    out = tmp_path / "_build" / "html" / "student"
    for _ in range(2):  # a rebuild replaces its own folder
        assert publish.student_edition(tmp_path, out, html_dir) == (1, 1)
    assert sorted(p.name for p in out.iterdir()) == [
        ".student-edition",
        "_sources",
        "index.html",
        "notebooks",
    ]
    assert "HIDDEN" not in (out / "_sources" / "book" / "page.md").read_text()
    served = nbformat.read(out / "_sources" / "book" / "01_a.ipynb", as_version=4)
    assert "{solution}" not in served.cells[0].source and served.cells[1].outputs == []
    notes = out / "notebooks"
    assert sorted(p.name for p in notes.iterdir()) == [
        "01_a.ipynb",
        "convbias-student.zip",
        "index.html",
    ]
    assert zipfile.ZipFile(notes / "convbias-student.zip").namelist() == ["01_a.ipynb"]
    student = nbformat.read(
        notes / "01_a.ipynb", as_version=4
    )  # the Colab copy without solutions
    assert not any(
        "{solution}" in c.source or "<details>" in c.source for c in student.cells
    )
    assert [c.outputs for c in student.cells if c.cell_type == "code"] == [[]]
    assert 'href="01_a.ipynb"' in (notes / "index.html").read_text()
    foreign = tmp_path / "elsewhere"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("not ours")
    with pytest.raises(
        FileExistsError
    ):  # a folder this script did not write is never replaced
        publish.student_edition(tmp_path, foreign)
    assert (foreign / "mine.txt").exists()
