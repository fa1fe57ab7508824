import pytest
import torch

from convbias import cache as rc


@pytest.fixture()
def store(tmp_path):
    return rc.ResultCache(tmp_path, active=True)


def test_same_config_reuses_result(store):
    calls = []
    compute = lambda: calls.append(1) or {"x": torch.arange(3)}
    a = store.cached("exp", {"lr": 0.1}, compute)
    b = store.cached("exp", {"lr": 0.1}, compute)
    assert len(calls) == 1 and torch.equal(a["x"], b["x"])
    store.cached("exp", {"lr": 0.2}, compute)
    assert len(calls) == 2


def test_key_depends_on_name_config_and_code(monkeypatch):
    k = rc.cache_key("a", {"x": 1, "y": [1, 2]})
    assert k == rc.cache_key("a", {"y": [1, 2], "x": 1})  # order does not matter
    assert k != rc.cache_key("b", {"x": 1, "y": [1, 2]})
    assert k != rc.cache_key("a", {"x": 2, "y": [1, 2]})
    monkeypatch.setattr(rc, "code_fingerprint", lambda: "changed")
    assert k != rc.cache_key("a", {"x": 1, "y": [1, 2]})


def test_unserialisable_config_is_clear_error():
    with pytest.raises(TypeError, match="JSON"):
        rc.cache_key("a", {"f": object()})


def test_interrupted_sweep_resumes(store):
    done = []

    def run(config):
        if config["i"] == 2 and not done:
            done.append("crashed")
            raise KeyboardInterrupt
        return config["i"] ** 2

    configs = [{"i": i} for i in range(4)]
    with pytest.raises(KeyboardInterrupt):
        [rc.resumable("sq", c, lambda c=c: run(c), store=store) for c in configs]
    ran = []
    results = [
        rc.resumable(
            "sq", c, lambda c=c: ran.append(c["i"]) or c["i"] ** 2, store=store
        )
        for c in configs
    ]
    assert results == [0, 1, 4, 9]
    assert ran == [2, 3]  # items 0 and 1 came from the cache
    assert not list(store.root.rglob("*.tmp"))


def test_corrupted_entry_is_recomputed(store):
    store.save("e", {}, 1)
    store.path("e", {}).write_bytes(b"garbage")
    with pytest.warns(rc.CacheReadWarning, match="did not verify"):
        assert store.cached("e", {}, lambda: 2) == 2


def test_switch_off(monkeypatch, tmp_path):
    monkeypatch.setenv(rc.SWITCH_ENV, "off")
    off = rc.ResultCache(tmp_path)
    assert off.save("e", {}, 1) is None and off.load("e", {}) is None
    monkeypatch.setenv(rc.SWITCH_ENV, "maybe")
    with pytest.raises(ValueError, match="on' or 'off"):
        rc.enabled()


def test_results_of_older_code_are_pruned(store, monkeypatch, capsys):
    from convbias.__main__ import main

    old, new = "01d0" * 4, "4e40" * 4  # code fingerprints are 16 hex digits
    monkeypatch.setattr(rc, "code_fingerprint", lambda: old)
    store.save("e", {"a": 1}, torch.zeros(1000))
    monkeypatch.setattr(rc, "code_fingerprint", lambda: new)
    store.save("e", {"a": 1}, torch.zeros(10))
    assert (
        store.load("e", {"a": 1}).numel() == 10
    )  # the new code does not see the old result
    usage = store.usage()
    assert set(usage) == {old, new} and usage[old][0] == usage[new][0] == 1
    assert usage[old][1] > usage[new][1]
    top_level = store.root / ("not-in-a-code-folder-" + "0" * 24 + ".pt")
    top_level.write_bytes(b"x" * 10)
    assert set(store.usage()) == {
        old,
        new,
    }  # a file outside the code folders is not a result of ours
    freed = store.prune()
    assert freed == usage[old][1] and set(store.usage()) == {new} and top_level.exists()
    monkeypatch.setenv(rc.RESULTS_ENV, str(store.root))
    assert main(["cache"]) == 0 and "(this code)" in capsys.readouterr().out
    assert main(["cache", "--clear"]) == 0 and store.usage() == {}
    assert "no stored results" in capsys.readouterr().out
