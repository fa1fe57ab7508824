"""A results cache: rerunning an experiment with the same configuration and code reuses its result.

Results are stored in a format that loads nothing executable and is verified on load
(``convbias.safe_store``: a checksum per tensor and of the whole file, and the key inside
the file, so a corrupted file or one copied to another key's name is recomputed after a
:class:`CacheReadWarning`;
tensors and plain containers read by ``torch.load(weights_only=True)``, and only the
package's own dataclasses and ``torch.nn``/``convbias`` modules rebuilt by name) under
a key that hashes the experiment's
name, its configuration (JSON; tensors and modules by their :func:`fingerprint`),
the package version with a fingerprint of its source code, and the torch version,
so any change to either recomputes. Files are written to a temporary name and
renamed into place (atomic): an interrupted run never leaves a truncated file.
The package's sweep functions take a ``cache=`` name (a string) and store each item
separately through :func:`resumable`, so a sweep interrupted midway resumes where it
stopped.

The cache lives in ``$CONVBIAS_RESULTS`` (default ``<data cache>/results``), one
folder per version of the code (``python -m convbias cache --prune`` deletes the
folders of older versions), and is switched off with ``CONVBIAS_RESULTS_CACHE=off``
(the test suite does this, so tests always recompute). A result that cannot be
written (a full disk, a read-only folder, an object the format cannot hold) is
returned all the same, after a warning.

``prune``/``clear`` delete only what this module writes: folders named by a code
fingerprint (16 hex digits) holding nothing but result files ``<name>-<key>.pt`` and
interrupted saves ``<name>-<key>.pt*.tmp``; files at the top level are left alone. They
refuse to run on ``/``, the home folder or a checkout (a folder with ``.git``, or a
book with ``_toc.yml``), and list what they delete.

Used by every chapter (through the sweeps and ``python -m convbias run``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from .config import RESULTS_ENV, results_root

SWITCH_ENV = "CONVBIAS_RESULTS_CACHE"
CODE_FOLDER = re.compile(r"[0-9a-f]{16}")
RESULT_FILE = re.compile(r"[\w-]+-[0-9a-f]{24}\.pt")
TMP_FILE = re.compile(r"[\w-]+-[0-9a-f]{24}\.pt[A-Za-z0-9_]*\.tmp")


class CacheWriteWarning(UserWarning):
    """A computed result could not be stored (it is returned all the same)."""


class CacheReadWarning(UserWarning):
    """A stored result did not verify (checksums, key, format): it is recomputed, not trusted."""


class UnsafeCacheRoot(ValueError):
    """The results folder is one that prune/clear must not touch (/, the home folder, a checkout)."""


def is_own_file(path: Path) -> bool:
    """True for a file this module writes: a result ``<name>-<key>.pt`` or an interrupted save of one."""
    return (
        path.is_file()
        and not path.is_symlink()
        and bool(RESULT_FILE.fullmatch(path.name) or TMP_FILE.fullmatch(path.name))
    )


def is_own_folder(path: Path) -> bool:
    """True for a code folder this module writes: 16 hex digits, holding only its own files."""
    return (
        path.is_dir()
        and not path.is_symlink()
        and bool(CODE_FOLDER.fullmatch(path.name))
        and all(is_own_file(f) for f in path.iterdir())
    )


def check_safe_root(root: Path) -> Path:
    """``root`` resolved; raises :class:`UnsafeCacheRoot` for ``/``, the home folder or a checkout."""
    resolved = Path(root).expanduser().resolve()
    if resolved == Path(resolved.anchor):
        raise UnsafeCacheRoot(
            f"the results folder {resolved} is the file system root: refusing to delete there. "
            f"Point {RESULTS_ENV} at a folder of its own."
        )
    if resolved == Path.home().resolve():
        raise UnsafeCacheRoot(
            f"the results folder {resolved} is the home folder: refusing to delete there. "
            f"Point {RESULTS_ENV} at a folder of its own."
        )
    for marker in (".git", "_toc.yml", "pyproject.toml"):
        if (resolved / marker).exists():
            raise UnsafeCacheRoot(
                f"the results folder {resolved} is a checkout (it holds {marker}): refusing to "
                f"delete there. Point {RESULTS_ENV} at a folder of its own."
            )
    return resolved


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the package's Python sources (file names and contents)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(value: Any) -> str:
    """A short digest of a tensor, array or module, to put data and architectures into a configuration.

    Tensors and arrays hash their dtype, shape and bytes; a module hashes its
    ``repr`` (the architecture) and its parameters and buffers.
    """
    h = hashlib.sha256()
    if isinstance(value, torch.nn.Module):
        h.update(repr(value).encode())
        for key, t in value.state_dict().items():
            h.update(key.encode())
            h.update(fingerprint(t).encode())
        return "module:" + h.hexdigest()[:20]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        if value.dtype == torch.bfloat16:
            value = value.float()
        array = value.numpy()
    else:
        import numpy as np

        if not isinstance(value, np.ndarray):
            raise TypeError(
                f"cannot fingerprint a {type(value).__name__}: give a tensor, an array or a module"
            )
        array = np.ascontiguousarray(value)
    h.update(f"{array.dtype}{array.shape}".encode())
    h.update(array.tobytes())
    return "data:" + h.hexdigest()[:20]


def _json_default(value: Any) -> Any:
    if (
        isinstance(value, (torch.Tensor, torch.nn.Module))
        or type(value).__module__ == "numpy"
    ):
        if getattr(value, "ndim", 1) == 0 and not isinstance(value, torch.nn.Module):
            return value.item()  # a scalar
        return fingerprint(value)
    if isinstance(value, (torch.device, torch.dtype)):
        return str(value)
    if isinstance(value, (tuple, set, frozenset)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def cache_key(name: str, config: Mapping[str, Any]) -> str:
    """Hex key of (name, configuration, package version and code fingerprint, torch version).

    The configuration holds numbers, strings, lists and dicts; tensors, arrays and
    modules in it are replaced by their :func:`fingerprint`.
    """
    from . import __version__

    try:
        text = json.dumps(
            {
                "name": name,
                "config": config,
                "code": code_fingerprint(),
                "version": __version__,
                "torch": torch.__version__,
            },
            sort_keys=True,
            default=_json_default,
        )
    except TypeError as exc:
        raise TypeError(
            f"the configuration of {name!r} must be JSON-serialisable (numbers, strings, lists, "
            f"dicts, tensors, modules): {exc}"
        ) from exc
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def enabled() -> bool:
    value = os.environ.get(SWITCH_ENV, "on").strip().lower()
    if value not in ("on", "off", "1", "0", "true", "false"):
        raise ValueError(f"{SWITCH_ENV}={value!r}: use 'on' or 'off'")
    return value in ("on", "1", "true")


@contextmanager
def switched_off() -> Iterator[None]:
    """Within this block the results cache neither loads nor stores (everything is recomputed)."""
    previous = os.environ.get(SWITCH_ENV)
    os.environ[SWITCH_ENV] = "off"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SWITCH_ENV, None)
        else:
            os.environ[SWITCH_ENV] = previous


class ResultCache:
    """Load and store results by (name, configuration)."""

    def __init__(self, root: str | Path | None = None, active: bool | None = None):
        self.root = results_root() if root is None else Path(root)
        self.active = enabled() if active is None else active

    def path(self, name: str, config: Mapping[str, Any]) -> Path:
        """``<root>/<code fingerprint>/<name>-<key>.pt``: results of older code sit in other folders."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        return self.root / code_fingerprint() / f"{safe}-{cache_key(name, config)}.pt"

    def _entries(self) -> dict[str, list[Path]]:
        """``{code fingerprint: [files]}`` of everything this module wrote under the root."""
        out: dict[str, list[Path]] = {}
        if not self.root.is_dir():
            return out
        for folder in sorted(p for p in self.root.iterdir() if is_own_folder(p)):
            out[folder.name] = sorted(folder.iterdir())
        return out

    def usage(self) -> dict[str, tuple[int, int]]:
        """``{code fingerprint: (entries, bytes)}`` of what is stored (interrupted saves, ``.tmp``, included)."""
        return {
            code: (len(files), sum(f.stat().st_size for f in files))
            for code, files in self._entries().items()
        }

    def prune(
        self,
        keep_current: bool = True,
        dry_run: bool = False,
        report: Callable[[str], None] | None = None,
    ) -> int:
        """Delete the results of other versions of the code (all results if not ``keep_current``); returns bytes freed.

        Only this module's own folders and files are touched (see the module's notes);
        every folder or file is named to ``report`` before it goes. ``dry_run`` only reports.
        """
        import shutil

        if self.root.exists():
            check_safe_root(self.root)
        entries = self._entries()
        freed = 0
        for code, files in entries.items():
            if keep_current and code == code_fingerprint():
                continue
            size = sum(f.stat().st_size for f in files)
            target = self.root / code
            if report:
                report(
                    f"{'would delete' if dry_run else 'deleting'} folder {target} ({size / 2**20:.1f} MB)"
                )
            if not dry_run:
                shutil.rmtree(target)
            freed += size
        return freed

    def load(self, name: str, config: Mapping[str, Any]) -> Any | None:
        """The stored result, or None when absent or the cache is off.

        A file that does not verify (:func:`convbias.safe_store.load`: checksums, the key
        inside it) gives None after a :class:`CacheReadWarning`.
        """
        return self._read(self.path(name, config)) if self.active else None

    def save(self, name: str, config: Mapping[str, Any], value: Any) -> Path | None:
        """Store ``value`` atomically; returns the file, or None when the cache is off."""
        return self._write(self.path(name, config), value) if self.active else None

    def cached(
        self, name: str, config: Mapping[str, Any], compute: Callable[[], Any]
    ) -> Any:
        """Return the stored result for (name, config), computing and storing it if needed.

        The key is taken before ``compute`` runs, so a configuration holding objects
        that the computation changes (a network it trains) is keyed by their initial state.
        A result that cannot be stored is returned after a ``CacheWriteWarning``.
        """
        if not self.active:
            return compute()
        path = self.path(name, config)
        value = self._read(path)
        if value is None:
            value = compute()
            self._write(path, value)
        return value

    @staticmethod
    def _key(path: Path) -> str:
        """The key a result file is looked up by: its code folder and name (what the file must hold)."""
        return f"{path.parent.name}/{path.name}"

    @staticmethod
    def _read(path: Path) -> Any | None:
        if not path.exists():
            return None
        try:  # tensors come back on the device they were saved from (the key names it), else on the CPU
            from . import safe_store

            location = None if torch.cuda.is_available() else "cpu"
            return safe_store.load(
                path, map_location=location, key=ResultCache._key(path)
            )
        except (
            Exception
        ) as exc:  # corrupted, foreign, copied or unsafe: recomputed, not trusted
            warnings.warn(
                f"the stored result {path} did not verify and is recomputed: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                CacheReadWarning,
                stacklevel=3,
            )
            return None

    @staticmethod
    def _write(path: Path, value: Any) -> Path | None:
        from . import safe_store

        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                safe_store.save(value, f, key=ResultCache._key(path))
            os.replace(tmp, path)
        except (OSError, safe_store.Unstorable, RuntimeError) as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            warnings.warn(
                f"the result was computed but not stored in the results cache ({path.parent}): "
                f"{type(exc).__name__}: {exc}",
                CacheWriteWarning,
                stacklevel=3,
            )
            return None
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise
        return path


def resumable(
    name: str | None,
    config: Mapping[str, Any],
    compute: Callable[[], Any],
    store: ResultCache | None = None,
) -> Any:
    """``compute()``, stored under ``(name, config)`` when ``name`` is given (else just computed).

    The package's sweeps call this once per item (a batch size, a noise level, a
    number of measurements, ...) with the item's full configuration, so a sweep
    given a cache name skips the items an interrupted run already finished. The sweeps'
    ``cache=`` parameter is that name (a string); ``store`` is the :class:`ResultCache`
    itself (default: the one under ``$CONVBIAS_RESULTS``).
    """
    if name is None:
        return compute()
    return (store or ResultCache()).cached(name, config, compute)
