"""The set-up every chapter notebook starts with, in one call.

``run = start_chapter("ch1", seed=0)`` fixes the base seed (``CONVBIAS_SEED``
overrides the chapter's own), seeds Python, NumPy and torch, runs torch on one CPU
thread, sets the figure style, prints one line about the run and glues it for the
reproducibility page. Used by every chapter and the appendix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import plotting
from .config import (
    announce_run,
    base_seed,
    device,
    limit_cpu_threads,
    profile,
    seed_everything,
)


@dataclass(frozen=True)
class ChapterRun:
    """What a chapter's set-up fixed: its name, profile, base seed and device."""

    name: str
    profile: str
    seed: int
    device: torch.device


def start_chapter(name: str, seed: int = 0, threads: int = 1) -> ChapterRun:
    """Set up chapter ``name`` (``"ch1"``, ``"app"``): seeds, CPU threads, style, run line.

    ``seed`` is the chapter's default base seed; ``CONVBIAS_SEED`` replaces it. The
    returned :class:`ChapterRun` carries the base seed and the device to use.
    """
    from .report import glue_run_info

    seed = base_seed(seed)
    seed_everything(seed)
    limit_cpu_threads(threads)
    plotting.set_style()
    print(glue_run_info(name, seed))
    announce_run(name)
    return ChapterRun(name=name, profile=profile(), seed=seed, device=device())
