"""A file format for results that loads nothing executable.

``torch.save`` pickles arbitrary objects, and unpickling a crafted file runs code.
Here a value is split into a JSON tree (numbers, strings, lists, dicts, and tagged
nodes) and a list of tensors; the file holds ``{"format", "tree", "tensors"}`` and is
read back with ``torch.load(weights_only=True)``, which only rebuilds tensors and
plain containers. The tree can name classes only of two kinds, looked up by their
qualified name and checked before use:

* dataclasses defined in the ``convbias`` package (``History``, ``RelaxRun``, ...),
* ``torch.nn.Module`` subclasses defined in ``torch.nn`` or in ``convbias``,

and rebuilds them as pickle does (``object.__new__`` and the stored attributes),
without calling any constructor. A class is found only under its own name: the
object an attribute path leads to must have exactly that module and qualified name
(so ``convbias.cache:json.JSONDecoder`` is refused). Anything else (a function, a
lambda, an object of another class) cannot be stored: :func:`encode` raises
:class:`Unstorable`.

Every file is verified on load: it starts with the format's name and a SHA-256 of
the rest, and the rest holds the key it was stored under (the caller's, checked by
:func:`load`), a SHA-256 of the tree and one of each tensor (dtype, shape, bytes).
A file that does not verify in every respect raises :class:`CorruptFile`: a flipped
byte, a truncation, a file copied to another key's name.

Used by the book's results cache (:mod:`convbias.cache`), not by a chapter's code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

FORMAT = "convbias-results/2"
#: a file's first line: the format's name (then the SHA-256 of the rest, then the rest)
MAGIC = FORMAT.encode() + b"\n"
ALLOWED_PACKAGES = ("convbias", "torch.nn")


class Unstorable(TypeError):
    """A value holds an object the safe format cannot represent."""


class UnsafeFile(ValueError):
    """A stored file names a class outside the allowed ones, or is not in this format."""


class CorruptFile(UnsafeFile):
    """A stored file does not verify: its checksums, its key or its structure."""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed_module(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in ALLOWED_PACKAGES)


class _Encoder:
    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.memo: dict[
            int, int
        ] = {}  # id(object) -> index in self.objects (shared objects stay shared)
        self.count = 0
        self.keep: list[
            Any
        ] = []  # keeps memoised objects alive so their ids stay unique

    def tensor(self, t: torch.Tensor) -> int:
        self.tensors.append(t.detach())
        return len(self.tensors) - 1

    def __call__(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and type(v) is int:
            return v
        if isinstance(v, float) and type(v) is float:
            if v != v:  # a NaN keeps its sign and payload bits (JSON has one NaN)
                return {"t": "nan", "v": struct.pack("<d", v).hex()}
            return v
        if (
            isinstance(v, (torch.Tensor, torch.nn.Module))
            or dataclasses.is_dataclass(v)
            and not isinstance(v, type)
        ):
            key = id(v)
            if key in self.memo:
                return {"t": "ref", "i": self.memo[key]}
            self.memo[key] = index = self.count
            self.count += 1
            self.keep.append(v)
            return {"t": "obj", "i": index, "v": self._object(v)}
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biufc":
                raise Unstorable(
                    f"an array of dtype {v.dtype} cannot be stored (numbers and booleans only)"
                )
            return {
                "t": "ndarray",
                # not np.ascontiguousarray, which makes a 0-d array 1-d
                "k": self.tensor(torch.from_numpy(np.array(v, order="C", copy=True))),
            }
        if isinstance(v, np.generic):
            if v.dtype.kind not in "biufc":
                raise Unstorable(f"a NumPy scalar of dtype {v.dtype} cannot be stored")
            return {"t": "npscalar", "dtype": v.dtype.str, "v": self(v.item())}
        if isinstance(v, complex):
            return {"t": "complex", "v": [v.real, v.imag]}
        if isinstance(
            v, (int, float)
        ):  # subclasses such as bool-like enums are not stored as such
            raise Unstorable(f"a {type(v).__name__} cannot be stored")
        if isinstance(v, bytes):
            return {
                "t": "bytes",
                "k": self.tensor(
                    torch.frombuffer(bytearray(v), dtype=torch.uint8)
                    if v
                    else torch.zeros(0, dtype=torch.uint8)
                ),
            }
        if isinstance(v, tuple) and type(v) is tuple:
            return {"t": "tuple", "v": [self(x) for x in v]}
        if isinstance(v, list) and type(v) is list:
            return [self(x) for x in v]
        if isinstance(v, (set, frozenset)):
            return {
                "t": "frozenset" if isinstance(v, frozenset) else "set",
                "v": [self(x) for x in v],
            }
        if isinstance(v, dict) and type(v) in (dict, OrderedDict):
            return {
                "t": "odict" if type(v) is OrderedDict else "dict",
                "v": [[self(k), self(x)] for k, x in v.items()],
            }
        if isinstance(v, torch.dtype):
            return {"t": "dtype", "v": str(v).removeprefix("torch.")}
        if isinstance(v, torch.device):
            return {"t": "device", "v": str(v)}
        if isinstance(v, torch.Size):
            return {"t": "size", "v": list(v)}
        raise Unstorable(
            f"a {type(v).__module__}.{type(v).__qualname__} cannot be stored in the results format"
        )

    def _object(self, v: Any) -> dict:
        if isinstance(v, torch.Tensor):
            if v.is_sparse or v.layout != torch.strided:
                raise Unstorable("sparse tensors are not stored by the results format")
            return {
                "kind": "param" if isinstance(v, torch.nn.Parameter) else "tensor",
                "k": self.tensor(v),
                "grad": bool(v.requires_grad),
            }
        cls = type(v)
        if isinstance(v, torch.nn.Module):
            if not _allowed_module(cls.__module__):
                raise Unstorable(
                    f"module class {_qualname(cls)} is outside torch.nn and convbias: not stored"
                )
            return {
                "kind": "module",
                "cls": _qualname(cls),
                "state": self(dict(vars(v))),
            }
        if not _allowed_module(cls.__module__) or cls.__module__.startswith("torch"):
            raise Unstorable(
                f"dataclass {_qualname(cls)} is not a convbias class: not stored"
            )
        return {
            "kind": "dataclass",
            "cls": _qualname(cls),
            "state": self(dict(vars(v))),
        }


def encode(value: Any) -> tuple[str, list[torch.Tensor]]:
    """``(JSON tree, tensors)`` of ``value``; raises :class:`Unstorable` for what cannot be represented."""
    enc = _Encoder()
    tree = enc(value)
    return json.dumps(tree, allow_nan=True), enc.tensors


def _lookup(name: str, kind: str) -> type:
    module, _, qual = name.partition(":")
    if not _allowed_module(module):
        raise UnsafeFile(
            f"the file names class {name}, outside {ALLOWED_PACKAGES}: refused"
        )
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise UnsafeFile(f"{name} is not a class: refused")
    if _qualname(obj) != name or not _allowed_module(obj.__module__):
        raise UnsafeFile(
            f"{name} leads to class {_qualname(obj)}, not one of that name: refused"
        )
    if kind == "module" and not issubclass(obj, torch.nn.Module):
        raise UnsafeFile(f"{name} is not an nn.Module: refused")
    if kind == "dataclass" and (
        not dataclasses.is_dataclass(obj) or module.startswith("torch")
    ):
        raise UnsafeFile(f"{name} is not a convbias dataclass: refused")
    return obj


class _Decoder:
    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = tensors
        self.objects: dict[int, Any] = {}

    def __call__(self, n: Any) -> Any:
        if n is None or isinstance(n, (bool, int, float, str)):
            return n
        if isinstance(n, list):
            return [self(x) for x in n]
        if not isinstance(n, dict) or "t" not in n:
            raise UnsafeFile("malformed results file")
        t = n["t"]
        if t == "ref":
            return self.objects[n["i"]]
        if t == "obj":
            return self._object(n["i"], n["v"])
        if t == "ndarray":
            return self.tensors[n["k"]].cpu().numpy().copy()
        if t == "npscalar":
            return np.dtype(n["dtype"]).type(n["v"])
        if t == "nan":
            return struct.unpack("<d", bytes.fromhex(n["v"]))[0]
        if t == "complex":
            return complex(*n["v"])
        if t == "bytes":
            return self.tensors[n["k"]].cpu().numpy().tobytes()
        if t == "tuple":
            return tuple(self(x) for x in n["v"])
        if t in ("set", "frozenset"):
            items = [self(x) for x in n["v"]]
            return set(items) if t == "set" else frozenset(items)
        if t in ("dict", "odict"):
            pairs = [(self(k), self(x)) for k, x in n["v"]]
            return OrderedDict(pairs) if t == "odict" else dict(pairs)
        if t == "dtype":
            dtype = getattr(torch, n["v"], None)
            if not isinstance(dtype, torch.dtype):
                raise UnsafeFile(f"unknown dtype {n['v']!r}")
            return dtype
        if t == "device":
            return torch.device(n["v"])
        if t == "size":
            return torch.Size(n["v"])
        raise UnsafeFile(f"unknown node {t!r} in a results file")

    def _object(self, index: int, spec: dict) -> Any:
        kind = spec["kind"]
        if kind in ("tensor", "param"):
            t = self.tensors[spec["k"]]
            t = (
                torch.nn.Parameter(t, requires_grad=spec["grad"])
                if kind == "param"
                else t.requires_grad_(spec["grad"])
            )
            self.objects[index] = t
            return t
        cls = _lookup(spec["cls"], kind)
        obj = object.__new__(cls)
        self.objects[index] = obj  # before its state: a state may refer back to it
        state = self(spec["state"])
        if not isinstance(state, dict):
            raise UnsafeFile("malformed object state")
        obj.__dict__.update(state)
        return obj


def decode(tree: str, tensors: list[torch.Tensor]) -> Any:
    """Inverse of :func:`encode`."""
    return _Decoder(tensors)(json.loads(tree))


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (on the CPU)."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():  # an empty tensor's view may have stride 0, which .view() refuses
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def save(value: Any, f: BinaryIO | str | Path, key: str = "") -> None:
    """Write ``value`` in the safe format under ``key`` (the name it will be looked up by).

    The file: :data:`MAGIC`, the SHA-256 of the payload, then the payload, a
    ``torch.save`` of the tree string, the plain tensors, their digests and ``key``.
    """
    tree, tensors = encode(value)
    buffer = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "key": key,
            "tree": tree,
            "tree_sha256": _text_digest(tree),
            "tensors": tensors,
            "tensor_sha256": [tensor_digest(t) for t in tensors],
        },
        buffer,
    )
    payload = buffer.getvalue()
    data = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    if isinstance(f, (str, Path)):
        Path(f).write_bytes(data)
    else:
        f.write(data)


def load(path: str | Path, map_location: Any = None, key: str | None = None) -> Any:
    """Read a file written by :func:`save` and verify it; ``torch.load(weights_only=True)``: no code is run.

    ``key``: the key the caller looks the file up by; a file stored under another raises
    :class:`CorruptFile`, as does any checksum or structure that does not verify.
    """
    data = Path(path).read_bytes()
    head, digest, payload = (
        data[: len(MAGIC)],
        data[len(MAGIC) : len(MAGIC) + 65],
        data[len(MAGIC) + 65 :],
    )
    if head != MAGIC:
        raise CorruptFile(f"{path} is not a {FORMAT} file")
    if digest != hashlib.sha256(payload).hexdigest().encode() + b"\n":
        raise CorruptFile(f"{path}: its content does not match its checksum")
    try:
        raw = torch.load(
            io.BytesIO(payload), map_location=map_location, weights_only=True
        )
    except Exception as exc:
        raise CorruptFile(f"{path}: unreadable ({type(exc).__name__})") from None
    fields = ("format", "key", "tree", "tree_sha256", "tensors", "tensor_sha256")
    if not isinstance(raw, dict) or sorted(raw) != sorted(fields):
        raise CorruptFile(f"{path}: not the fields of a {FORMAT} file")
    if raw["format"] != FORMAT:
        raise CorruptFile(f"{path} is not a {FORMAT} file")
    if key is not None and raw["key"] != key:
        raise CorruptFile(
            f"{path} holds the result stored under key {raw['key']!r}, not {key!r}"
        )
    tree, tensors = raw["tree"], raw["tensors"]
    if not isinstance(tree, str) or _text_digest(tree) != raw["tree_sha256"]:
        raise CorruptFile(f"{path}: the result's structure does not match its checksum")
    sums = raw["tensor_sha256"]
    if (
        not isinstance(tensors, list)
        or not isinstance(sums, list)
        or len(tensors) != len(sums)
        or not all(isinstance(t, torch.Tensor) for t in tensors)
        or any(tensor_digest(t) != d for t, d in zip(tensors, sums))
    ):
        raise CorruptFile(f"{path}: a stored tensor does not match its checksum")
    return decode(tree, tensors)
