"""The package, the tests, the tools and the notebooks are formatted and linted by ruff.

The book shows code in a column of about 81 characters, so the line length is 88
(``[tool.ruff]`` in pyproject.toml) and the notebooks are formatted like the package.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["pkg", "tests", "tools", "benchmarks", "book"]


def ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which(
        "ruff"
    )
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    return [exe]


def test_code_is_formatted():
    done = subprocess.run(
        [*ruff(), "format", "--check", *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, (
        "run `ruff format pkg tests tools benchmarks book`:\n" + done.stdout[-3000:]
    )


def test_code_is_linted():
    done = subprocess.run(
        [*ruff(), "check", *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, "`ruff check` reports:\n" + done.stdout[-3000:]
