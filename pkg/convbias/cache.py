"""A results cache: rerunning an experiment with the same configuration and code reuses its result.

Results are stored with ``torch.save`` under a key that hashes the experiment's
name, its configuration (JSON) and a fingerprint of the package's source code,
so any change to either recomputes. Files are written to a temporary name and
renamed into place (atomic): an interrupted run never leaves a truncated file.
:func:`cached_sweep` caches each item of a sweep separately, so a sweep
interrupted midway resumes where it stopped.

The cache lives in ``$CONVBIAS_RESULTS`` (default ``<data cache>/results``) and is
switched off with ``CONVBIAS_RESULTS_CACHE=off`` (the test suite does this, so
tests always recompute).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

RESULTS_ENV = "CONVBIAS_RESULTS"
SWITCH_ENV = "CONVBIAS_RESULTS_CACHE"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the package's Python sources (file names and contents)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_key(name: str, config: Mapping[str, Any]) -> str:
    """Hex key of (name, configuration, code fingerprint); the configuration must be JSON-able."""
    try:
        text = json.dumps({"name": name, "config": config, "code": code_fingerprint()}, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"the configuration of {name!r} must be JSON-serialisable (numbers, strings, lists, "
                        f"dicts): {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def enabled() -> bool:
    value = os.environ.get(SWITCH_ENV, "on").strip().lower()
    if value not in ("on", "off", "1", "0", "true", "false"):
        raise ValueError(f"{SWITCH_ENV}={value!r}: use 'on' or 'off'")
    return value in ("on", "1", "true")


class ResultCache:
    """Load and store results by (name, configuration)."""

    def __init__(self, root: str | Path | None = None, active: bool | None = None):
        if root is None:
            from .data.download import cache_dir

            root = os.environ.get(RESULTS_ENV) or cache_dir() / "results"
        self.root = Path(root)
        self.active = enabled() if active is None else active

    def path(self, name: str, config: Mapping[str, Any]) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        return self.root / f"{safe}-{cache_key(name, config)}.pt"

    def load(self, name: str, config: Mapping[str, Any]) -> Any | None:
        """The stored result, or None when absent, unreadable or the cache is off."""
        path = self.path(name, config)
        if not self.active or not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # a corrupted entry is recomputed, not trusted
            return None

    def save(self, name: str, config: Mapping[str, Any], value: Any) -> Path | None:
        """Store ``value`` atomically; returns the file, or None when the cache is off."""
        if not self.active:
            return None
        path = self.path(name, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(value, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def cached(self, name: str, config: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
        """Return the stored result for (name, config), computing and storing it if needed."""
        value = self.load(name, config)
        if value is None:
            value = compute()
            self.save(name, config, value)
        return value


def cached_sweep(name: str, configs: Sequence[Mapping[str, Any]], run: Callable[[Mapping[str, Any]], Any],
                 cache: ResultCache | None = None, progress: bool = True) -> list:
    """``[run(c) for c in configs]``, each result cached on its own so an interrupted sweep resumes."""
    cache = cache or ResultCache()
    results = []
    for config in tqdm(configs, desc=name, disable=not progress, leave=False):
        results.append(cache.cached(name, config, lambda: run(config)))
    return results
