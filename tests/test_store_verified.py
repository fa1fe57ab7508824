"""The results store returns exactly what was stored, or recomputes after a warning.

Every file carries a checksum of its content, one per tensor and the key it was stored
under; a class is rebuilt only under its own name. Property-based tests (hypothesis):
random results round-trip exactly, random corruptions of a stored file are always detected.
"""

from __future__ import annotations

import hashlib
import io
import math
import shutil
import struct
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convbias import cache as rc
from convbias import safe_store


@pytest.fixture()
def store(tmp_path):
    return rc.ResultCache(tmp_path / "results", active=True)


# ----------------------------------------------------------------------------- random results
DTYPES = [torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool]
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 3), min_size=0, max_size=3))
    n = math.prod(shape)
    if dtype.is_floating_point:
        values = draw(st.lists(floats, min_size=n, max_size=n))
    elif dtype == torch.bool:
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    else:
        low = 0 if dtype == torch.uint8 else -(2**62)
        high = 255 if dtype == torch.uint8 else 2**62
        values = draw(st.lists(st.integers(low, high), min_size=n, max_size=n))
    return torch.tensor(values, dtype=dtype).reshape(shape)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    floats,
    st.text(max_size=8),
    st.binary(max_size=8),
    tensors(),
    tensors().map(lambda t: t.numpy().copy()),
)
results = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=12,
)


def same(a, b) -> bool:
    """Exact equality: types, float bits (NaN, -0.0), tensor dtypes, shapes and bytes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, torch.Tensor):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and (
                a.numel() == 0
                or bytes(a.reshape(-1).view(torch.uint8).tolist())
                == bytes(b.reshape(-1).view(torch.uint8).tolist())
            )
        )
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FAST
@given(value=results)
def test_random_results_round_trip_exactly(store, value):
    """Found by this test: a 0-d NumPy array came back 1-d (np.ascontiguousarray), an empty
    one could not be checksummed, and a NaN lost its sign bit (JSON has one NaN)."""
    path = store.save("r", {"k": 1}, value)
    assert path is not None
    back = store.load("r", {"k": 1})
    assert same(back, value)


@st.composite
def corruptions(draw, size: int):
    """(kind, position, bytes): flip a byte, truncate, insert or append."""
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "append"]))
    position = draw(st.integers(0, size - 1))
    data = draw(st.binary(min_size=1, max_size=4))
    return kind, position, data


def corrupt(raw: bytes, kind: str, position: int, data: bytes) -> bytes:
    if kind == "flip":
        flipped = raw[position] ^ (data[0] or 1)
        return raw[:position] + bytes([flipped]) + raw[position + 1 :]
    if kind == "truncate":
        return raw[:position]
    if kind == "insert":
        return raw[:position] + data + raw[position:]
    return raw + data


def _stored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stored")
    store = rc.ResultCache(folder, active=True)
    value = {
        "w": torch.linspace(-1, 1, 40).reshape(5, 8),
        "steps": [1, 2, 3],
        "acc": 0.875,
        "png": b"\x89PNG....",
    }
    path = store.save("r", {}, value)
    return store, path, path.read_bytes()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    return _stored(tmp_path_factory)


@FAST
@given(data=st.data())
def test_random_corruptions_are_always_detected(stored, data):
    store, path, raw = stored
    kind, position, extra = data.draw(corruptions(len(raw)))
    bad = corrupt(raw, kind, position, extra)
    assert bad != raw
    path.write_bytes(bad)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            assert store.load("r", {}) is None  # detected: not served
        assert any("did not verify" in str(w.message) for w in said)
        with pytest.raises(safe_store.CorruptFile):
            safe_store.load(path, key=rc.ResultCache._key(path))
    finally:
        path.write_bytes(raw)
    assert store.load("r", {})["acc"] == 0.875


# ----------------------------------------------------------------------------- the cases of issue 25
def test_a_changed_tensor_byte_is_detected_and_recomputed_with_a_warning(store):
    """Before: tensor bytes were not checksummed (85 of 1,800 fuzzed files loaded altered values)."""
    store.save("e", {}, {"w": torch.zeros(64)})
    path = store.path("e", {})
    raw = bytearray(path.read_bytes())
    at = bytes(raw).rfind(b"\x00" * 64)  # inside the tensor's storage
    raw[at + 3] = 0x3F
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        value = store.cached("e", {}, lambda: {"w": torch.ones(3)})
    assert value["w"].tolist() == [1.0, 1.0, 1.0]  # recomputed, not the altered zeros
    assert any("did not verify" in str(w.message) for w in said)
    assert store.load("e", {})["w"].tolist() == [1.0, 1.0, 1.0]  # stored again


def test_a_file_copied_to_another_keys_path_is_not_served(store):
    """Before: a file copied under another key's name was served as that key's result."""
    store.save("e", {"lr": 0.1}, 0.1)
    other = store.path("e", {"lr": 0.5})
    shutil.copy(store.path("e", {"lr": 0.1}), other)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert store.load("e", {"lr": 0.5}) is None
        assert store.cached("e", {"lr": 0.5}, lambda: 0.5) == 0.5
    assert any("stored under key" in str(w.message) for w in said)
    assert store.load("e", {"lr": 0.5}) == 0.5  # recomputed, stored under its own key


def test_a_tensor_and_its_own_checksum_both_changed_is_still_detected(store):
    """Per-tensor checksums sit inside a checksummed payload: rewriting both still fails."""
    store.save("e", {}, {"w": torch.zeros(4)})
    path = store.path("e", {})
    raw = path.read_bytes()
    payload = raw[len(safe_store.MAGIC) + 65 :]
    inner = torch.load(io.BytesIO(payload), weights_only=True)
    inner["tensors"][0] = torch.ones(4)
    inner["tensor_sha256"][0] = safe_store.tensor_digest(torch.ones(4))
    buffer = io.BytesIO()
    torch.save(inner, buffer)
    path.write_bytes(
        safe_store.MAGIC
        + hashlib.sha256(payload).hexdigest().encode()
        + b"\n"
        + buffer.getvalue()
    )
    with pytest.raises(safe_store.CorruptFile, match="checksum"):
        safe_store.load(path)


def test_classes_are_found_only_under_their_own_name():
    """Before: an attribute path (``convbias.cache:torch.jit.ScriptModule``) reached classes outside the allow-list."""
    for name, kind in [
        ("convbias.cache:torch.jit.ScriptModule", "module"),
        ("torch.nn:modules.module.torch.jit.ScriptModule", "module"),
        ("convbias.cache:json.JSONDecoder", "dataclass"),
    ]:
        with pytest.raises(safe_store.UnsafeFile):
            safe_store._lookup(name, kind)
    assert (
        safe_store._lookup("torch.nn.modules.linear:Linear", "module")
        is torch.nn.Linear
    )
