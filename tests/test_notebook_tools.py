import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from convbias import notebooks as nbt
from convbias import runner
from convbias.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))  # maintainers' tooling, outside the wheel

import colab_cell  # noqa: E402

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
    (tmp_path / "_config.yml").write_text(
        "title: t\nrepository:\n  url: https://example.org/me/book/\n"
    )
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: C\n    chapters:\n"
        "      - file: book/01_first\n      - file: book/02_second\n"
    )
    for name in ("01_first", "02_second"):
        out = nbformat.v4.new_code_cell(
            "print(1)",
            outputs=[nbformat.v4.new_output("stream", text="1\n")],
            execution_count=3,
        )
        write_nb(
            tmp_path / "book" / f"{name}.ipynb",
            [nbformat.v4.new_markdown_cell(MARKDOWN), out],
        )
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
    assert [p.name for p in nbt.sync_colab_cells(book, check=True)] == [
        "01_first.ipynb",
        "02_second.ipynb",
    ]
    assert len(nbt.sync_colab_cells(book)) == 2
    assert nbt.sync_colab_cells(book, check=True) == []
    nb = nbformat.read(book / "book" / "01_first.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert (
        'REPOSITORY = "https://example.org/me/book"' in first.source
        and "google.colab" in first.source
    )
    assert first.metadata["tags"] == [
        "colab-setup",
        "remove-cell",
    ]  # remove-cell: not on the page
    assert sum(nbt.COLAB_TAG in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert nbt.sync_colab_cells(book) == []  # nothing to do twice


def test_colab_cell_installs_the_chapters_extra_in_a_checked_subprocess_and_is_harmless_off_colab():
    from IPython.core.inputtransformer2 import TransformerManager

    from convbias import __version__

    source = nbt.colab_cell_source("https://example.org/x/")
    assert (
        f'VERSION = "{__version__}"' in source
    )  # the version the notebook was written for
    assert 'REPOSITORY = "https://example.org/x"' in source
    assert "%pip" not in source  # %pip would not stop the notebook when it fails
    assert '[sys.executable, "-m", "pip", "install", "-q", PACKAGE]' in source
    assert "raise SetupError(" in source and "if pip.returncode != 0:" in source
    assert (
        'os.environ["CONVBIAS_RESULTS"] = "/content/drive/' in source
        and "drive.mount(" in source
    )
    assert "KEEP_RESULTS_ON_DRIVE = False" in source  # the one line a reader changes
    assert max(len(line) for line in source.splitlines()) <= 88
    python = TransformerManager().transform_cell(source)  # as IPython runs it
    namespace = {}
    exec(
        compile(python, "colab-cell", "exec"), namespace
    )  # off Colab: installs nothing, mounts nothing
    assert "PACKAGE" not in namespace


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


FIGURE = (
    "import numpy as np\nfrom convbias.plotting import set_style\nset_style()\n"
    "fig, ax = plt.subplots(figsize=(4, 2))\nax.plot(np.sin(np.linspace(0, 6, 50)))\n"
    "ax.set_title('$\\\\sigma_p$')\n"
)


def test_run_headless_in_a_kernel_writes_what_the_in_process_runner_wrote(tmp_path):
    """Figures (pixel for pixel), glued values, checks and cell times of a small notebook."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cells = [
        nbformat.v4.new_markdown_cell("# a chapter"),
        nbformat.v4.new_code_cell(
            "print('colab only')", metadata={"tags": ["colab-setup"]}
        ),
        nbformat.v4.new_code_cell(
            "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
            "from convbias.report import glue\nx = 21\n!true"
        ),
        nbformat.v4.new_code_cell(
            FIGURE + "plt.show()\nplt.figure(); plt.plot([3, 1])\n"
            "import numpy as np\nglue('answer', 2 * x); glue('arr', np.arange(3))"
        ),
        nbformat.v4.new_code_cell(
            "from convbias.checks import require, at_least, at_most\n"
            "require('chx', [at_least('big', 2, 1, 'two beats one'), at_most('small', 1, 3)])"
        ),
        nbformat.v4.new_code_cell("assert x == 22, 'x is not 22'"),
        nbformat.v4.new_code_cell("glue('never', 1)"),
    ]
    nb = write_nb(tmp_path / "nb.ipynb", cells)
    out = tmp_path / "out"
    out.mkdir()
    for stale in (
        "results.json",
        "fig-09-1.png",
        "nb.ipynb",
    ):  # what an earlier run left
        (out / stale).write_text("old")
    (out / "notes.txt").write_text("mine")
    summary = runner.run_headless(nb, out, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved == {k: v for k, v in summary.items() if k != "profile"}
    assert saved["values"] == {"answer": 42, "arr": [0, 1, 2]}
    assert (
        saved["failed_cell"] == 4
        and not saved["checks_passed"]
        and saved["error"] == "AssertionError: x is not 22"
    )
    assert (
        len(saved["cell_seconds"]) == 4
    )  # the Colab cell is not run; the run stops at the failure
    assert [(c["name"], c["passed"], c["bound"]) for c in saved["checks"]] == [
        ("big", True, 1.0),
        ("small", True, 3.0),
    ]
    assert saved["figures"] == [
        "fig-02-1.png",
        "fig-02-2.png",
    ]  # code cell 2 (Colab cell not counted)
    assert sorted(p.name for p in out.iterdir()) == [
        "fig-02-1.png",
        "fig-02-2.png",
        "nb.ipynb",
        "notes.txt",
        "results.json",
    ]  # stale files gone, the user's kept
    assert (out / "notes.txt").read_text() == "mine"
    executed = nbformat.read(out / "nb.ipynb", as_version=4)
    assert any(
        "image/svg+xml" in o.get("data", {}) for o in executed.cells[3].outputs
    )  # figures in the download, as the page shows them (SVG: plotting.vector_figures)
    # the same figure drawn here and saved as the in-process runner saved it
    namespace = {"plt": plt}
    exec(FIGURE, namespace)
    plt.savefig(tmp_path / "here.png", bbox_inches="tight")
    plt.close("all")
    ours, theirs = (
        np.asarray(Image.open(p).convert("RGB"))
        for p in (out / "fig-02-1.png", tmp_path / "here.png")
    )
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


def test_a_dying_kernel_is_a_failed_run_not_a_crash(tmp_path):
    cells = [
        nbformat.v4.new_code_cell("from convbias.report import glue\nglue('v', 1)"),
        nbformat.v4.new_code_cell("import os\nos._exit(3)"),
        nbformat.v4.new_code_cell("glue('never', 2)"),
    ]
    nb = write_nb(tmp_path / "nb.ipynb", cells)
    summary = runner.run_headless(nb, tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == summary and not saved["checks_passed"] and saved["failed_cell"] == 2
    assert saved["error"].startswith("the kernel died")


def test_python_O_cannot_strip_the_kernels_asserts_and_report_mode_records_failed_checks(
    tmp_path,
):
    cells = [
        nbformat.v4.new_code_cell(
            "from convbias.checks import require, at_least\n"
            "require('chx', [at_least('big', 0, 1)])\nassert 1 == 2, 'stripped?'"
        )
    ]
    nb = write_nb(tmp_path / "nb.ipynb", cells)
    code = (
        "from pathlib import Path; from convbias.runner import run_headless; "
        f"run_headless(Path({str(nb)!r}), Path({str(tmp_path / 'out')!r}), progress=False)"
    )
    subprocess.run(
        [sys.executable, "-O", "-c", code],
        check=True,
        env={**os.environ, "CONVBIAS_CHECKS": "report"},
        timeout=300,
    )
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["failed_cell"] == 1 and saved["error"] == "AssertionError: stripped?"
    assert saved["checks_failed"] == ["big"] and not saved["checks_passed"]


def test_cli_student_and_colab_check(book, monkeypatch, capsys):
    monkeypatch.chdir(book)
    assert colab_cell.main(["--check"]) == 1
    assert colab_cell.main([]) == 0
    assert colab_cell.main(["--check"]) == 0
    assert cli(["student", str(book / "student")]) == 0
    assert "without 4 solutions" in capsys.readouterr().out
    assert sorted(p.name for p in (book / "student").iterdir()) == [
        "01_first.ipynb",
        "02_second.ipynb",
    ]


def test_every_chapter_has_the_same_colab_cell_matching_config():
    root = Path(__file__).resolve().parents[1]
    url = nbt.repository_url(root)
    assert url.startswith("https://")
    assert nbt.sync_colab_cells(root, check=True) == [], (
        "run: python tools/colab_cell.py"
    )
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
        cells = nbformat.read(root / "book" / notebook, as_version=4).cells
        source = "\n".join(c.source for c in cells if c.cell_type == "code")
        chapter = key.split("_")[0]
        if key.endswith("_run_info"):
            expected = rf'start_chapter\(\s*"{chapter}"'
        elif key.endswith("_checks"):
            expected = rf'glue_checks_passed\(\s*"{chapter}"'
        else:
            expected = rf'glue(?:_markdown)?\(\s*"{key}"'  # report.glue_markdown too
        assert re.search(expected, source), f"{notebook} does not glue {key}"


def count_into(counter: Path) -> str:
    """Source of a function ``count()`` that appends an ``x`` to the file ``counter`` each time it runs."""
    return (
        f"from pathlib import Path\ndef count():\n    p = Path({str(counter)!r})\n"
        "    p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
    )


def test_run_chapter_reuses_cached_results_and_without_cache_recomputes_everything(
    tmp_path, results_cache, monkeypatch
):
    monkeypatch.setenv(
        "CONVBIAS_CACHE", str(tmp_path / "data")
    )  # downloads elsewhere would change the key
    counter = tmp_path / "runs.txt"
    cells = [
        nbformat.v4.new_code_cell(
            count_into(counter)
            + "count()\nfrom convbias.cache import resumable\nresumable('item', {'a': 1}, lambda: count() or 1)\n"
            "import matplotlib.pyplot as plt\nplt.plot([0, 1])\nfrom convbias.report import glue\nglue('v', 7)"
        )
    ]
    nb = write_nb(tmp_path / "ch.ipynb", cells)
    first = nbt.run_chapter(nb, tmp_path / "out1", progress=False)
    assert counter.read_text() == "xx"  # the chapter and its item
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "fig-07-1.png").write_text("stale")
    second = nbt.run_chapter(nb, tmp_path / "out2", progress=False)
    assert counter.read_text() == "xx"  # restored, not executed
    assert not first["cached"] and second["cached"] and second["values"] == {"v": 7}
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == [
        "ch.ipynb",
        "fig-01-1.png",
        "results.json",
    ]
    assert (tmp_path / "out2" / "results.json").read_bytes() == (
        tmp_path / "out1" / "results.json"
    ).read_bytes()
    stored = sorted(results_cache.rglob("*"))
    nbt.run_chapter(nb, tmp_path / "out3", use_cache=False, progress=False)
    assert (
        counter.read_text() == "xxxx"
    )  # chapter and item computed again, though both are stored
    assert sorted(results_cache.rglob("*")) == stored  # and nothing more stored
    assert os.environ["CONVBIAS_RESULTS_CACHE"] == "on"  # switched back on afterwards


def test_chapter_key_names_device_data_and_environment(tmp_path, monkeypatch):
    nb = write_nb(tmp_path / "ch.ipynb", [nbformat.v4.new_code_cell("1")])
    data = tmp_path / "data"
    monkeypatch.setenv("CONVBIAS_CACHE", str(data))
    monkeypatch.setenv("CONVBIAS_RESULTS", str(data / "results"))
    monkeypatch.delenv("CONVBIAS_SMOKE", raising=False)
    key = runner.chapter_key(nb)
    assert (
        key["device"] == "cpu"
        and key["profile"] == "quick"
        and key["env"]["CONVBIAS_SMOKE"] is None
    )
    (data / "results").mkdir(parents=True, exist_ok=True)
    (data / "results" / "x.pt").write_bytes(b"1")  # the results cache is not data
    (data / "mnist.part").write_bytes(b"1")  # nor is a download under way
    assert runner.chapter_key(nb) == key
    (data / "mnist").mkdir()
    (data / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(
        b"12345"
    )  # full MNIST downloaded
    assert runner.chapter_key(nb)["data"] == ["mnist/train-images-idx3-ubyte.gz:5"]
    monkeypatch.setenv("CONVBIAS_SMOKE", "1")
    assert runner.chapter_key(nb)["env"]["CONVBIAS_SMOKE"] == "1"
    monkeypatch.setenv("CONVBIAS_SEED", "7")  # another seed is another result
    assert runner.chapter_key(nb)["env"]["CONVBIAS_SEED"] == "7"


def test_run_profiled_times_every_cell(tmp_path):
    cells = [
        nbformat.v4.new_code_cell("import time, torch\nx = torch.randn(128, 128)"),
        nbformat.v4.new_code_cell(
            "t = time.perf_counter()\nwhile time.perf_counter() - t < 1.0:\n"
            "    y = torch.tanh(x @ x)"
        ),
        nbformat.v4.new_code_cell("z = 1"),
    ]
    nb = write_nb(tmp_path / "ch.ipynb", cells)
    summary = nbt.run_profiled(nb, tmp_path / "out", progress=False, tick=0.05, every=2)
    text = (tmp_path / "out" / "profile.txt").read_text()
    assert summary["completed"] and len(summary["cell_seconds"]) == 3
    assert (
        summary["checks_passed"] is False
    )  # no check was shown: no verdict of "passed"
    assert summary["cell_seconds"][1] >= 1.0 > summary["cell_seconds"][2]
    assert text.splitlines()[2].split() == [
        "2",
        f"{summary['cell_seconds'][1]:.2f}",
    ]  # slowest cell first
    assert (
        "sampled windows" in text and "aten::mm" in text
    )  # sampled in the kernel, where the cells ran


def test_sampled_profiler_sums_its_windows_and_restores_the_timer():
    import signal

    import torch
    from profiling import SampledProfiler  # tools/

    before = signal.getsignal(signal.SIGALRM)
    x = torch.randn(32, 32)
    with SampledProfiler(
        tick=3600, every=3
    ) as sampler:  # the timer never fires: steps by hand
        for window in range(6):  # ticks: wait, warm-up, record (x2)
            for _ in range(5 if window % 3 == 2 else 1):
                x = torch.tanh(x @ x)
            sampler._step()
    assert sampler.windows == 2
    assert (
        sampler.calls["aten::mm"] == 10 and sampler.calls["aten::tanh"] == 10
    )  # recorded ticks only
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(
        signal.ITIMER_REAL
    ) == (0.0, 0.0)
    shares = [
        float(line.split()[-3].rstrip("%")) for line in sampler.table().splitlines()[2:]
    ]
    assert abs(sum(shares) - 100) < 1 and shares == sorted(shares, reverse=True)
    with pytest.raises(ValueError):
        SampledProfiler(every=1)
