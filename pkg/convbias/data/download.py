"""Checksum-verified downloads into a cache directory, written atomically.

A file is streamed to ``<name>.part`` beside its destination, hashed on the
way, and renamed into place only when the checksum matches: an interrupted or
corrupted download never leaves a half-written file under the final name.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

CACHE_ENV = "CONVBIAS_CACHE"


class DownloadError(RuntimeError):
    """A file could not be fetched (offline, unreachable host, HTTP error)."""


class ChecksumError(DownloadError):
    """A fetched or cached file does not match its expected checksum."""


def cache_dir() -> Path:
    """Directory for downloaded data: ``$CONVBIAS_CACHE`` or ``~/.cache/convbias``."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "convbias")
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, checksum: str, algorithm: str = "md5", timeout: float = 15.0) -> Path:
    """Fetch ``url`` to ``dest`` unless a file with the right checksum is already there.

    Raises :class:`DownloadError` when the file cannot be fetched and
    :class:`ChecksumError` when its content is wrong; in both cases nothing is
    left at ``dest`` or at the temporary ``dest.part``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if file_digest(dest, algorithm) == checksum:
            return dest
        dest.unlink()  # stale or corrupted cache entry: fetch again
    part = dest.with_name(dest.name + ".part")
    h = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"could not download {dest.name} from {url}: {reason}. Check the network connection, "
            f"or place the file at {dest} by hand."
        ) from exc
    if h.hexdigest() != checksum:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{dest.name} downloaded from {url} has {algorithm} {h.hexdigest()}, expected {checksum}: "
            "the download was corrupted or the file changed upstream. Nothing was kept; try again later."
        )
    os.replace(part, dest)
    return dest
