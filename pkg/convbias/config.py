"""Run configuration: the quick/full profile switch, the device, seeds and the cache folder.

One environment variable, ``CONVBIAS_PROFILE``, chooses the scale of every
chapter: ``quick`` (a 2-core CPU in minutes), ``full`` (paper scale, for a GPU)
or ``auto`` (the default: ``full`` when CUDA is available, ``quick`` otherwise).
Another, ``CONVBIAS_SEED``, reruns every chapter from another base seed
(:func:`base_seed`; ``python -m convbias run N --seed S`` sets it). :func:`require_extra`
imports what an optional extra of the package installs, or says in one line how to get it.

Used by every chapter (through ``convbias.chapter.start_chapter`` and its profile tables).
"""

from __future__ import annotations

import importlib
import os
import random
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator, TypeVar

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
        raise ValueError(
            f"{SEED_VAR}={raw!r} is not a seed: use a non-negative integer, e.g. {SEED_VAR}=3"
        )
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
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        n = torch.get_num_threads()
        name = f"CPU, {n} thread{'s' if n != 1 else ''}"
    return f"profile={profile()} | seed={base_seed(default)} | device={dev.type}: {name} | torch {torch.__version__}"


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Within this block the environment variables ``values`` are set; before it returns they are restored
    (or removed, where they were not set)."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ----------------------------------------------------------------------------- smoke runs
SMOKE_VAR = "CONVBIAS_SMOKE"
SMOKE_STEPS_VAR = "CONVBIAS_SMOKE_STEPS"
SMOKE_STEPS = 2
#: called as ``hook(requested, run, every)`` by :func:`cap_steps` (the cost meter listens here)
LOOP_HOOKS: list = []


def smoke() -> bool:
    """True when ``CONVBIAS_SMOKE`` is on: full sizes, but every training loop stops after a few steps.

    A smoke run checks that a profile fits in memory and measures its cost per step
    (``python -m convbias run N --profile full --smoke``); its numbers mean nothing.
    """
    raw = os.environ.get(SMOKE_VAR, "").strip().lower()
    if raw in ("", "0", "off", "false", "no"):
        return False
    if raw in ("1", "on", "true", "yes"):
        return True
    raise ValueError(
        f"{SMOKE_VAR}={os.environ.get(SMOKE_VAR)!r}: use 1 (on) or 0 (off)"
    )


def smoke_steps() -> int:
    """Steps a training loop runs in a smoke run (``CONVBIAS_SMOKE_STEPS``, default 2)."""
    raw = os.environ.get(SMOKE_STEPS_VAR, str(SMOKE_STEPS)).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(
            f"{SMOKE_STEPS_VAR}={raw!r}: give a positive whole number of steps"
        )
    return int(raw)


def cap_steps(n: int, every: int | None = None) -> int:
    """``n`` steps, or at most :func:`smoke_steps` of them in a smoke run.

    Training loops call this once, on their total number of steps (``every``: how
    often they record, so a cost meter can scale a capped loop to its full length).
    """
    run = min(n, smoke_steps()) if smoke() else n
    for hook in LOOP_HOOKS:
        hook(n, run, every)
    return run


def cap_items(items: list[T], keep: int = 2) -> list[T]:
    """``items``, or in a smoke run ``keep`` of them spread from the first to the last (for loops of loops)."""
    items = list(items)
    if not smoke() or len(items) <= keep:
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, keep).round().astype(int))
    return [items[i] for i in picks]


#: called as ``hook(factor)`` when a :func:`stands_for` block opens and ``hook(None)`` when it closes
ITEM_HOOKS: list = []


@contextmanager
def stands_for(factor: float) -> Iterator[None]:
    """Within this block each cost a meter sees stands for ``factor`` of them.

    A smoke run that kept ``k`` of ``n`` items of equal cost (:func:`cap_items`) runs
    their loop inside ``stands_for(n / k)``, so its cost is counted for all ``n``.
    """
    for hook in ITEM_HOOKS:
        hook(float(factor))
    try:
        yield
    finally:
        for hook in ITEM_HOOKS:
            hook(None)


#: called as ``hook()`` by :func:`step_starts`
STEP_HOOKS: list = []


def step_starts() -> None:
    """A training loop calls this at the start of each of its steps (so a cost meter tells them apart).

    It changes nothing in what the loop computes. Work after :func:`cap_steps` and
    before the first step is set-up, counted once; the first step is counted once
    and the later ones stand for the rest (the first carries one-time costs).
    """
    for hook in STEP_HOOKS:
        hook()


#: called as ``hook(kind)`` when a :func:`recording` block opens (``"record"`` or ``"once"``) and
#: ``hook(None)`` when it closes
RECORD_HOOKS: list = []


@contextmanager
def recording(once: bool = False, on: bool = True) -> Iterator[None]:
    """Within this block a training loop does work that is not a training step.

    Training loops wrap their evaluations in it, so a cost meter scales them by the
    number of evaluations, not of steps: a *record* (every ``every`` steps of
    :func:`cap_steps`, and at the start or the end where the loop does) or, with
    ``once=True``, work done once per loop (a final evaluation). Everything else a
    loop runs after :func:`cap_steps`, under ``no_grad`` or not (optimizer updates
    included), is step work. ``on=False``: the block does nothing (for a pass that
    only evaluates on the last iteration). It changes nothing in what the loop computes.
    """
    kind = ("once" if once else "record") if on else None
    if kind is not None:
        for hook in RECORD_HOOKS:
            hook(kind)
    try:
        yield
    finally:
        if kind is not None:
            for hook in RECORD_HOOKS:
                hook(None)


# ----------------------------------------------------------------------------- before a long run
BUDGET_FILE = "budget.json"  # per chapter: predicted minutes of the full profile (python -m convbias estimate)


def full_profile_minutes(chapter: str) -> dict[str, float] | None:
    """The full profile's predicted minutes of ``chapter`` (``"ch1"`` ...) per device (``T4``, ``H100``, ``CPU``)."""
    import json
    from pathlib import Path

    path = Path(__file__).with_name(BUDGET_FILE)
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("chapters", {}).get(chapter)


def announce_run(chapter: str) -> str | None:
    """Under the full profile, print (and return) one line: how long this chapter takes, how to pick ``quick``.

    Called by every chapter's set-up cell; prints nothing under the quick profile.
    """
    if profile() != "full":
        return None
    minutes = full_profile_minutes(chapter) or {}
    dev = device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "this CPU"
    key = (
        next((k for k in ("T4", "H100") if k in name), None)
        if dev.type == "cuda"
        else "CPU"
    )
    if key and key in minutes:
        took = f"about {minutes[key]:.0f} min on {name}"
    elif minutes:
        took = (
            f"about {minutes.get('T4', float('nan')):.0f} min on a T4, {minutes.get('H100', float('nan')):.0f} "
            f"on an H100"
        )
    else:
        took = "a paper-scale run (no time estimate recorded)"
    line = (
        f"Full profile ({name}): {took}. For a few-minute version, restart and run "
        f'`import os; os.environ["CONVBIAS_PROFILE"] = "quick"` first.'
    )
    print(line)
    return line


# ----------------------------------------------------------------------------- where files go
CACHE_ENV = "CONVBIAS_CACHE"


def default_cache_dir() -> Path:
    """The platform's user cache folder for the package (``~/.cache/convbias`` on Linux); not created."""
    import pooch

    return Path(pooch.os_cache("convbias"))


RESULTS_ENV = "CONVBIAS_RESULTS"


def _folder(value: str) -> Path:
    """A folder variable's value: ``~`` expanded (also when it came quoted), made absolute against the cwd."""
    return Path(os.path.abspath(os.path.expanduser(value.strip())))


def user_cache_dir() -> Path:
    """``$CONVBIAS_CACHE``, else :func:`default_cache_dir`: downloads go there, results under ``results/``.

    Not created or checked here (``convbias.data.download.cache_dir`` does that for downloads).
    """
    configured = os.environ.get(CACHE_ENV, "").strip()
    return _folder(configured) if configured else default_cache_dir()


def results_root() -> Path:
    """The results cache's folder: ``$CONVBIAS_RESULTS`` (``~`` expanded, absolute), else ``<cache>/results``."""
    configured = os.environ.get(RESULTS_ENV, "").strip()
    return _folder(configured) if configured else user_cache_dir() / "results"


def absolute_folder_variables() -> dict[str, str]:
    """``CONVBIAS_CACHE`` and ``CONVBIAS_RESULTS`` as set, resolved against this process's cwd.

    Given to a process that runs elsewhere (a chapter's kernel runs in ``book/``), so a
    relative folder means the same folder there as here.
    """
    return {
        key: str(_folder(os.environ[key]))
        for key in (CACHE_ENV, RESULTS_ENV)
        if os.environ.get(key, "").strip()
    }


class MissingExtra(ImportError):
    """A package of one of convbias's extras is not installed; the message names the extra."""


def require_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, which the extra ``convbias[extra]`` installs, or raise :class:`MissingExtra`.

    The base install carries what the library needs; ``convex`` (chapter 6's convex
    programs), ``cli`` (the command line's headless runs) and ``chapters`` (everything the
    chapters use in a notebook) add the rest.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{purpose} needs {module}, which is not installed: pip install 'convbias[{extra}]'"
        ) from None
