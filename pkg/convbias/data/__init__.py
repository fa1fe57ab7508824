"""Data: synthetic generators for each chapter and real-data loaders.

Real data: :func:`load_mnist`, :func:`load_digits`, :func:`load_cifar10`,
:func:`load_image`; downloads go through :func:`download` (checksum-verified,
atomic). Chapter-specific generators live in submodules of this package.
"""
from .download import ChecksumError, DownloadError, cache_dir, download, file_digest
from .real import SKIMAGE_IMAGES, DataUnavailable, Split, load_cifar10, load_digits, load_image, load_mnist

__all__ = [
    "ChecksumError", "DataUnavailable", "DownloadError", "SKIMAGE_IMAGES", "Split", "cache_dir",
    "download", "file_digest", "load_cifar10", "load_digits", "load_image", "load_mnist",
]
