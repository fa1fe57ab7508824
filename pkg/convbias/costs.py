"""What a run costs, measured operator by operator: FLOPs, time, GPU time on paper, live tensor memory.

:class:`CostMeter` is a ``TorchDispatchMode``: every aten operator the run calls
passes through it. For each one it adds

- its FLOPs (``torch.utils.flop_counter``'s formulas: matrix products and
  convolutions, forward and backward; other operators count 0),
- its CPU time on this machine (process time: what it costs, however busy the
  machine is), less the meter's own share (see below),
- the Python time since the previous operator (the loop's own code: what a GPU run
  still spends on the host), less the meter's own share,
- its time on each GPU of :data:`GPUS` under a roofline model:
  ``max(FLOPs / rate, bytes / bandwidth) + overhead``, with ``bytes`` twice the
  bytes it writes (read + write) and ``overhead`` the cost of launching one
  operator from Python; a *view* (``view``, ``t``, ``expand``, ``detach``...) launches
  no kernel and costs nothing on a GPU,
- its output to the live tensor memory, released when the last tensor on that
  storage is freed; the peak of that sum is the most tensor memory the run held
  at once (tensors made from NumPy arrays without a copy are not seen).

The meter's own share: timing an operator from Python reads more than the operator
costs in a plain run (the dispatch into Python and the clock calls). :func:`calibrate`
measures it on a loop of trivial operators, run plain and metered, split into the part
inside the timed call and the part between calls; the meter subtracts both from every
operator, and its bookkeeping (FLOP formulas, memory) is timed and left out.

Costs are attributed to the innermost open *training loop*: a loop opens when
it calls :func:`convbias.config.cap_steps` (the package's loops all do) and closes
when its function returns. Inside a :func:`convbias.config.stands_for` block (a loop
of loops a smoke run shortens, e.g. relax times) every cost is multiplied by the
number of items each kept one stands for. Inside a loop an operator (and the Python
time before it) belongs to a *record* when it runs in a :func:`convbias.config.recording`
block (evaluations, metrics), to the loop's *once* work in a ``recording(once=True)``
block (a final evaluation), and otherwise to a *step* (forward, backward and the
optimizer's update, under ``no_grad`` or not). A smoke run executes ``run`` of a
loop's ``requested`` steps; :meth:`Loop.scaled` multiplies its step costs by
``requested / run``, its record costs by the ratio of the numbers of records (one
every ``every`` steps, plus those at the start or end the smoke run made), and its
once costs by 1, which is how a capped run predicts the full one. A loop that opens
inside another loop's step (or record) is multiplied by that one's factor too.
Costs outside any loop count once.

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

#: the version of the meter's accounting, written into ``cost.json`` (older files are re-measured)
METER_VERSION = 2


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
    """Sums over a set of operators: how many (``launches``: those that are not views), their FLOPs,
    CPU seconds, GPU seconds, and the Python seconds spent between them (``python``)."""

    ops: float = 0
    launches: float = 0
    flops: float = 0.0
    seconds: float = 0.0
    python: float = 0.0
    gpu_seconds: dict[str, float] = field(
        default_factory=lambda: {k: 0.0 for k in GPUS}
    )
    freeing: float = (
        0.0  # of ``python``: the CPU allocator returning large buffers (estimated)
    )

    def add(
        self,
        flops: float,
        seconds: float,
        nbytes: int,
        weight: float = 1.0,
        view: bool = False,
    ) -> None:
        """One operator, standing for ``weight`` of them (a view launches nothing on a GPU)."""
        self.ops += weight
        self.flops += flops * weight
        self.seconds += seconds * weight
        if view:
            return
        self.launches += weight
        for key, gpu in GPUS.items():
            self.gpu_seconds[key] += op_gpu_seconds(gpu, flops, nbytes) * weight

    def times(self, factor: float) -> "Cost":
        return Cost(
            self.ops * factor,
            self.launches * factor,
            self.flops * factor,
            self.seconds * factor,
            self.python * factor,
            {k: v * factor for k, v in self.gpu_seconds.items()},
            self.freeing * factor,
        )

    def plus(self, other: "Cost") -> "Cost":
        return Cost(
            self.ops + other.ops,
            self.launches + other.launches,
            self.flops + other.flops,
            self.seconds + other.seconds,
            self.python + other.python,
            {k: self.gpu_seconds[k] + other.gpu_seconds[k] for k in GPUS},
            self.freeing + other.freeing,
        )

    def cpu_seconds(self) -> float:
        """CPU time: operators plus the Python between them (each floored at 0)."""
        return max(self.seconds, 0.0) + max(self.python, 0.0)

    def host_seconds(self) -> float:
        """What a GPU run still spends on the host between operators: the Python time, less the CPU
        allocator's returning of large buffers (a GPU's caching allocator keeps them)."""
        return max(self.python - self.freeing, 0.0)

    def device_seconds(self, key: str) -> float:
        """Time on GPU ``key``: its operators' roofline times plus the host time between them."""
        return self.gpu_seconds[key] + self.host_seconds()


def op_gpu_seconds(gpu: GPU, flops: float, nbytes: int) -> float:
    """Roofline time of one operator: ``max(flops / rate, 2 * nbytes / bandwidth) + overhead``."""
    return max(flops / gpu.flops, 2 * nbytes / gpu.bandwidth) + gpu.overhead


PHASES = ("setup", "step", "record", "once")


@dataclass
class Loop:
    """One training loop: ``requested`` steps asked for, ``run`` executed, a record every ``every`` steps.

    ``records`` counts the :func:`convbias.config.recording` blocks it ran (outermost ones);
    ``parent`` is the loop (and its phase) it opened in, if any.
    """

    name: str
    requested: int
    run: int
    every: int | None
    weight: float = 1.0  # how many such loops this one stands for (a smoke run keeps some items only)
    step: Cost = field(default_factory=Cost)
    record: Cost = field(default_factory=Cost)
    once: Cost = field(default_factory=Cost)
    setup: Cost = field(default_factory=Cost)  # after cap_steps, before the first step
    first: Cost | None = None  # the first step's cost (once a second step starts)
    records: int = 0
    steps_seen: int = 0  # steps started (config.step_starts)
    parent: "Loop | None" = field(default=None, repr=False)
    parent_phase: str = "step"
    kinds: list[str] = field(default_factory=list, repr=False)  # open recording blocks

    @property
    def phase(self) -> str:
        if self.kinds:
            return self.kinds[0]
        return "setup" if self.steps_seen == 0 else "step"

    def step_started(self) -> None:
        self.steps_seen += 1
        if self.steps_seen == 2:
            self.first = self.step.times(1.0)

    def cost(self, phase: str) -> Cost:
        return getattr(self, phase)

    def records_at(self, steps: int) -> int:
        """Records a loop of ``steps`` steps makes: one every ``every`` steps plus the smoke run's extra ones
        (a record at step 0, or at the end off the ``every`` grid)."""
        if self.every is None:
            return steps
        extra = self.records - math.ceil(self.run / self.every)
        return max(math.ceil(steps / self.every) + extra, 0)

    def factor(self, phase: str) -> float:
        """What one measured unit of ``phase`` stands for at the requested length (``weight`` left out)."""
        if phase == "setup" and self.steps_seen:
            return 1.0
        if phase in ("step", "setup"):
            return self.requested / max(self.run, 1)
        if phase == "record":
            if self.records == 0:
                return 1.0
            return self.records_at(self.requested) / self.records
        return 1.0

    def multiplier(self) -> float:
        """``weight`` times the factors of the loops this one opened in."""
        m, child = self.weight, self
        while child.parent is not None:
            m *= child.parent.factor(child.parent_phase)
            child = child.parent
        return m

    def scaled_steps(self) -> Cost:
        """The steps at the requested length: the first step once, the later ones for the rest.

        A loop that marks no steps (:func:`convbias.config.step_starts`) has its set-up
        scaled with its steps."""
        if self.steps_seen == 0:
            return self.setup.plus(self.step).times(self.factor("step"))
        if self.first is None or self.run < 2:
            return self.setup.plus(self.step.times(self.factor("step")))
        later = self.step.plus(self.first.times(-1.0))
        return self.setup.plus(self.first).plus(
            later.times((self.requested - 1) / (self.run - 1))
        )

    def scaled(self) -> Cost:
        """The loop's cost at its requested length (steps, records and once-work scaled separately)."""
        m = self.multiplier()
        total = self.scaled_steps().times(m)
        for phase in ("record", "once"):
            total = total.plus(self.cost(phase).times(m * self.factor(phase)))
        return total

    def measured(self) -> Cost:
        return self.setup.plus(self.step).plus(self.record).plus(self.once)


def _calibration_step(n: int) -> None:
    """``n`` training steps of a tiny network (tensors of a few numbers: the time is the operators' overhead)."""
    torch.manual_seed(0)
    w1 = torch.randn(4, 4, requires_grad=True)
    w2 = torch.randn(4, 1, requires_grad=True)
    x = torch.randn(8, 4)
    opt = torch.optim.SGD([w1, w2], lr=1e-3, momentum=0.9, foreach=False)
    for _ in range(n):
        loss = torch.tanh(x @ w1).matmul(w2).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            loss.view(1).add(1.0)
        opt.step()


def calibrate(n: int = 200, repeats: int = 3) -> tuple[float, float, float]:
    """The meter's own CPU seconds per operator ``(inside, between)``, and the seconds per byte to free
    a large buffer.

    On a loop of training steps of a tiny network (forward, backward, optimizer update:
    their time is all overhead), run plain and metered (best of ``repeats``):
    ``inside + between`` is the metered run's excess over the plain one per operator,
    ``between`` the part outside the timed calls. Subtracting both from every operator
    gives the plain run's time.
    """

    def plain() -> float:
        start = time.process_time()
        _calibration_step(n)
        return time.process_time() - start

    best_plain = min(plain() for _ in range(repeats))
    runs = []
    for _ in range(repeats):
        with CostMeter(overhead=(0.0, 0.0, 0.0)) as meter:
            _calibration_step(n)
        c = meter.outside
        runs.append((c.seconds + c.python, c.seconds, c.python, c.ops))
    _, inside, between, ops = min(runs)
    excess = (inside + between - best_plain) / ops
    # the plain run's time splits like the metered one's: operators and the Python between them
    share = inside / (inside + between)
    return excess * share, excess * (1 - share), free_seconds_per_byte()


#: storages at least this large are returned to the system when freed (counted in ``Cost.freeing``)
LARGE_BYTES = 1 << 20


def free_seconds_per_byte(blocks: int = 8, nbytes: int = 32 << 20) -> float:
    """CPU seconds per byte to free large touched buffers (best of three)."""
    best = math.inf
    for _ in range(3):
        xs = [torch.ones(nbytes // 4) for _ in range(blocks)]
        start = time.process_time()
        del xs
        best = min(best, time.process_time() - start)
    return best / (blocks * nbytes)


class CostMeter(TorchDispatchMode):
    """Measure every operator run inside ``with CostMeter() as meter:`` (see the module docstring).

    ``overhead``: the meter's own seconds per operator ``(inside, between)`` to subtract, and
    the seconds per byte of freeing a large buffer; default: measured by :func:`calibrate`
    when the block opens.
    """

    def __init__(self, overhead: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.overhead = overhead
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
        self._blocks: list[
            Loop | None
        ] = []  # open recording blocks: the loop each belongs to
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self._last = self.cpu_started  # end of the meter's last bookkeeping
        self._active = False
        self.wall = 0.0
        self.cpu = 0.0

    # -- where a cost goes
    def _target(self) -> tuple[Cost, float]:
        if self._open:
            loop = self._open[-1][0]
            return loop.cost(loop.phase), 1.0
        return self.outside, self._weight()

    def _flush(self, now: float) -> None:
        """Charge the Python time since the meter last ran to where costs go now."""
        cost, weight = self._target()
        cost.python += (now - self._last) * weight

    # -- loops
    def _on_loop(self, requested: int, run: int, every: int | None) -> None:
        now = time.process_time()
        frame = sys._getframe(2)  # the function that called cap_steps
        self._close_finished()
        self._flush(now)
        name = f"{frame.f_globals.get('__name__', '?').removeprefix('convbias.')}.{frame.f_code.co_name}"
        parent = self._open[-1][0] if self._open else None
        loop = Loop(
            name,
            int(requested),
            int(run),
            None if every is None else int(every),
            self._weight(),
            parent=parent,
            parent_phase=parent.phase if parent is not None else "step",
        )
        self.loops.append(loop)
        self._open.append((loop, frame))
        self._last = time.process_time()

    def _on_items(self, factor: float | None) -> None:
        now = time.process_time()
        self._close_finished()
        self._flush(now)
        if factor is None:
            self._weights.pop()
        else:
            self._weights.append(factor)
        self._last = time.process_time()

    def _on_record(self, kind: str | None) -> None:
        now = time.process_time()
        self._close_finished()
        self._flush(now)
        if kind is None:
            loop = self._blocks.pop()
            if loop is not None and loop.kinds:
                loop.kinds.pop()
        else:
            loop = self._open[-1][0] if self._open else None
            self._blocks.append(loop)
            if loop is not None:
                if not loop.kinds and kind == "record":
                    loop.records += 1
                loop.kinds.append(kind)
        self._last = time.process_time()

    def _on_step(self) -> None:
        now = time.process_time()
        self._close_finished()
        self._flush(now)
        if self._open:
            self._open[-1][0].step_started()
        self._last = time.process_time()

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
        try:  # tensors without a plain storage (functional wrappers, invalid storages) are not counted
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):
            return
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
        started = time.process_time()
        self._tracked.discard(tensor_id)
        entry = self._storages.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                self.live_bytes -= entry[0]
                del self._storages[key]
                if self._active and entry[0] >= LARGE_BYTES and len(self.overhead) > 2:
                    cost, weight = self._target()
                    cost.freeing += entry[0] * self.overhead[2] * weight
        if self._active:  # the meter's own time: not the run's Python
            self._last += time.process_time() - started

    # -- the dispatch hook
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        entered = time.process_time()
        kwargs = kwargs or {}
        start = time.process_time()
        out = func(*args, **kwargs)
        seconds = time.process_time() - start
        inside, between = self.overhead[:2]
        packet = func.overloadpacket
        flops = 0.0
        if packet in flop_registry:
            try:
                flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
            except Exception:  # a formula that does not fit this call: count no FLOPs
                flops = 0.0
        view = bool(getattr(func, "is_view", False))
        nbytes = 0
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                if not view:
                    nbytes += leaf.numel() * leaf.element_size()
                self._track(leaf)
        self._close_finished()
        cost, weight = self._target()
        cost.python += (entered - self._last - between) * weight
        cost.add(flops, seconds - inside, nbytes, weight, view)
        self._last = time.process_time()
        return out

    def __enter__(self):
        if self.overhead is None:
            self.overhead = calibrate()
        config.LOOP_HOOKS.append(self._on_loop)
        config.ITEM_HOOKS.append(self._on_items)
        config.RECORD_HOOKS.append(self._on_record)
        config.STEP_HOOKS.append(self._on_step)
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        self._last = self.cpu_started
        self._active = True
        return super().__enter__()

    def __exit__(self, *exc):
        now = time.process_time()
        self._close_finished()
        self._flush(now)
        self._open.clear()  # whatever ran, the block is over
        self._active = False
        self.wall = time.perf_counter() - self.started
        self.cpu = time.process_time() - self.cpu_started
        config.LOOP_HOOKS.remove(self._on_loop)
        config.ITEM_HOOKS.remove(self._on_items)
        config.RECORD_HOOKS.remove(self._on_record)
        config.STEP_HOOKS.remove(self._on_step)
        return super().__exit__(*exc)

    # -- results
    def measured(self) -> Cost:
        """What the run itself cost (capped loops as run)."""
        total = self.outside
        for loop in self.loops:
            total = total.plus(loop.measured())
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
            "meter_version": METER_VERSION,
            "meter_overhead_seconds": list(self.overhead or (0.0, 0.0, 0.0)),
            "wall_seconds": self.wall,
            "cpu_seconds": self.cpu,
            "measured": asdict(measured),
            "predicted": asdict(predicted),
            "predicted_cpu_seconds": predicted.cpu_seconds(),
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
                    "records": loop.records,
                    "weight": loop.weight,
                    "multiplier": loop.multiplier(),
                    "predicted": asdict(loop.scaled()),
                }
                for loop in self.loops
            ],
        }
