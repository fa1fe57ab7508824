"""Checksum-verified downloads into a cache directory, written atomically.

A file is streamed to ``<name>.part`` beside its destination, hashed on the
way, and renamed into place only when the checksum matches: an interrupted or
corrupted download never leaves a half-written file under the final name.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

CACHE_ENV = "CONVBIAS_CACHE"


class DownloadError(RuntimeError):
    """A file could not be fetched (offline, unreachable host, HTTP error)."""


class ChecksumError(DownloadError):
    """A fetched or cached file does not match its expected checksum."""


def _default_dir() -> Path:
    return Path.home() / ".cache" / "convbias"


def _usable(folder: Path) -> bool:
    """True if ``folder`` exists (or can be made) and a file can be created in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


def cache_dir(create: bool = True) -> Path:
    """Directory for downloaded data: ``$CONVBIAS_CACHE`` or ``~/.cache/convbias``.

    With ``create`` the folder is made and checked to be writable; when
    ``$CONVBIAS_CACHE`` names a folder that cannot be used (read-only, a file, a
    path under a file) the default folder is used instead, with one line saying so.
    """
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured).expanduser() if configured else _default_dir()
    if not create:
        return root
    if _usable(root):
        return root
    if configured and _usable(_default_dir()):
        print(f"{CACHE_ENV}={configured} cannot be written to; using {_default_dir()} instead.")
        return _default_dir()
    raise DownloadError(f"no writable cache folder: {root} cannot be created or written to. "
                        f"Set {CACHE_ENV} to a writable folder.")


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
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the folder {dest.parent} for {dest.name}: {exc.strerror or exc}. "
                            f"Set {CACHE_ENV} to a writable folder.") from exc
    if dest.exists():
        if file_digest(dest, algorithm) == checksum:
            return dest
        dest.unlink()  # stale or corrupted cache entry: fetch again
    part = dest.with_name(dest.name + ".part")
    h = hashlib.new(algorithm)
    received = 0
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                expected = response.headers.get("Content-Length")
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
            if expected is not None and expected.isdigit() and received != int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - received)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(exc, http.client.IncompleteRead):
                reason = f"the transfer was cut short after {received} bytes"
            raise DownloadError(
                f"could not download {dest.name} from {url}: {reason}. Check the network connection, "
                f"or place the file at {dest} by hand."
            ) from exc
        if h.hexdigest() != checksum:
            raise ChecksumError(
                f"{dest.name} downloaded from {url} has {algorithm} {h.hexdigest()}, expected {checksum}: "
                "the download was corrupted or the file changed upstream. Nothing was kept; try again later."
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)  # nothing half-written stays, whatever went wrong (Ctrl-C included)
    return dest
