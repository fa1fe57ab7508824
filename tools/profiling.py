"""Where does a long run spend its time? A sampling wrapper around ``torch.profiler``.

A profiler that records a whole chapter keeps every operator call: a chapter of
many small training steps holds millions of them, more than a machine's memory
(one chapter needed over 13 GB before it failed). :class:`SampledProfiler`
records short windows instead: a timer (``SIGALRM``, so Unix only) advances the
profiler's schedule every ``tick`` seconds, one tick of every ``every`` is
recorded, and each window's operator totals are added up and its events dropped
as soon as it closes. Summing a window of many small operators takes longer than
the window itself, so after a slow one the ticks pause for three times as long.
A profiled run is still slower than a plain one (twice as slow for a chapter of
many small operators on a CPU); the shares it reports are estimates from the
windows.
"""

from __future__ import annotations

import signal
import time
import warnings
from collections import defaultdict
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule


class SampledProfiler:
    """Context manager: operator self times summed over windows of ``tick`` s, one in ``every`` ticks."""

    def __init__(self, tick: float = 0.1, every: int = 20):
        if tick <= 0 or every < 2:
            raise ValueError(
                f"need tick > 0 and every >= 2, got tick={tick}, every={every}"
            )
        if not hasattr(signal, "setitimer"):
            raise RuntimeError(
                "SampledProfiler needs signal.setitimer (Linux or macOS)"
            )
        self.tick, self.every = tick, every
        self.device = torch.cuda.is_available()
        self.self_time: dict[str, float] = defaultdict(float)  # microseconds
        self.calls: dict[str, int] = defaultdict(int)
        self.windows = 0
        self._prof: Any = None
        self._previous: Any = None
        self._busy = False
        self._resume_at = 0.0

    def _collect(self, prof: Any) -> None:
        for event in prof.key_averages():
            if event.key.startswith(
                "ProfilerStep"
            ):  # the window itself, not an operator
                continue
            spent = (
                event.self_device_time_total
                if self.device
                else event.self_cpu_time_total
            )
            self.self_time[event.key] += spent
            self.calls[event.key] += event.count
        self.windows += 1

    def _step(self, *_: Any) -> None:
        # skip ticks while a window is being summed, and for a while after a slow one, so that the
        # profiler's own work stays below about a quarter of the run
        if self._busy or time.perf_counter() < self._resume_at:
            return
        self._busy = True
        start = time.perf_counter()
        try:
            with (
                warnings.catch_warnings()
            ):  # "clears events at the end of each cycle": that is the point
                warnings.filterwarnings(
                    "ignore", message=".*clears events at the end of each cycle.*"
                )
                self._prof.step()
        finally:
            spent = time.perf_counter() - start
            self._resume_at = (
                time.perf_counter() + 3 * spent if spent > self.tick else 0.0
            )
            self._busy = False

    def __enter__(self) -> "SampledProfiler":
        activities = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if self.device else []
        )
        self._prof = profile(
            activities=activities,
            on_trace_ready=self._collect,
            schedule=schedule(wait=self.every - 2, warmup=1, active=1),
        )
        self._prof.__enter__()
        self._previous = signal.signal(signal.SIGALRM, self._step)
        signal.setitimer(signal.ITIMER_REAL, self.tick, self.tick)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)
        self._busy = True
        self._prof.__exit__(*exc)

    def table(self, rows: int = 25) -> str:
        """The operators with the largest summed self time, with their share of the sampled time."""
        total = sum(self.self_time.values()) or 1.0
        where = "GPU" if self.device else "CPU"
        lines = [
            f"{self.windows} sampled windows of {self.tick:g} s, one in every {self.every} ticks; "
            f"self {where} time",
            f"{'operator':<56}{'share':>8}{'self ms':>12}{'calls':>10}",
        ]
        top = sorted(self.self_time.items(), key=lambda kv: -kv[1])[:rows]
        lines += [
            f"{name[:55]:<56}{spent / total:>8.1%}{spent / 1e3:>12.1f}{self.calls[name]:>10d}"
            for name, spent in top
        ]
        return "\n".join(lines)
