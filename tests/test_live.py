"""Progress bars and widgets leave nothing behind in a static build."""

import matplotlib

matplotlib.use("Agg")

from convbias import live


def test_static_build_disables_progress(monkeypatch):
    monkeypatch.setenv(live.STATIC_VAR, "1")
    assert live.is_static()
    bar = live.progress(range(3), desc="x")
    assert bar.disable and list(bar) == [0, 1, 2]
    monkeypatch.setenv(live.STATIC_VAR, "0")
    assert not live.is_static()
    assert not live.progress(range(3)).disable
    assert live.progress(range(3), enabled=False).disable


def test_static_explore_draws_the_default_once(monkeypatch, capsys):
    from ipywidgets import IntSlider

    monkeypatch.setenv(live.STATIC_VAR, "1")
    calls = []
    live.explore(lambda k: calls.append(k), k=IntSlider(value=4, min=1, max=9))
    assert calls == [4]
    assert "run the notebook live" in capsys.readouterr().out


def test_start_chapter_fixes_seed_and_returns_it(monkeypatch, capsys):
    import torch

    from convbias.chapter import start_chapter
    from convbias.config import SEED_VAR

    monkeypatch.setenv(SEED_VAR, "5")
    run = start_chapter("chx", seed=2)
    first = torch.rand(1)
    start_chapter("chx", seed=2)
    assert run.seed == 5 and torch.equal(first, torch.rand(1))
    out = capsys.readouterr().out
    assert out.count("seed=5") == 2 and "thread" in out
