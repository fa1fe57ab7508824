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
        rc.cached_sweep("sq", configs, run, cache=store, progress=False)
    ran = []
    results = rc.cached_sweep("sq", configs, lambda c: ran.append(c["i"]) or c["i"] ** 2, cache=store, progress=False)
    assert results == [0, 1, 4, 9]
    assert ran == [2, 3]  # items 0 and 1 came from the cache
    assert not list(store.root.glob("*.tmp"))


def test_corrupted_entry_is_recomputed(store):
    store.save("e", {}, 1)
    store.path("e", {}).write_bytes(b"garbage")
    assert store.cached("e", {}, lambda: 2) == 2


def test_switch_off(monkeypatch, tmp_path):
    monkeypatch.setenv(rc.SWITCH_ENV, "off")
    off = rc.ResultCache(tmp_path)
    assert off.save("e", {}, 1) is None and off.load("e", {}) is None
    monkeypatch.setenv(rc.SWITCH_ENV, "maybe")
    with pytest.raises(ValueError, match="on' or 'off"):
        rc.enabled()
