"""The package on Google Colab's kernel stack: installing it moves none of Colab's Jupyter packages.

Colab runs IPython 7.34.0, ipykernel 6.17.1, ipywidgets 7.7.1 and traitlets 5.7.1 (on
Python 3.12); upgrading them under a running Colab kernel breaks it. The test makes a
fresh venv with exactly those versions (and torch, as Colab has it), installs the built
wheel with the extra the Colab cell installs (``chapters``) and then the command line's
(``cli``), and checks after each install that those four versions did not move.

Marker ``colab`` (part of ``make test``, about half a minute). With marker
``colab_run`` as well, chapter 1 then runs headless under the quick profile in that
venv (about two CPU minutes): ``make test-colab`` and the ``colab-stack`` job of
``.github/workflows/tests.yml`` (on Python 3.12, Colab's) run both. The venv uses the
Python running the tests, or ``CONVBIAS_COLAB_PYTHON``.
"""

from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="module")
def colab_venv(tmp_path_factory) -> Path:
    """A venv with Colab's kernel stack and torch; returns its python."""
    import venv

    from uv import find_uv_bin

    tmp = tmp_path_factory.mktemp("colab")
    base = os.environ.get("CONVBIAS_COLAB_PYTHON", sys.executable)
    env_dir = tmp / "venv"
    if base == sys.executable:
        venv.create(env_dir, with_pip=False)
    else:
        run(find_uv_bin(), "venv", "--quiet", "--python", base, env_dir)
    python = env_dir / "bin" / "python"
    uv = [find_uv_bin(), "pip", "install", "--quiet", "--python", python]
    # torch as Colab has it preinstalled (here the CPU wheel pip finds for this Python)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    version = run(
        python, "-c", "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')"
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
    run(*uv, *(f"{name}=={v}" for name, v in COLAB.items()))
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
