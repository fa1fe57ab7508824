"""Run configuration: the quick/full profile switch, the device and seeds.

One environment variable, ``CONVBIAS_PROFILE``, chooses the scale of every
chapter: ``quick`` (a 2-core CPU in minutes), ``full`` (paper scale, for a GPU)
or ``auto`` (the default: ``full`` when CUDA is available, ``quick`` otherwise).
Another, ``CONVBIAS_SEED``, reruns every chapter from another base seed
(:func:`base_seed`; ``python -m convbias run N --seed S`` sets it).
"""
from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("quick", "full")
ENV_VAR = "CONVBIAS_PROFILE"
SEED_VAR = "CONVBIAS_SEED"
T = TypeVar("T")


def profile() -> str:
    """Return ``"quick"`` or ``"full"`` from ``CONVBIAS_PROFILE`` (default ``auto``)."""
    raw = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if raw == "auto":
        return "full" if torch.cuda.is_available() else "quick"
    if raw not in PROFILES:
        raise ValueError(
            f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} is not a profile: "
            f"use one of 'quick', 'full' or 'auto'."
        )
    return raw


def by_profile(quick: T, full: T) -> T:
    """Pick ``quick`` or ``full`` according to :func:`profile`."""
    return full if profile() == "full" else quick


def base_seed(default: int = 0) -> int:
    """The chapter's base seed: ``CONVBIAS_SEED`` when set (a non-negative integer), else ``default``.

    Chapters derive all their seeds from it, so one variable reruns a chapter on
    fresh seeds (``python -m convbias run N --seed S``, ``python -m convbias verify``).
    """
    raw = os.environ.get(SEED_VAR, "").strip()
    if not raw:
        return int(default)
    try:
        seed = int(raw)
    except ValueError:
        seed = -1
    if seed < 0:
        raise ValueError(f"{SEED_VAR}={raw!r} is not a seed: use a non-negative integer, e.g. {SEED_VAR}=3")
    return seed


def device() -> torch.device:
    """The device experiments run on: the first CUDA GPU if present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats exactly on CPU."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def limit_cpu_threads(n: int = 1) -> None:
    """On the CPU, run torch on ``n`` intra-op threads (default 1); no effect on a GPU run.

    The book's models are small: a second thread mostly adds synchronisation, and on a
    busy 2-core machine two threads spin-wait on each other and run many times slower.
    """
    if n < 1:
        raise ValueError(f"need at least one thread, got {n}")
    if device().type == "cpu":
        torch.set_num_threads(n)


def run_info(default: int = 0) -> str:
    """One line naming the profile, base seed, device and torch version, printed by every chapter.

    The seed is the one :func:`base_seed` returns: ``CONVBIAS_SEED``, or ``default``
    (the chapter's own) when that is not set.
    """
    dev = device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return f"profile={profile()} | seed={base_seed(default)} | device={dev.type}: {name} | torch {torch.__version__}"
