"""Training loops, and the vocabulary every loop of the package shares.

Here: one model (:func:`fit`), many small models at once (:func:`fit_ensemble`),
and full-batch gradient descent on the patch CNN of chapter 1 (``fit_gd``).
Beside them: one network fitted to one example (``convbias.one_example.fit_one_example``,
chapter 3) and an un-trained generator fitted to one image
(``convbias.denoise.fit_generator``, chapter 4). All five speak the same language:

- **result**: a :class:`History` (``hist["step"]``, ``hist["loss"]``, ...). A loop that
  leaves more than its records returns a subclass of it: :class:`EnsembleResult` (the
  trained members) and ``convbias.denoise.FitResult`` (the best and final images).
- **step 0**: the first record is the model before any update, then every
  ``log_every`` steps and the last step.
- **metrics**: one callable, ``metrics(model)`` (``metrics(params)``, the stacked
  parameters, for an ensemble), returning a mapping ``name -> number or tensor`` (one
  value per member for the loops that train members side by side), recorded with the loss.
- **epoch**: ``n // batch_size`` steps, the batches of one permutation (the last partial
  batch dropped), for the schedule, the sampler and ``epochs=`` alike.
- **optimizer**: a name (``"sgd"``; ``"adam"`` where the loop supports it) or, for the
  loops that train one ``nn.Module``, a ``torch.optim.Optimizer`` to continue with its state.
- **progress** ``=True`` and ``desc``: a bar through ``convbias.live.progress`` (none in
  a static build of the book).
- **divergence**: :class:`TrainingDiverged` when a recorded loss is NaN or infinite.
- **device**: a loop given a model trains where the model is; :func:`fit_ensemble`,
  which builds its members, takes ``device`` (default :func:`convbias.config.device`).
- **losses**: ``convbias.losses``.

All keep the data on the model's device, draw mini-batches from a seeded
generator (the same batch order for the same seed) and record without a
host-device sync between records.

The ensemble trainer stacks the parameters of E copies of a model and trains
them together: one ``vmap``-ed ``functional_call`` forward pass for all members,
then one backward pass through the sum of their losses; members may differ
in seed, learning rate and weight decay. Its update is plain SGD with optional
momentum, written exactly as ``torch.optim.SGD`` does it, so a member trained in
an ensemble follows the same trajectory as the same run trained alone with
:func:`fit` and ``torch.optim.SGD`` (up to floating-point reordering).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from .config import cap_steps, recording, step_starts
from .config import device as default_device
from .live import progress as progress_bar
from .losses import (
    accuracy,
    check_labels,
    check_loss_kind,
    logistic_loss,
    loss_value,
)  # noqa: F401
from .rank import stable_rank

Tensor = torch.Tensor
#: ``metrics(model_or_params) -> {name: value}``: what a loop records beside its loss
Metrics = Callable[[Any], Mapping[str, Any]]
OPTIMIZERS = ("sgd", "adam")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite (raised by every training loop of the package)."""


@dataclass
class History:
    """Values recorded along training: ``step`` and one list per metric; what every loop returns.

    The first record is step 0 (before any update). For members trained side by side
    (an ensemble, a :class:`~convbias.models.patch_cnn.PatchCNN`, a multi-member
    network) each recorded value is an array with one entry per member, and
    ``array(key)`` returns shape ``(n_records, E)``. A loop that leaves more than its
    records returns a subclass with those as fields (:class:`EnsembleResult`,
    ``convbias.denoise.FitResult``).
    """

    step: list[int] = field(default_factory=list)
    values: dict[str, list] = field(default_factory=dict)

    def record(self, step: int, **metrics: float | np.ndarray) -> None:
        self.step.append(int(step))
        for key, value in metrics.items():
            self.values.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.array(key)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def keys(self) -> list[str]:
        return list(self.values)

    def array(self, key: str) -> np.ndarray:
        if key == "step":
            return np.asarray(self.step)
        if key not in self.values:
            raise KeyError(f"no metric {key!r} was recorded; recorded: {self.keys()}")
        return np.asarray(self.values[key], dtype=float)

    def last(self, key: str) -> float | np.ndarray:
        return self.array(key)[-1]


# ----------------------------------------------------------------------------- checks of the inputs
def _check_int(value, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an integer, got {value!r} ({type(value).__name__})"
        )
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_rate(value: float | Sequence[float], name: str) -> None:
    v = np.asarray(value, dtype=float)
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_data(
    X: Tensor, y: Tensor, X_test: Tensor | None, y_test: Tensor | None, loss: str
) -> None:
    """Same number of inputs and targets, test data given as a pair, labels that the loss can read."""
    if len(X) != len(y):
        raise ValueError(
            f"X has {len(X)} examples but y has {len(y)}: give one target per example"
        )
    if len(X) == 0:
        raise ValueError("X holds no examples")
    if (X_test is None) != (y_test is None):
        raise ValueError("give X_test and y_test together (one was None)")
    if X_test is not None and len(X_test) != len(y_test):
        raise ValueError(
            f"X_test has {len(X_test)} examples but y_test has {len(y_test)}"
        )
    check_labels(loss, y, "y")
    check_labels(loss, y_test, "y_test")


def check_metrics(metrics: Metrics | None) -> None:
    """Refuse anything but one callable (the package's one metrics signature)."""
    if metrics is None or callable(metrics):
        return
    if isinstance(metrics, Mapping):
        raise TypeError(
            "metrics must be one callable returning {name: value}, not a mapping of callables: "
            "write metrics=lambda m: {name: fn(m) for name, fn in your_mapping.items()}"
        )
    raise TypeError(
        f"metrics must be a callable returning {{name: value}}, got {type(metrics).__name__}"
    )


def metric_values(metrics: Metrics | None, target: Any) -> dict[str, Any]:
    """``metrics(target)`` as a plain dict (empty without metrics); values are left where they are."""
    if metrics is None:
        return {}
    values = metrics(target)
    if not isinstance(values, Mapping):
        raise TypeError(
            f"metrics must return a mapping {{name: value}}, got {type(values).__name__}"
        )
    return dict(values)


def make_optimizer(
    optimizer: str | torch.optim.Optimizer,
    params: Iterable[Tensor],
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    allowed: Sequence[str] = OPTIMIZERS,
) -> torch.optim.Optimizer:
    """The optimizer a loop steps with: an instance as given, or ``"sgd"`` (SGD with ``momentum``) / ``"adam"``."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if optimizer not in allowed:
        raise ValueError(
            f"unknown optimizer {optimizer!r}: use one of {tuple(allowed)} or a torch.optim.Optimizer"
        )
    (
        _check_rate(lr, "lr"),
        _check_rate(momentum, "momentum"),
        _check_rate(weight_decay, "weight_decay"),
    )
    if optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def check_optimizer_name(optimizer: str, allowed: Sequence[str]) -> None:
    """For loops that write their update out (no optimizer object): refuse other names."""
    if isinstance(optimizer, torch.optim.Optimizer) or optimizer not in allowed:
        raise ValueError(
            f"this loop writes its update out and supports optimizer in {tuple(allowed)}, "
            f"got {optimizer!r}"
        )


def _first_parameter(model: nn.Module) -> nn.Parameter:
    param = next(model.parameters(), None)
    if param is None:
        raise ValueError(f"{type(model).__name__} has no parameters to train")
    return param


def _refuse_random_layers(model: nn.Module) -> None:
    for name, mod in model.named_modules():
        if (
            isinstance(
                mod,
                (
                    nn.Dropout,
                    nn.Dropout1d,
                    nn.Dropout2d,
                    nn.Dropout3d,
                    nn.AlphaDropout,
                    nn.FeatureAlphaDropout,
                ),
            )
            and mod.p > 0
        ):
            raise ValueError(
                f"module {name or type(mod).__name__} is a {type(mod).__name__}: an ensemble trains its members "
                "in one vmapped call, where a random mask cannot be drawn per member. Train this model with "
                "fit(), or remove the dropout (p=0)."
            )


# ----------------------------------------------------------------------------- batching
def steps_per_epoch(n: int, batch_size: int | None) -> int:
    """One epoch, everywhere in the package: ``n // batch_size`` steps (1 for full batch: ``None`` or ``>= n``).

    The batches of one permutation of the ``n`` examples, the last partial batch dropped.
    """
    return 1 if batch_size is None or batch_size >= n else n // batch_size


def _n_steps(
    n: int, batch_size: int | None, steps: int | None, epochs: int | None
) -> tuple[int, int]:
    """Return (total steps, steps per epoch).

    One epoch is ``n // batch_size`` steps: the batches of one permutation of the
    ``n`` examples, the last partial batch dropped (as :class:`EnsembleBatches` draws them),
    so the learning-rate schedule, the sampler and ``epochs=`` count the same epochs.
    """
    bs = n if batch_size is None else _check_int(batch_size, "batch_size")
    if not 1 <= bs <= n:
        raise ValueError(
            f"batch_size must lie in [1, {n}] (the number of examples), got {batch_size}"
        )
    per_epoch = steps_per_epoch(n, bs)
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    if steps is not None:
        _check_int(steps, "steps")
    else:
        _check_int(epochs, "epochs")
    total = steps if steps is not None else epochs * per_epoch
    return total, per_epoch


class EnsembleBatches:
    """Seeded mini-batch indices of E members at once: ``(E, batch_size)`` per step, ``None`` for full batch.

    Each member draws a fresh permutation of the ``n`` examples every epoch (from its
    own seed) and takes consecutive batches of it; the last partial batch of an epoch
    is dropped when ``n`` is not a multiple of ``batch_size`` (so every step sees the
    same batch size). The E permutations of an epoch are made together and moved to
    the device once, so a step costs one slice.
    """

    def __init__(
        self, n: int, batch_size: int | None, seeds: Sequence[int], device: torch.device
    ):
        self.n, self.bs = n, (n if batch_size is None else batch_size)
        self.per_epoch = n // self.bs
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.device = device
        self._perms: Tensor | None = None
        self._pos = self.per_epoch

    def next(self) -> Tensor | None:
        if self.bs == self.n:
            return None
        if self._pos >= self.per_epoch:
            self._perms = torch.stack(
                [torch.randperm(self.n, generator=g) for g in self.gens]
            ).to(self.device)
            self._pos = 0
        idx = self._perms[:, self._pos * self.bs : (self._pos + 1) * self.bs]
        self._pos += 1
        return idx


class BatchSampler:
    """One member's :class:`EnsembleBatches`: ``(batch_size,)`` indices per step, every index for full batch."""

    def __init__(self, n: int, batch_size: int | None, seed: int, device: torch.device):
        self._batches = EnsembleBatches(n, batch_size, [seed], device)

    def next(self) -> Tensor:
        idx = self._batches.next()
        return (
            torch.arange(self._batches.n, device=self._batches.device)
            if idx is None
            else idx[0]
        )


def check_milestones(milestones: Sequence[float] | None) -> list[float]:
    """``milestones`` as a list of fractions of the run in (0, 1), or a one-line error.

    The one meaning every training loop and sweep gives them: ``[0.6, 0.8]`` multiplies
    the learning rate by ``gamma`` from the first epoch past 60% of the run, and again
    past 80%.
    """
    values = [float(m) for m in (milestones or ())]
    if any(not 0 < m < 1 for m in values):
        raise ValueError(
            "milestones are fractions of the run in (0, 1) (0.5: halfway), "
            f"got {list(milestones or ())}"
        )
    return values


def _lr_factor(
    epoch: int, milestones: Sequence[float], gamma: float, epochs: float
) -> float:
    """``gamma ** k``, ``k`` the milestones (fractions of a run of ``epochs`` epochs) reached at ``epoch``."""
    if not milestones:
        return 1.0
    return gamma ** sum(epoch >= m * epochs for m in milestones)


def raise_diverged(step: int, what: str = "the training loss") -> None:
    """Raise :class:`TrainingDiverged` with the one message every loop gives."""
    raise TrainingDiverged(
        f"training diverged by step {step}: {what} is NaN or infinite. "
        "Lower the learning rate, or check the inputs for NaN."
    )


# ----------------------------------------------------------------------------- one model
def fit(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    loss: str = "ce",
    optimizer: str | torch.optim.Optimizer | None = "sgd",
    lr: float = 0.1,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    milestones: Sequence[float] | None = None,
    gamma: float = 0.2,
    seed: int = 0,
    log_every: int = 10,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    metrics: Metrics | None = None,
    progress: bool = True,
    desc: str = "training",
) -> History:
    """Train ``model`` on ``(X, y)`` and return its :class:`History`.

    ``optimizer="sgd"`` is SGD(lr, momentum, weight_decay), ``"adam"`` Adam(lr,
    weight_decay); an optimizer instance is stepped as it is (its state carries on).
    ``milestones`` (fractions of the run, :func:`~convbias.train.check_milestones`) multiply the
    learning rate by ``gamma``.
    ``batch_size=None`` is full-batch gradient descent. At step 0 (the loss on the
    whole training set) and every ``log_every`` steps (and at the end) it records
    ``loss`` (mean over the steps since the last record), ``train_loss``/``train_acc``,
    ``test_loss``/``test_acc`` when test data are given, and ``metrics(model)``.
    """
    check_loss_kind(loss)
    check_metrics(metrics)
    log_every = _check_int(log_every, "log_every")
    _check_data(X, y, X_test, y_test, loss)
    dev = _first_parameter(model).device
    X, y = X.to(dev), y.to(dev)
    if X_test is not None:
        X_test, y_test = X_test.to(dev), y_test.to(dev)
    total, per_epoch = _n_steps(len(X), batch_size, steps, epochs)
    milestones, run_epochs = check_milestones(milestones), total / per_epoch
    total = cap_steps(total, log_every)  # a smoke run stops after a few steps
    opt = make_optimizer(
        "sgd" if optimizer is None else optimizer,
        model.parameters(),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )
    base_lrs = [g["lr"] for g in opt.param_groups]
    sampler = BatchSampler(len(X), batch_size, seed, dev)
    hist = History()

    @recording()
    def record(step: int, mean_loss: float | None) -> None:
        train = evaluate(model, X, y, loss, prefix="train_")
        values = {
            "loss": train["train_loss"] if mean_loss is None else mean_loss,
            **train,
        }
        if X_test is not None:
            values.update(evaluate(model, X_test, y_test, loss, prefix="test_"))
        values.update(
            {
                k: float(v.detach() if torch.is_tensor(v) else v)
                for k, v in metric_values(metrics, model).items()
            }
        )
        hist.record(step, **values)

    record(0, None)
    running = torch.zeros((), device=dev)
    since = 0
    bar = progress_bar(range(1, total + 1), desc=desc, enabled=progress)
    for step in bar:
        step_starts()
        epoch = (step - 1) // per_epoch
        factor = _lr_factor(epoch, milestones, gamma, run_epochs)
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * factor
        idx = sampler.next()
        model.train()
        value = loss_value(loss, model(X[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        running = running + value.detach()
        since += 1
        if step % log_every == 0 or step == total:
            with recording():
                mean_loss = (running / since).item()
                if not math.isfinite(mean_loss):
                    raise_diverged(step, "the training loss")
                record(step, mean_loss)
                bar.set_postfix(loss=f"{mean_loss:.3g}")
                running, since = torch.zeros((), device=dev), 0
    return hist


@torch.no_grad()
def evaluate(
    model: nn.Module, X: Tensor, y: Tensor, loss: str = "ce", prefix: str = ""
) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``(X, y)`` in eval mode (mode restored afterwards)."""
    was_training = model.training
    model.eval()
    out = model(X)
    model.train(was_training)
    return {
        f"{prefix}loss": loss_value(loss, out, y).item(),
        f"{prefix}acc": accuracy(loss, out, y).item(),
    }


# ----------------------------------------------------------------------------- ensembles
@dataclass(kw_only=True)
class EnsembleResult(History):
    """The :class:`History` of E members trained together, with their stacked parameters (leading dimension E).

    ``result["loss"]`` is ``(n_records, E)``; ``config`` holds each member's ``seed``,
    ``lr`` and ``weight_decay``.
    """

    base: nn.Module
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    config: dict[str, np.ndarray]

    @property
    def history(self) -> History:
        """The result itself (it is a :class:`History`); kept so ``result.history[...]`` still reads."""
        return self

    @property
    def size(self) -> int:
        return len(next(iter(self.params.values())))

    def member(self, i: int) -> nn.Module:
        """A standalone copy of member ``i`` as an ordinary module."""
        model = copy.deepcopy(self.base)
        state = {
            k: v[i].detach().clone() for k, v in {**self.params, **self.buffers}.items()
        }
        model.load_state_dict(state)
        return model

    def forward(self, X: Tensor) -> Tensor:
        """Outputs of every member on the same inputs: shape ``(E, N, ...)``."""
        return ensemble_forward(self.base, self.params, self.buffers, X)


def ensemble_forward(
    base: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor], X: Tensor
) -> Tensor:
    """Evaluate all stacked members on shared inputs ``X`` (one vmapped call)."""

    def one(p, b):
        return functional_call(base, (p, b), (X,))

    return vmap(one)(params, buffers)


def _as_vector(value: float | Sequence[float], E: int, name: str) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float32)
    if v.ndim == 0:
        v = v.expand(E)
    if v.shape != (E,):
        raise ValueError(
            f"{name} must be a number or have one value per member ({E}), got shape {tuple(v.shape)}"
        )
    return v.clone()


def _refuse_running_stats(model: nn.Module) -> None:
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            raise ValueError(
                f"module {name or type(mod).__name__} is a BatchNorm with running statistics, which an "
                "ensemble cannot update inside vmap: build it with track_running_stats=False."
            )


def fit_ensemble(
    make_model: Callable[[], nn.Module],
    X: Tensor,
    y: Tensor,
    *,
    seeds: Sequence[int],
    lr: float | Sequence[float] = 0.1,
    weight_decay: float | Sequence[float] = 0.0,
    momentum: float = 0.0,
    loss: str = "ce",
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    milestones: Sequence[float] | None = None,
    gamma: float = 0.2,
    log_every: int = 10,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    metrics: Metrics | None = None,
    optimizer: str = "sgd",
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "ensemble",
) -> EnsembleResult:
    """Train ``E = len(seeds)`` copies of ``make_model()`` together.

    Member ``e`` is initialised under ``torch.manual_seed(seeds[e])``, draws its
    mini-batches from a generator seeded with ``seeds[e]`` and uses its own
    ``lr[e]`` and ``weight_decay[e]`` (numbers are broadcast). The update is
    ``v <- momentum * v + (g + weight_decay * w)``, ``w <- w - lr * v`` (PyTorch's
    SGD; ``optimizer`` can only be ``"sgd"``). ``metrics(params)`` receives the
    stacked parameters and returns tensors of shape ``(E,)``; the result records,
    at step 0 and every ``log_every`` steps, ``loss``, ``train_loss``/``train_acc`` (and
    ``test_loss``/``test_acc``) and the metrics with one value per member. The
    members are built and trained on ``device`` (default :func:`convbias.config.device`).
    """
    check_loss_kind(loss)
    check_metrics(metrics)
    check_optimizer_name(optimizer, ("sgd",))
    log_every = _check_int(log_every, "log_every")
    (
        _check_rate(lr, "lr"),
        _check_rate(momentum, "momentum"),
        _check_rate(weight_decay, "weight_decay"),
    )
    _check_data(X, y, X_test, y_test, loss)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one member")
    E = len(seeds)
    dev = torch.device(device) if device is not None else default_device()
    members = [m.to(dev) for m in build_members(make_model, seeds)]
    base = members[0]
    _first_parameter(base)
    _refuse_running_stats(base)
    _refuse_random_layers(base)
    names = [n for n, _ in base.named_parameters()]
    params = {
        n: torch.stack(
            [dict(m.named_parameters())[n].detach() for m in members]
        ).clone()
        for n in names
    }
    buffers = {
        n: torch.stack([dict(m.named_buffers())[n] for m in members]).clone()
        for n, _ in base.named_buffers()
    }
    lrs = _as_vector(lr, E, "lr").to(dev)
    wds = _as_vector(weight_decay, E, "weight_decay").to(dev)
    X, y = X.to(dev), y.to(dev)
    if X_test is not None:
        X_test, y_test = X_test.to(dev), y_test.to(dev)
    total, per_epoch = _n_steps(len(X), batch_size, steps, epochs)
    milestones, run_epochs = check_milestones(milestones), total / per_epoch
    total = cap_steps(total, log_every)  # a smoke run stops after a few steps
    batches = EnsembleBatches(len(X), batch_size, seeds, dev)
    velocity = {n: torch.zeros_like(p) for n, p in params.items()}

    # One vmapped forward pass, then ordinary autograd on the sum of the members' losses:
    # members share no parameters, so each gets exactly its own gradient (cheaper per
    # step than vmap(grad(...)): benchmarks/README.md).
    forward = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))
    member_losses = vmap(lambda out, yb: loss_value(loss, out, yb))
    # full batch: every member sees the same X, which is then not gathered E times
    forward_shared = vmap(
        lambda p, b, xb: functional_call(base, (p, b), (xb,)), in_dims=(0, 0, None)
    )
    member_losses_shared = vmap(
        lambda out, yb: loss_value(loss, out, yb), in_dims=(0, None)
    )
    for p in params.values():
        p.requires_grad_(True)
    hist = History()

    @recording()
    def record(step: int, mean_loss: np.ndarray | None) -> None:
        with torch.no_grad():
            values = _ensemble_eval(base, params, buffers, X, y, loss, "train_")
            values = {
                "loss": values["train_loss"] if mean_loss is None else mean_loss,
                **values,
            }
            if X_test is not None:
                values.update(
                    _ensemble_eval(base, params, buffers, X_test, y_test, loss, "test_")
                )
            for name, value in metric_values(metrics, params).items():
                values[name] = torch.as_tensor(value).detach().cpu().numpy()
        hist.record(step, **values)

    record(0, None)
    running = torch.zeros(E, device=dev)
    since = 0
    bar = progress_bar(range(1, total + 1), desc=f"{desc} (E={E})", enabled=progress)
    for step in bar:
        step_starts()
        epoch = (step - 1) // per_epoch
        step_lr = (lrs * _lr_factor(epoch, milestones, gamma, run_epochs)).to(dev)
        idx = batches.next()  # (E, B), or None for full batch
        if idx is None:
            values = member_losses_shared(forward_shared(params, buffers, X), y)
        else:
            values = member_losses(forward(params, buffers, X[idx]), y[idx])
        for p in params.values():
            p.grad = None
        values.sum().backward()
        with torch.no_grad():
            for n, p in params.items():
                shape = (E,) + (1,) * (p.ndim - 1)
                g = p.grad + wds.view(shape) * p
                v = velocity[n].mul_(momentum).add_(g) if momentum else g
                p.sub_(step_lr.view(shape) * v)
        running += values.detach()
        since += 1
        if step % log_every == 0 or step == total:
            with recording():
                mean_loss = (running / since).cpu().numpy()
                if not np.isfinite(mean_loss).all():
                    bad = [seeds[i] for i in np.flatnonzero(~np.isfinite(mean_loss))]
                    raise_diverged(
                        step, f"the training loss of the members with seeds {bad}"
                    )
                record(step, mean_loss)
                bar.set_postfix(loss=f"{float(mean_loss.mean()):.3g}")
                running.zero_()
                since = 0
    config = {
        "seed": np.asarray(seeds),
        "lr": lrs.cpu().numpy(),
        "weight_decay": wds.cpu().numpy(),
    }
    params = {n: p.detach() for n, p in params.items()}
    return EnsembleResult(
        step=hist.step,
        values=hist.values,
        base=base,
        params=params,
        buffers=buffers,
        config=config,
    )


def build_members(
    make_model: Callable[[], nn.Module], seeds: Sequence[int]
) -> list[nn.Module]:
    """The E initial members of :func:`fit_ensemble`: ``make_model()`` under ``torch.manual_seed(seeds[e])``."""
    members = []
    for s in seeds:
        torch.manual_seed(int(s))
        members.append(make_model())
    return members


def _ensemble_eval(base, params, buffers, X, y, loss, prefix) -> dict[str, np.ndarray]:
    was_training = base.training
    base.eval()
    out = ensemble_forward(base, params, buffers, X)
    base.train(was_training)
    losses = vmap(lambda o: loss_value(loss, o, y))(out)
    accs = vmap(lambda o: accuracy(loss, o, y))(out)
    return {f"{prefix}loss": losses.cpu().numpy(), f"{prefix}acc": accs.cpu().numpy()}


# ----------------------------------------------------------------------------- the patch CNN of chapter 1
@torch.no_grad()
def _accuracy(out: Tensor, y: Tensor) -> Tensor:
    """Per-member accuracy of outputs ``(E, n)`` against labels ±1 (``(n,)`` or ``(E, n)``): ``(E,)``."""
    return (torch.sign(out) == y).float().mean(-1)


def fit_gd(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    lr: float = 1.0,
    steps: int = 300,
    log_every: int = 10,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    metrics: Metrics | None = None,
    optimizer: str = "sgd",
    progress: bool = True,
    desc: str = "gradient descent",
) -> History:
    """Full-batch gradient descent ``W <- W - lr * grad L(W)`` on the logistic loss, all members at once.

    ``model`` is a :class:`~convbias.models.patch_cnn.PatchCNN` (its ``loss_and_grad``
    gives the gradient in closed form; ``optimizer`` can only be ``"sgd"``, momentum 0).
    ``X``: ``(n, P, d)`` or ``(E, n, P, d)``; ``y``: ``(n,)`` or ``(E, n)`` in
    {+1, -1}. At step 0, every ``log_every`` steps and at the end the history
    records, one value per member, ``loss`` (at the weights the step started from),
    ``train_acc``, ``test_acc`` (when test data are given), ``filter_srank`` (stable
    rank of ``W``) and ``metrics(model)``. Values leave the device only at those records.
    """
    if lr <= 0 or steps < 1 or log_every < 1:
        raise ValueError(
            f"need lr > 0, steps >= 1 and log_every >= 1; got lr={lr}, steps={steps}, log_every={log_every}"
        )
    check_metrics(metrics)
    check_optimizer_name(optimizer, ("sgd",))
    check_labels("logistic", y, "y")
    check_labels("logistic", y_test, "y_test")
    steps = cap_steps(steps, log_every)  # a smoke run stops after a few steps
    dev = model.weight.device
    X, y = X.to(dev), y.to(dev)
    if X_test is not None:
        X_test, y_test = X_test.to(dev), y_test.to(dev)
    hist = History()

    @recording()
    def record(step: int, loss: Tensor) -> None:
        with torch.no_grad():
            out = model(X)
            values = {
                "loss": loss,
                "train_acc": _accuracy(out, y),
                "filter_srank": stable_rank(model.filters(), batch=True),
            }
            if X_test is not None:
                values["test_acc"] = _accuracy(model(X_test), y_test)
            values.update(metric_values(metrics, model))
            values = {
                k: torch.as_tensor(v).detach().cpu().numpy() for k, v in values.items()
            }
        if not np.isfinite(values["loss"]).all():
            raise_diverged(step, f"the logistic loss (lr={lr})")
        hist.record(step, **values)

    with torch.no_grad(), recording():
        record(0, logistic_loss(model(X), y))
    for step in progress_bar(range(1, steps + 1), desc=desc, enabled=progress):
        step_starts()
        loss, grad = model.loss_and_grad(X, y)
        model.weight.data.sub_(lr * grad)
        if step % log_every == 0 or step == steps:
            record(step, loss.detach())
    return hist
