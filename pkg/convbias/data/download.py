"""Checksum-verified downloads into a cache directory, through ``pooch``.

``pooch`` streams a file to a temporary name beside its destination, checks its
hash, renames it into place only when it matches (removing the temporary file
otherwise), and retries a failed transfer; this module turns its errors (and those
of ``requests`` underneath) into one-line :class:`DownloadError` /
:class:`ChecksumError` messages. The cache folder is ``$CONVBIAS_CACHE``, else the
platform's user cache folder (``~/.cache/convbias`` on Linux).

Used by :mod:`convbias.data.real` (and ``python -m convbias download``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..config import CACHE_ENV, user_cache_dir
from ..config import default_cache_dir as _default_dir


class DownloadError(RuntimeError):
    """A file could not be fetched (offline, unreachable host, HTTP error)."""


class ChecksumError(DownloadError):
    """A fetched or cached file does not match its expected checksum."""


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
    """Directory for downloaded data: ``$CONVBIAS_CACHE`` or the user cache folder (``~/.cache/convbias``).

    With ``create`` the folder is made and checked to be writable; when
    ``$CONVBIAS_CACHE`` names a folder that cannot be used (read-only, a file, a
    path under a file) the default folder is used instead, with one line saying so.
    """
    configured = os.environ.get(CACHE_ENV)
    root = user_cache_dir()
    if not create:
        return root
    if _usable(root):
        return root
    if configured and _usable(_default_dir()):
        print(
            f"{CACHE_ENV}={configured} cannot be written to; using {_default_dir()} instead."
        )
        return _default_dir()
    raise DownloadError(
        f"no writable cache folder: {root} cannot be created or written to. "
        f"Set {CACHE_ENV} to a writable folder."
    )


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str,
    dest: Path,
    checksum: str,
    algorithm: str = "md5",
    timeout: float = 15.0,
    retries: int = 2,
    progress: bool = False,
) -> Path:
    """Fetch ``url`` to ``dest`` unless a file with the right checksum is already there.

    Raises :class:`DownloadError` when the file cannot be fetched (after ``retries``
    more tries) and :class:`ChecksumError` when its content is wrong; in both cases
    nothing is left at ``dest`` or beside it. ``progress`` shows a progress bar.
    """
    import pooch
    import requests

    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the folder {dest.parent} for {dest.name}: {exc.strerror or exc}. "
            f"Set {CACHE_ENV} to a writable folder."
        ) from exc
    if dest.exists() and file_digest(dest, algorithm) != checksum:
        dest.unlink()  # stale or corrupted cache entry: fetch again
    transient = (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    )
    try:
        for attempt in range(retries + 1):
            try:
                path = pooch.retrieve(
                    url,
                    known_hash=f"{algorithm}:{checksum}",
                    fname=dest.name,
                    path=dest.parent,
                    progressbar=progress,
                    downloader=pooch.HTTPDownloader(timeout=timeout),
                )
                break
            except transient:
                if attempt == retries:
                    raise
    except (
        ValueError
    ) as exc:  # pooch: the hash does not match (the temporary file is already removed)
        if "hash" not in str(exc).lower():
            raise DownloadError(
                f"could not download {dest.name} from {url}: {exc}"
            ) from exc
        raise ChecksumError(
            f"{dest.name} downloaded from {url} does not have {algorithm} {checksum} (expected {checksum}): "
            "the download was corrupted or the file changed upstream. Nothing was kept; try again later."
        ) from exc
    except (requests.RequestException, OSError) as exc:
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            reason = "the transfer was cut short"
        elif isinstance(exc, requests.HTTPError) and exc.response is not None:
            reason = f"HTTP {exc.response.status_code} {exc.response.reason}"
        else:
            reason = type(exc).__name__
        raise DownloadError(
            f"could not download {dest.name} from {url}: {reason}. Check the network connection, "
            f"or place the file at {dest} by hand."
        ) from exc
    return Path(path)
