"""The command line: one-line errors with a non-zero exit for a user's mistakes, --version, a safe student command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import convbias
from convbias.__main__ import main
from convbias.notebooks import SOLUTION_BLOCK, toc_notebooks

ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    expected = convbias.__version__
    assert capsys.readouterr().out.strip() == f"convbias {expected}"


def test_unknown_chapter_is_one_line(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["run", "9"]) == 2
    assert "no chapter '9'" in _one_line_error(capsys)


def test_a_command_leaves_its_callers_environment_as_it_was(capsys):
    """Before: ``main(["estimate", ...])`` (default ``--profile full``) left
    ``CONVBIAS_PROFILE=full`` in the calling process, and a test worker then ran a chapter's
    notebook at full size."""
    import os

    before = dict(os.environ)
    assert main(["run", "no-such-chapter", "--profile", "full", "--seed", "3"]) == 2
    assert dict(os.environ) == before
    assert main(["estimate", "no-such-chapter"]) == 2
    assert dict(os.environ) == before


def test_bad_profile_is_one_line(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CONVBIAS_PROFILE", "fast")
    assert main(["run", "1"]) == 2
    assert "not a profile" in _one_line_error(capsys)


def test_outside_a_checkout_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "1"]) == 2
    assert "no _toc.yml" in _one_line_error(capsys)


def test_no_traceback_from_the_real_command(tmp_path):
    env = {
        "PYTHONPATH": str(Path(convbias.__file__).resolve().parents[1]),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "convbias", "run", "9"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert (
        done.returncode == 2
        and "Traceback" not in done.stderr
        and done.stderr.count("\n") == 1
    )


def _copy_book(tmp_path: Path) -> Path:
    book = tmp_path / "checkout"
    book.mkdir()
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / name, book / name)
    shutil.copytree(ROOT / "book", book / "book")
    return book


def test_student_refuses_the_book_itself(tmp_path, monkeypatch, capsys):
    book = _copy_book(tmp_path)
    before = {p: p.read_bytes() for p in toc_notebooks(book)}
    monkeypatch.chdir(book)
    for target in ("book", "book/handout"):
        assert main(["student", target]) == 2
        assert "book's own folder" in _one_line_error(capsys)
    assert {
        p: p.read_bytes() for p in toc_notebooks(book)
    } == before  # solutions intact


def test_student_refuses_to_overwrite_without_force(tmp_path, monkeypatch, capsys):
    book = _copy_book(tmp_path)
    monkeypatch.chdir(book)
    handout = tmp_path / "handout"
    handout.mkdir()
    first = toc_notebooks(book)[0].name
    (handout / first).write_text("my annotated copy")
    assert main(["student", str(handout)]) == 2
    assert "--force" in _one_line_error(capsys)
    assert (handout / first).read_text() == "my annotated copy" and len(
        list(handout.iterdir())
    ) == 1
    assert main(["student", str(handout), "--force"]) == 0
    written = sorted(p.name for p in handout.glob("*.ipynb"))
    assert written == sorted(p.name for p in toc_notebooks(book))
    assert not any(
        SOLUTION_BLOCK.search(p.read_text()) for p in handout.glob("*.ipynb")
    )
    assert not list(handout.glob("*.part"))
