"""pytest set-up: the quick profile, and every notebook listed in _toc.yml run by nbval.

``pytest tests`` collects the unit tests in this folder and, through nbval in
lax mode (cells run, outputs not compared), each notebook of the book's table of
contents. ``CONVBIAS_SKIP_NOTEBOOKS=1`` leaves the notebooks out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["CONVBIAS_PROFILE"] = "quick"  # tests always use the quick profile
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["CONVBIAS_RESULTS_CACHE"] = "off"  # tests always recompute


def pytest_configure(config):
    if os.environ.get("CONVBIAS_SKIP_NOTEBOOKS") == "1":
        return
    targets = [Path(a.split("::")[0]).resolve() for a in config.args]
    if any(t == ROOT / "tests" or t == ROOT for t in targets):
        config.option.nbval_lax = True
        config.option.nbval_current_env = True
        from convbias.notebooks import toc_notebooks

        config.args.extend(
            str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)
            for p in toc_notebooks(ROOT)
        )


@pytest.fixture(autouse=True)
def no_leaked_settings():
    """A test that leaves a ``CONVBIAS_*`` variable changed fails (and the variable is put
    back): the notebooks run later in the same worker inherit the environment, and a leaked
    ``CONVBIAS_PROFILE=full`` once ran a chapter at full size under the tests."""
    before = {k: v for k, v in os.environ.items() if k.startswith("CONVBIAS_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("CONVBIAS_")}
    if after != before:
        for key in set(after) - set(before):
            del os.environ[key]
        os.environ.update(before)
        changed = sorted(
            k for k in set(before) | set(after) if before.get(k) != after.get(k)
        )
        pytest.fail(f"the test left {', '.join(changed)} changed in the environment")


@pytest.fixture()
def results_cache(tmp_path, monkeypatch) -> Path:
    """The results cache switched on, in a fresh folder (returned); off again after the test."""
    root = tmp_path / "results-cache"
    root.mkdir()
    monkeypatch.setenv("CONVBIAS_RESULTS", str(root))
    monkeypatch.setenv("CONVBIAS_RESULTS_CACHE", "on")
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one intra-op thread for a module's tests (the chapters' calibrated runs), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
