import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from convbias import notebooks as nbt
from convbias.__main__ import main as cli

MARKDOWN = """Intro.

:::{exercise}
:label: ex-a
Prove it.
:::

:::{solution} ex-a
:class: dropdown
Because.
:::

```{solution} ex-b
Also hidden.
```
Outro.
"""


def write_nb(path: Path, cells) -> Path:
    nb = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_config.yml").write_text("title: t\nrepository:\n  url: https://example.org/me/book/\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: C\n    chapters:\n"
        "      - file: book/01_first\n      - file: book/02_second\n")
    for name in ("01_first", "02_second"):
        out = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")],
                                        execution_count=3)
        write_nb(tmp_path / "book" / f"{name}.ipynb", [nbformat.v4.new_markdown_cell(MARKDOWN), out])
    return tmp_path


def test_strip_solutions_keeps_exercises():
    text = nbt.strip_solutions(MARKDOWN)
    assert "Because" not in text and "Also hidden" not in text
    assert ":::{exercise}" in text and "Prove it." in text and "Outro." in text


def test_student_version_removes_solutions_and_outputs(book, tmp_path):
    src = book / "book" / "01_first.ipynb"
    assert nbt.student_version(src, tmp_path / "out" / "s.ipynb") == 2
    nb = nbformat.read(tmp_path / "out" / "s.ipynb", as_version=4)
    assert "{solution}" not in nb.cells[0].source
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None


def test_colab_cell_sync_is_first_code_cell_and_idempotent(book):
    assert [p.name for p in nbt.sync_colab_cells(book, check=True)] == ["01_first.ipynb", "02_second.ipynb"]
    assert len(nbt.sync_colab_cells(book)) == 2
    assert nbt.sync_colab_cells(book, check=True) == []
    nb = nbformat.read(book / "book" / "01_first.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "git+https://example.org/me/book" in first.source and "google.colab" in first.source
    assert nbt.COLAB_TAG in first.metadata["tags"]
    assert sum(nbt.COLAB_TAG in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert nbt.sync_colab_cells(book) == []  # nothing to do twice


def test_colab_cell_is_harmless_off_colab():
    namespace = {}
    exec(nbt.colab_cell_source("https://example.org/x"), namespace)  # must not install anything here


def test_chapter_lookup(book):
    assert nbt.chapter_notebook(book, "2").name == "02_second.ipynb"
    assert nbt.chapter_notebook(book, "01_first").name == "01_first.ipynb"
    with pytest.raises(ValueError, match="01_first, 02_second"):
        nbt.chapter_notebook(book, "7")


def test_book_root_search(book, monkeypatch):
    monkeypatch.chdir(book / "book")
    assert nbt.book_root() == book
    with pytest.raises(FileNotFoundError):
        nbt.book_root(Path("/"))


def test_run_headless_writes_figures_values_and_failures(tmp_path):
    cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                                  "from convbias.report import glue\nx = 21"),
        nbformat.v4.new_code_cell("plt.plot([1, 2]); plt.show()\nglue('answer', 2 * x)"),
        nbformat.v4.new_code_cell("assert x == 22, 'x is not 22'"),
        nbformat.v4.new_code_cell("glue('never', 1)"),
    ]
    nb = write_nb(tmp_path / "nb.ipynb", cells)
    summary = nbt.run_headless(nb, tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["values"] == {"answer": 42}
    assert saved["failed_cell"] == 3 and not saved["checks_passed"] and "x is not 22" in saved["error"]
    assert summary["figures"] == ["fig-02-1.png"] and (tmp_path / "out" / "fig-02-1.png").stat().st_size > 0


def test_cli_student_and_colab_check(book, monkeypatch, capsys):
    monkeypatch.chdir(book)
    assert cli(["colab-cell", "--check"]) == 1
    assert cli(["colab-cell"]) == 0
    assert cli(["colab-cell", "--check"]) == 0
    assert cli(["student", str(book / "student")]) == 0
    assert "without 4 solutions" in capsys.readouterr().out
    assert sorted(p.name for p in (book / "student").iterdir()) == ["01_first.ipynb", "02_second.ipynb"]


def test_every_chapter_has_the_same_colab_cell_matching_config():
    root = Path(__file__).resolve().parents[1]
    url = nbt.repository_url(root)
    assert url.startswith("https://")
    assert nbt.sync_colab_cells(root, check=True) == [], "run: python -m convbias colab-cell"
    sources = set()
    for path in nbt.toc_notebooks(root):
        first = nbformat.read(path, as_version=4)
        code = next(c for c in first.cells if c.cell_type == "code")
        sources.add(code.source)
    assert sources == {nbt.colab_cell_source(url)}


def test_reproducibility_page_glue_keys_exist_in_the_chapters():
    import re

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "reproducibility.md").read_text()
    refs = set(re.findall(r"\{glue:(?:text|md)\}`([\w.]+\.ipynb)::(\w+)", page))
    assert len(refs) >= 30
    for notebook, key in refs:
        source = (root / "book" / notebook).read_text()  # notebook JSON: quotes are escaped
        chapter = key.split("_")[0]
        if key.endswith("_run_info"):
            expected = f'glue_run_info(\\"{chapter}\\")'
        elif key.endswith("_checks"):
            expected = f'glue_checks_passed(\\"{chapter}\\")'
        else:
            expected = f'glue(\\"{key}\\"'
        assert expected in source, f"{notebook} does not glue {key}"


def count_into(counter: Path) -> str:
    """Source of a function ``count()`` that appends an ``x`` to the file ``counter`` each time it runs."""
    return (f"from pathlib import Path\ndef count():\n    p = Path({str(counter)!r})\n"
            "    p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n")


def test_run_chapter_reuses_cached_results(tmp_path, results_cache):
    counter = tmp_path / "runs.txt"
    cells = [nbformat.v4.new_code_cell(
        count_into(counter) + "count()\n"
        "import matplotlib.pyplot as plt\nplt.plot([0, 1])\nfrom convbias.report import glue\nglue('v', 7)")]
    nb = write_nb(tmp_path / "ch.ipynb", cells)
    first = nbt.run_chapter(nb, tmp_path / "out1", progress=False)
    second = nbt.run_chapter(nb, tmp_path / "out2", progress=False)
    assert counter.read_text() == "x"  # executed once
    assert not first["cached"] and second["cached"] and second["values"] == {"v": 7}
    assert (tmp_path / "out2" / "results.json").exists() and (tmp_path / "out2" / first["figures"][0]).exists()
    nbt.run_chapter(nb, tmp_path / "out3", use_cache=False, progress=False)
    assert counter.read_text() == "xx"


def test_run_chapter_without_cache_recomputes_the_sweeps_inside(tmp_path, results_cache):
    counter = tmp_path / "items.txt"
    cells = [nbformat.v4.new_code_cell(
        count_into(counter) + "from convbias.cache import resumable\nresumable('item', {'a': 1}, lambda: count() or 1)")]
    nb = write_nb(tmp_path / "ch.ipynb", cells)
    nbt.run_chapter(nb, tmp_path / "out1", use_cache=False, progress=False)
    nbt.run_chapter(nb, tmp_path / "out2", use_cache=False, progress=False)
    assert counter.read_text() == "xx"  # the item was computed both times, never stored
    assert not any(results_cache.iterdir())
    assert os.environ["CONVBIAS_RESULTS_CACHE"] == "on"  # switched back on afterwards


def test_run_profiled_times_every_cell(tmp_path):
    cells = [nbformat.v4.new_code_cell("import time, torch\nx = torch.randn(128, 128)"),
             nbformat.v4.new_code_cell("t = time.perf_counter()\nwhile time.perf_counter() - t < 1.0:\n"
                                       "    y = torch.tanh(x @ x)"),
             nbformat.v4.new_code_cell("z = 1")]
    nb = write_nb(tmp_path / "ch.ipynb", cells)
    summary = nbt.run_profiled(nb, tmp_path / "out", progress=False)
    text = (tmp_path / "out" / "profile.txt").read_text()
    assert summary["checks_passed"] and len(summary["cell_seconds"]) == 3
    assert summary["cell_seconds"][1] >= 1.0 > summary["cell_seconds"][2]
    assert text.splitlines()[2].split() == ["2", f"{summary['cell_seconds'][1]:.2f}"]  # slowest cell first
    assert "sampled windows" in text


def test_sampled_profiler_sums_its_windows_and_restores_the_timer():
    import signal

    import torch

    from convbias.profiling import SampledProfiler

    before = signal.getsignal(signal.SIGALRM)
    x = torch.randn(32, 32)
    with SampledProfiler(tick=3600, every=3) as sampler:  # the timer never fires: steps by hand
        for window in range(6):  # ticks: wait, warm-up, record (x2)
            for _ in range(5 if window % 3 == 2 else 1):
                x = torch.tanh(x @ x)
            sampler._step()
    assert sampler.windows == 2
    assert sampler.calls["aten::mm"] == 10 and sampler.calls["aten::tanh"] == 10  # recorded ticks only
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    shares = [float(line.split()[-3].rstrip("%")) for line in sampler.table().splitlines()[2:]]
    assert abs(sum(shares) - 100) < 1 and shares == sorted(shares, reverse=True)
    with pytest.raises(ValueError):
        SampledProfiler(every=1)
