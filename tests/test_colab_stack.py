"""The package on Google Colab's kernel stack: installing it moves none of Colab's Jupyter packages.

Colab runs IPython 7.34.0, ipykernel 6.17.1, ipywidgets 7.7.1 and traitlets 5.7.1 (on
Python 3.12); upgrading them under a running Colab kernel breaks it. Both tests make a
fresh venv with exactly those versions and install the built wheel with the extra the
Colab cell installs (``chapters``) and the command line's (``cli``):

- marker ``colab`` (part of ``make test``, a few seconds): uv resolves the install
  (``--dry-run``) and would change none of the four;
- marker ``colab_run`` (``make test-colab``, the ``colab-stack`` job of
  ``.github/workflows/tests.yml`` on Python 3.12, about 3 minutes): torch as Colab has it,
  the real install, the four versions checked after it, and chapter 1 run headless under
  the quick profile in that venv.

The venv uses the Python running the tests, or ``CONVBIAS_COLAB_PYTHON``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.colab

#: Google Colab's kernel stack (what its runtime shipped when this was written)
COLAB = {
    "ipython": "7.34.0",
    "ipykernel": "6.17.1",
    "ipywidgets": "7.7.1",
    "traitlets": "5.7.1",
}


def run(*args, cwd: Path | None = None, env: dict | None = None) -> str:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")
    }
    start = time.perf_counter()
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(f"{time.perf_counter() - start:6.1f} s  {' '.join(map(str, args[-3:]))}")
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def installed(python: Path) -> dict[str, str]:
    """The versions of Colab's four packages in the venv of ``python``."""
    code = (
        "import json; from importlib.metadata import version; "
        f"print(json.dumps({{n: version(n) for n in {sorted(COLAB)!r}}}))"
    )
    return json.loads(run(python, "-c", code))


def colab_pinned_venv(tmp: Path) -> Path:
    """A venv with Colab's kernel stack (and nothing else yet); returns its python."""
    import venv

    from uv import find_uv_bin

    base = os.environ.get("CONVBIAS_COLAB_PYTHON", sys.executable)
    env_dir = tmp / "venv"
    if base == sys.executable:
        venv.create(env_dir, with_pip=False)
    else:
        run(find_uv_bin(), "venv", "--quiet", "--python", base, env_dir)
    python = env_dir / "bin" / "python"
    uv = [find_uv_bin(), "pip", "install", "--quiet", "--python", python]
    run(*uv, *(f"{name}=={v}" for name, v in COLAB.items()))
    assert installed(python) == COLAB
    return python


def moved(plan: str) -> list[str]:
    """The lines of uv's ``--dry-run`` plan that remove or add one of Colab's four packages."""
    return [
        line.strip()
        for line in plan.splitlines()
        if re.match(r"\s*[-+] ([\w.-]+)==", line)
        and re.match(r"\s*[-+] ([\w.-]+)==", line)[1].lower() in COLAB
    ]


def test_installing_the_package_would_move_none_of_colabs_kernel_stack(tmp_path, wheel):
    from uv import find_uv_bin

    python = colab_pinned_venv(tmp_path)
    for extras in ("chapters", "chapters,cli"):
        done = subprocess.run(
            [find_uv_bin(), "pip", "install", "--dry-run", "--python", str(python)]
            + [f"convbias[{extras}] @ {wheel.as_uri()}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        plan = done.stdout + done.stderr
        assert "Would install" in plan and "+ convbias @ " in plan, plan[-2000:]
        assert moved(plan) == [], f"convbias[{extras}] would move {moved(plan)}"
    # the check sees a move: the floors the package had before (IPython 8) would upgrade it
    done = subprocess.run(
        [find_uv_bin(), "pip", "install", "--dry-run", "--python", str(python)]
        + ["ipython>=8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert any(m.startswith("+ ipython==") for m in moved(done.stdout + done.stderr))


@pytest.fixture(scope="module")
def colab_venv(tmp_path_factory) -> Path:
    """A venv with Colab's kernel stack and torch; returns its python."""
    from uv import find_uv_bin

    tmp = tmp_path_factory.mktemp("colab")
    python = colab_pinned_venv(tmp)
    uv = [find_uv_bin(), "pip", "install", "--quiet", "--python", python]
    # torch as Colab has it preinstalled (here the CPU wheel pip finds for this Python)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    version = run(
        python,
        "-c",
        "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')",
    )
    run(
        *pip,
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        version.strip(),
        "-d",
        tmp / "torch",
        "torch==2.13.0",
    )
    run(*uv, next((tmp / "torch").glob("torch-*.whl")))
    assert installed(python) == COLAB
    return python


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The package's wheel, built from a copy of its files (the checkout gets no build folders)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "pkg",
        src / "pkg",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp, src)
    return next(tmp.glob("convbias-*.whl"))


@pytest.fixture(scope="module")
def colab_with_package(colab_venv, wheel) -> Path:
    from uv import find_uv_bin

    uv = [find_uv_bin(), "pip", "install", "--quiet", "--python", colab_venv]
    run(*uv, f"convbias[chapters] @ {wheel.as_uri()}")  # what the Colab cell installs
    assert installed(colab_venv) == COLAB, (
        "installing convbias[chapters] moved Colab's stack"
    )
    run(*uv, f"convbias[chapters,cli] @ {wheel.as_uri()}")  # and the headless runner
    assert installed(colab_venv) == COLAB, (
        "installing convbias[cli] moved Colab's stack"
    )
    return colab_venv


@pytest.mark.colab_run
def test_installing_the_package_keeps_colabs_kernel_stack(colab_with_package):
    python = colab_with_package
    out = run(
        python,
        "-c",
        "import convbias, convbias.live, convbias.convex_cnn, cvxpy, nbclient; "
        "print(convbias.__version__, convbias.__file__)",
        cwd=colab_with_package.parent,
    )
    from convbias import __version__

    version, where = out.split()
    assert version == __version__ and "site-packages" in where


@pytest.mark.colab_run
def test_chapter_1_runs_headless_on_colabs_kernel_stack(colab_with_package, tmp_path):
    out = run(
        colab_with_package,
        "-m",
        "convbias",
        "run",
        "1",
        "--profile",
        "quick",
        "--no-cache",
        "--out",
        tmp_path,
        cwd=ROOT,
        env={
            "CONVBIAS_RESULTS_CACHE": "off",
            "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
        },
    )
    assert "all checks passed" in out, out
    assert installed(colab_with_package) == COLAB
