"""The results cache deletes only what it wrote, loads nothing executable, and never loses a computed result."""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from convbias import cache as rc
from convbias.__main__ import main
from convbias.train import History, fit_ensemble


@pytest.fixture()
def store(tmp_path):
    return rc.ResultCache(tmp_path / "results", active=True)


def _someone_elses_files(root: Path) -> list[Path]:
    """Files a user keeps in the folder: a project, a run's output folder, a stray .pt of their own."""
    files = [
        root / "thesis" / "chapter.tex",
        root / "results" / "02_low_rank_sgd" / "results.json",
        root / "model.pt",
        root / "0123456789abcdef" / "notes.txt",
        root / "weights" / "best.pt",
    ]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("mine")
    return files


def test_prune_and_clear_keep_other_files(store, monkeypatch, capsys):
    theirs = _someone_elses_files(store.root)
    monkeypatch.setattr(rc, "code_fingerprint", lambda: "aaaaaaaaaaaaaaaa")
    store.save("e", {"a": 1}, torch.zeros(100))
    monkeypatch.setattr(rc, "code_fingerprint", lambda: "bbbbbbbbbbbbbbbb")
    store.save("e", {"a": 1}, torch.zeros(10))
    assert set(store.usage()) == {
        "aaaaaaaaaaaaaaaa",
        "bbbbbbbbbbbbbbbb",
    }  # not thesis/, results/, weights/
    lines = []
    store.prune(report=lines.append)
    assert (
        not (store.root / "aaaaaaaaaaaaaaaa").exists()
        and (store.root / "bbbbbbbbbbbbbbbb").exists()
    )
    assert any("aaaaaaaaaaaaaaaa" in ln for ln in lines)
    monkeypatch.setenv(rc.RESULTS_ENV, str(store.root))
    assert main(["cache", "--clear"]) == 0
    out = capsys.readouterr().out
    assert "deleting folder" in out and "bbbbbbbbbbbbbbbb" in out
    assert all(
        f.read_text() == "mine" for f in theirs
    )  # every file of the user is still there
    assert store.usage() == {}


def test_interrupted_saves_are_counted_and_pruned(store, monkeypatch):
    monkeypatch.setattr(rc, "code_fingerprint", lambda: "cccccccccccccccc")
    path = store.save("e", {}, torch.zeros(10))
    tmp = path.with_name(path.name + "k3j_x9ab.tmp")
    tmp.write_bytes(b"x" * 50)
    assert store.usage()["cccccccccccccccc"] == (2, path.stat().st_size + 50)
    monkeypatch.setattr(rc, "code_fingerprint", lambda: "dddddddddddddddd")
    store.prune()
    assert not tmp.exists() and not path.exists()


@pytest.mark.parametrize("where", ["home", "checkout", "root"])
def test_prune_refuses_home_checkout_and_root(where, tmp_path, monkeypatch, capsys):
    if where == "home":
        monkeypatch.setenv("HOME", str(tmp_path))
        root = tmp_path
    elif where == "checkout":
        root = tmp_path / "repo"
        (root / ".git").mkdir(parents=True)
    else:
        root = Path("/")
    monkeypatch.setenv(rc.RESULTS_ENV, str(root))
    if where != "root":
        (root / "0123456789abcdef").mkdir()
        (root / "0123456789abcdef" / ("e-" + "0" * 24 + ".pt")).write_bytes(b"x")
    with pytest.raises(rc.UnsafeCacheRoot):
        rc.ResultCache(root, active=True).prune(keep_current=False)
    assert main(["cache", "--clear"]) != 0
    err = capsys.readouterr().err
    assert "refusing to delete" in err and len(err.strip().splitlines()) == 1
    if where != "root":
        assert (root / "0123456789abcdef").exists()


def _framed(path: Path, payload: dict) -> None:
    """Write ``payload`` as the format frames it (its name, the SHA-256 of the rest, the rest)."""
    import hashlib
    import io

    from convbias import safe_store

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    raw = buffer.getvalue()
    path.write_bytes(
        safe_store.MAGIC + hashlib.sha256(raw).hexdigest().encode() + b"\n" + raw
    )


def test_crafted_cache_file_runs_no_code(store, tmp_path):
    from convbias import safe_store

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = store.path("e", {})
    path.parent.mkdir(parents=True)
    for write in (
        lambda: path.write_bytes(pickle.dumps({"x": Payload()})),
        lambda: torch.save({"x": Payload()}, path),
        lambda: _framed(path, {"x": Payload()}),  # with a valid checksum, too
    ):
        write()
        with pytest.warns(rc.CacheReadWarning):
            assert store.load("e", {}) is None
        assert not marker.exists()
    # a file in the right format naming a class outside the package is refused, too
    tree = (
        '{"t": "obj", "i": 0, "v": {"kind": "dataclass", "cls": "subprocess:Popen", '
        '"state": {"t": "dict", "v": []}}}'
    )
    _framed(
        path,
        {
            "format": safe_store.FORMAT,
            "key": rc.ResultCache._key(path),
            "tree": tree,
            "tree_sha256": hashlib.sha256(tree.encode()).hexdigest(),
            "tensors": [],
            "tensor_sha256": [],
        },
    )
    with pytest.raises(safe_store.UnsafeFile, match="outside"):
        safe_store.load(path)
    with pytest.warns(rc.CacheReadWarning, match="outside"):
        assert store.load("e", {}) is None


def test_results_round_trip_in_the_safe_format(store):
    X, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    ens = fit_ensemble(
        lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)),
        X,
        y,
        seeds=[0, 1],
        steps=3,
        log_every=1,
        progress=False,
    )
    h = History()
    h.record(1, loss=np.array([0.5, np.nan]), acc=0.25)
    value = {
        "ens": ens,
        "hist": h,
        "bytes": b"\x89PNG",
        3: (1.5, np.float32(2.0), None, {"s"}),
        "arr": np.arange(6).reshape(2, 3),
    }
    store.save("e", {}, value)
    back = store.load("e", {})
    assert torch.equal(back["ens"].forward(X), ens.forward(X))
    assert back["ens"].history["loss"].tolist() == ens.history["loss"].tolist()
    assert back["hist"].step == [1] and np.isnan(back["hist"]["loss"][0, 1])
    assert back["bytes"] == b"\x89PNG" and back[3] == (
        1.5,
        np.float32(2.0),
        None,
        {"s"},
    )
    assert np.array_equal(back["arr"], value["arr"])
    shared = nn.ReLU()
    net = nn.Sequential(nn.Linear(2, 2), shared, nn.Linear(2, 2), shared)
    store.save("n", {}, net)
    again = store.load("n", {})
    assert again[1] is again[3] and torch.equal(
        again(torch.ones(1, 2)), net(torch.ones(1, 2))
    )


def test_failed_write_warns_and_returns_the_result(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = rc.ResultCache(
        blocker / "results", active=True
    )  # cannot be created: a file is in the way
    with pytest.warns(rc.CacheWriteWarning, match="not stored"):
        assert cache.cached("e", {}, lambda: 42) == 42
    with pytest.warns(rc.CacheWriteWarning):
        assert (
            cache.cached("f", {}, lambda: lambda: 1)() == 1
        )  # a lambda cannot be stored
    assert not list(tmp_path.rglob("*.tmp"))


def test_unusable_folder_with_the_cache_off_does_not_crash(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("CONVBIAS_CACHE", str(blocker / "sub"))
    monkeypatch.delenv(rc.RESULTS_ENV, raising=False)
    monkeypatch.setenv(rc.SWITCH_ENV, "off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rc.ResultCache().cached("e", {}, lambda: 7) == 7
