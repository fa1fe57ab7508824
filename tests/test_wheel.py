"""The built wheel installs into a fresh virtual environment and its command line works there.

This is what a reader's ``pip install convbias`` gets: no extras, no checkout on the
path. The test builds the wheel from a copy of the package's files, makes a venv
without system site-packages, installs torch first (the wheel ``pip download
torch==2.13.0`` finds: the CPU build) and then the wheel with its declared
dependencies, imports the library's modules, and runs ``python -m convbias --version`` and
``convbias --version``; ``convbias student`` on a copy of the book then answers in one line
that it needs the ``cli`` extra, and runs once ``convbias[cli]`` is installed.

The installs use ``uv pip`` (the test extra's ``uv``), which resolves the same metadata
as pip but fetches in parallel and links files from its cache: about 25 s instead of
pip's 2-4 minutes, most of which pip spends querying the index one package at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.wheel

# the command line's modules (importing every module would add half a minute of torch, scikit-learn
# and scikit-image imports; test_publishing checks every import of the package against pyproject)
IMPORTS = (
    "import convbias, convbias.checks, convbias.notebooks, convbias.runner, convbias.rank; "
    "print(convbias.__file__)"
)


def run(*args: str | Path, cwd: Path | None = None, status: int = 0) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    start = time.perf_counter()
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(
        f"{time.perf_counter() - start:6.1f} s  {' '.join(Path(str(a)).name for a in args[-4:])}"
    )
    assert done.returncode == status, (
        f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout if status == 0 else done.stderr


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    from convbias import __version__

    src = (
        tmp_path / "src"
    )  # build from a copy: the checkout gets no build/ or egg-info folders
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "pkg",
        src / "pkg",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(
        *pip,
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp_path / "dist",
        src,
    )
    wheel = next((tmp_path / "dist").glob("convbias-*.whl"))
    assert wheel.name.startswith(f"convbias-{__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert "convbias/py.typed" in names and "convbias/runner.py" in names
    assert not [
        n for n in names if n.endswith(("browser.py", "profiling.py"))
    ]  # maintainers' tools stay out
    metadata = (
        zipfile.ZipFile(wheel)
        .read(f"convbias-{__version__}.dist-info/METADATA")
        .decode()
    )
    assert "License-Expression: MIT" in metadata

    from uv import find_uv_bin

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    python = env_dir / "bin" / "python"
    run(
        *pip,
        "download",
        "--quiet",
        "--no-deps",
        "-d",
        tmp_path / "torch",
        "torch==2.13.0",
    )
    target = [find_uv_bin(), "pip", "install", "--quiet", "--python", python]
    run(*target, next((tmp_path / "torch").glob("torch-*.whl")))
    run(*target, wheel)
    assert "site-packages" in run(
        python, "-c", IMPORTS, cwd=tmp_path
    )  # the installed copy, no checkout

    assert (
        run(python, "-m", "convbias", "--version", cwd=tmp_path).split()[-1]
        == __version__
    )
    assert (
        run(env_dir / "bin" / "convbias", "--version", cwd=tmp_path).split()[-1]
        == __version__
    )
    book = tmp_path / "book-copy"
    book.mkdir()
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / name, book / name)
    shutil.copytree(ROOT / "book", book / "book")
    assert (
        run(python, "-c", "import nbclient", cwd=tmp_path, status=1).count("nbclient")
        > 0
    )  # the base install carries no Jupyter runtime
    refused = run(
        env_dir / "bin" / "convbias",
        "student",
        tmp_path / "handout",
        cwd=book,
        status=2,
    )
    assert refused.count("\n") == 1 and "pip install 'convbias[cli]'" in refused
    run(*target, f"convbias[cli] @ {wheel.as_uri()}")
    out = run(env_dir / "bin" / "convbias", "student", tmp_path / "handout", cwd=book)
    chapters = sorted(p.name for p in (tmp_path / "handout").glob("*.ipynb"))
    assert len(chapters) >= 5 and f"wrote {len(chapters)} notebooks" in out
