"""What a run costs, measured operator by operator: FLOPs, time, GPU time on paper, live tensor memory.

:class:`CostMeter` is a ``TorchDispatchMode``: every aten operator the run calls
passes through it. For each one it adds

- its FLOPs (``torch.utils.flop_counter``'s formulas: matrix products and
  convolutions, forward and backward; other operators count 0),
- its CPU time on this machine (process time: what it costs, however busy the machine is),
- its time on each GPU of :data:`GPUS` under a roofline model:
  ``max(FLOPs / rate, bytes / bandwidth) + overhead``, with ``bytes`` twice the
  bytes it writes (read + write) and ``overhead`` the cost of launching one
  operator from Python,
- its output to the live tensor memory, released when the last tensor on that
  storage is freed; the peak of that sum is the most tensor memory the run held
  at once (tensors made from NumPy arrays without a copy are not seen).

Costs are attributed to the innermost open *training loop*: a loop opens when
it calls :func:`convbias.config.cap_steps` (the package's loops all do) and closes
when its function returns. Inside a :func:`convbias.config.stands_for` block (a loop
of loops a smoke run shortens, e.g. relax times) every cost is multiplied by the
number of items each kept one stands for. Inside a loop an operator belongs to a *step* (it runs
with gradients on, or inside the backward pass) or to a *record* (gradients off:
evaluations, metrics). A smoke run executes ``run`` of a loop's ``requested``
steps; :meth:`Loop.scaled` multiplies its step costs by ``requested / run`` and
its record costs by the ratio of the numbers of records (``every`` steps apart),
which is how a capped run predicts the full one. Costs outside any loop count once.

Used by the book's tooling (smoke runs, ``python -m convbias estimate``), not by a chapter's code.
"""

from __future__ import annotations

import math
import sys
import time
import weakref
from dataclasses import asdict, dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from . import config


@dataclass(frozen=True)
class GPU:
    """The rates a GPU is credited with: achieved FP32 FLOP/s, memory bandwidth (B/s), seconds per operator."""

    name: str
    flops: float
    bandwidth: float
    overhead: float


#: Peak FP32 rates and bandwidths from the vendors' data sheets, credited at 60% (FLOPs) and 70%
#: (bandwidth); the per-operator overhead is that of an eager PyTorch launch (kernel launch plus
#: Python dispatch), larger on Colab's slower host CPU.
GPUS = {
    "T4": GPU("Colab T4", flops=0.6 * 8.1e12, bandwidth=0.7 * 320e9, overhead=12e-6),
    "H100": GPU("H100 SXM", flops=0.6 * 67e12, bandwidth=0.7 * 3.35e12, overhead=6e-6),
}


@dataclass
class Cost:
    """Sums over a set of operators."""

    ops: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    gpu_seconds: dict[str, float] = field(
        default_factory=lambda: {k: 0.0 for k in GPUS}
    )

    def add(
        self, flops: float, seconds: float, nbytes: int, weight: float = 1.0
    ) -> None:
        """One operator, standing for ``weight`` of them."""
        self.ops += round(weight)
        self.flops += flops * weight
        self.seconds += seconds * weight
        for key, gpu in GPUS.items():
            self.gpu_seconds[key] += op_gpu_seconds(gpu, flops, nbytes) * weight

    def times(self, factor: float) -> "Cost":
        return Cost(
            round(self.ops * factor),
            self.flops * factor,
            self.seconds * factor,
            {k: v * factor for k, v in self.gpu_seconds.items()},
        )

    def plus(self, other: "Cost") -> "Cost":
        return Cost(
            self.ops + other.ops,
            self.flops + other.flops,
            self.seconds + other.seconds,
            {k: self.gpu_seconds[k] + other.gpu_seconds[k] for k in GPUS},
        )


def op_gpu_seconds(gpu: GPU, flops: float, nbytes: int) -> float:
    """Roofline time of one operator: ``max(flops / rate, 2 * nbytes / bandwidth) + overhead``."""
    return max(flops / gpu.flops, 2 * nbytes / gpu.bandwidth) + gpu.overhead


@dataclass
class Loop:
    """One training loop: ``requested`` steps asked for, ``run`` executed, a record every ``every`` steps."""

    name: str
    requested: int
    run: int
    every: int | None
    weight: float = 1.0  # how many such loops this one stands for (a smoke run keeps some items only)
    step: Cost = field(default_factory=Cost)
    record: Cost = field(default_factory=Cost)

    def records(self, steps: int) -> int:
        return 0 if self.every is None else max(1, math.ceil(steps / self.every))

    def scaled(self) -> Cost:
        """The loop's cost at its requested length (steps and records scaled separately)."""
        step = self.step.times(self.weight * self.requested / max(self.run, 1))
        if self.every is None:
            return step.plus(
                self.record.times(self.weight * self.requested / max(self.run, 1))
            )
        return step.plus(
            self.record.times(
                self.weight * self.records(self.requested) / self.records(self.run)
            )
        )


class CostMeter(TorchDispatchMode):
    """Measure every operator run inside ``with CostMeter() as meter:`` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.loops: list[Loop] = []
        self.outside = Cost()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._open: list[
            tuple[Loop, object]
        ] = []  # (loop, frame of the function that runs it)
        self._storages: dict[
            int, list[int]
        ] = {}  # data pointer -> [bytes, tensors alive on it]
        self._tracked: set[int] = set()
        self._weights: list[float] = []  # open stands_for blocks
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.wall = 0.0
        self.cpu = 0.0

    # -- loops
    def _on_loop(self, requested: int, run: int, every: int | None) -> None:
        frame = sys._getframe(2)  # the function that called cap_steps
        name = f"{frame.f_globals.get('__name__', '?').removeprefix('convbias.')}.{frame.f_code.co_name}"
        loop = Loop(
            name,
            int(requested),
            int(run),
            None if every is None else int(every),
            self._weight(),
        )
        self.loops.append(loop)
        self._close_finished()
        self._open.append((loop, frame))

    def _on_items(self, factor: float | None) -> None:
        if factor is None:
            self._weights.pop()
        else:
            self._weights.append(factor)

    def _weight(self) -> float:
        return math.prod(self._weights)

    def _close_finished(self) -> None:
        if not self._open:
            return
        on_stack = set()
        f = sys._getframe(1)
        while f is not None:
            on_stack.add(id(f))
            f = f.f_back
        while self._open and id(self._open[-1][1]) not in on_stack:
            self._open.pop()

    # -- memory
    def _track(self, t: torch.Tensor) -> None:
        if t.device.type == "meta" or id(t) in self._tracked:
            return
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if key == 0 or nbytes == 0:
            return
        entry = self._storages.get(key)
        if entry is None:
            self._storages[key] = [nbytes, 1]
            self.live_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        else:
            entry[1] += 1
        self._tracked.add(id(t))
        weakref.finalize(t, self._release, id(t), key)

    def _release(self, tensor_id: int, key: int) -> None:
        self._tracked.discard(tensor_id)
        entry = self._storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.live_bytes -= entry[0]
            del self._storages[key]

    # -- the dispatch hook
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        start = time.process_time()
        out = func(*args, **kwargs)
        seconds = time.process_time() - start
        packet = func.overloadpacket
        flops = 0.0
        if packet in flop_registry:
            try:
                flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
            except Exception:  # a formula that does not fit this call: count no FLOPs
                flops = 0.0
        nbytes = 0
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                nbytes += leaf.numel() * leaf.element_size()
                self._track(leaf)
        self._close_finished()
        if self._open:
            loop = self._open[-1][0]
            in_step = torch.is_grad_enabled() or torch._C._current_graph_task_id() != -1
            (loop.step if in_step else loop.record).add(flops, seconds, nbytes)
        else:
            self.outside.add(flops, seconds, nbytes, self._weight())
        return out

    def __enter__(self):
        config.LOOP_HOOKS.append(self._on_loop)
        config.ITEM_HOOKS.append(self._on_items)
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        return super().__enter__()

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.started
        self.cpu = time.process_time() - self.cpu_started
        config.LOOP_HOOKS.remove(self._on_loop)
        config.ITEM_HOOKS.remove(self._on_items)
        return super().__exit__(*exc)

    # -- results
    def measured(self) -> Cost:
        """What the run itself cost (capped loops as run)."""
        total = self.outside
        for loop in self.loops:
            total = total.plus(loop.step).plus(loop.record)
        return total

    def predicted(self) -> Cost:
        """The run at its requested length: every loop scaled, the rest as measured."""
        total = self.outside
        for loop in self.loops:
            total = total.plus(loop.scaled())
        return total

    def summary(self) -> dict:
        """A JSON-ready account: the measured and predicted costs, the peak tensor memory and the loops."""
        measured, predicted = self.measured(), self.predicted()
        by_name: dict[str, dict] = {}
        for loop in self.loops:
            row = by_name.setdefault(
                loop.name,
                {"loops": 0, "requested_steps": 0, "run_steps": 0, "predicted": Cost()},
            )
            row["loops"] += 1
            row["requested_steps"] += loop.requested
            row["run_steps"] += loop.run
            row["predicted"] = row["predicted"].plus(loop.scaled())
        return {
            "wall_seconds": self.wall,
            "cpu_seconds": self.cpu,
            "host_seconds": max(
                self.cpu - measured.seconds, 0.0
            ),  # Python, plotting: not in operators
            "measured": asdict(measured),
            "predicted": asdict(predicted),
            "peak_tensor_bytes": self.peak_bytes,
            "loops": {
                k: {**v, "predicted": asdict(v["predicted"])}
                for k, v in by_name.items()
            },
            "loop_list": [
                {
                    "name": loop.name,
                    "requested": loop.requested,
                    "run": loop.run,
                    "every": loop.every,
                    "weight": loop.weight,
                    "predicted": asdict(loop.scaled()),
                }
                for loop in self.loops
            ],
        }
