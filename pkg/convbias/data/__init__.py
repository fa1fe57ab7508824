"""Data: synthetic generators for each chapter and real-data loaders.

Real data: :func:`load_mnist`, :func:`load_digits`, :func:`load_cifar10`,
:func:`load_image`; downloads go through :func:`download` (checksum-verified,
atomic). Chapter-specific generators live in submodules of this package.

Used by every chapter; each generator's module names its chapter.
"""

from .background import add_background_noise, patch_stable_rank
from .canvas import load_canvas, place_on_canvas, standardize
from .download import ChecksumError, DownloadError, cache_dir, download, file_digest
from .mixtures import gaussian_mixture
from .patches import PatchDataModel
from .real import (
    SKIMAGE_IMAGES,
    DataUnavailable,
    Split,
    load_cifar10,
    load_digits,
    load_image,
    load_mnist,
)
from .signals import random_input, step_signal

__all__ = [
    "ChecksumError",
    "DataUnavailable",
    "DownloadError",
    "SKIMAGE_IMAGES",
    "Split",
    "cache_dir",
    "download",
    "file_digest",
    "load_cifar10",
    "load_digits",
    "load_image",
    "load_mnist",
    "PatchDataModel",
    "add_background_noise",
    "patch_stable_rank",
    "gaussian_mixture",
    "step_signal",
    "random_input",
    "load_canvas",
    "place_on_canvas",
    "standardize",
]
