"""Fit a network to ONE example (deep image prior / deep decoder style), many members at once.

:func:`fit_one_example` minimises the mean squared error between ``model(x)``
(or ``model()`` for generators that own their input) and a target ``y``. A model
with a ``members`` attribute ``E`` (e.g. :class:`convbias.models.conv1d.DeepConv1d`)
returns ``E`` outputs side by side; the loss minimised is the *sum* of the E
members' losses, so each member follows its own gradient exactly and one SGD
run trains E independent networks. Losses stay on the device during training
and are copied to the host once at the end (no per-step synchronisation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .cache import resumable
from .config import cap_steps, recording, step_starts
from .live import progress as progress_bar
from .losses import member_losses
from .train import (
    OPTIMIZERS,
    History,
    Metrics,
    check_metrics,
    make_optimizer,
    metric_values,
    raise_diverged,
)

Tensor = torch.Tensor


def fit_one_example(
    model: nn.Module,
    y: Tensor,
    x: Tensor | None = None,
    *,
    steps: int = 2000,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    optimizer: str | torch.optim.Optimizer = "sgd",
    log_every: int = 10,
    metrics: Metrics | None = None,
    progress: bool = True,
    desc: str = "fitting",
    cache: str | None = None,
) -> History:
    """Fit ``model`` to the single target ``y`` and return the losses.

    ``optimizer="sgd"`` is SGD with ``momentum`` (the paper: lr 0.1, momentum 0.9);
    ``"adam"`` uses Adam with ``lr``; an optimizer instance is stepped as given. The
    history holds ``loss`` of shape ``(records, members)`` measured at the steps
    ``hist["step"]`` (every ``log_every`` steps, before that step's update, starting
    at step 0) plus the final loss after the last update, and ``metrics(model)`` at
    the same steps. ``cache`` names the run in the results cache
    (:mod:`convbias.cache`): a rerun with the same initial model, data and settings
    restores the history and the trained weights instead of fitting again.
    """
    for value, name in ((steps, "steps"), (log_every, "log_every")):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for value, name in (
        (lr, "lr"),
        (momentum, "momentum"),
        (weight_decay, "weight_decay"),
    ):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no trainable parameters to fit")
    if not isinstance(optimizer, torch.optim.Optimizer) and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {OPTIMIZERS}")
    check_metrics(metrics)
    fit_kw = dict(
        steps=steps,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        optimizer=optimizer,
        log_every=log_every,
        metrics=metrics,
        progress=progress,
        desc=desc,
    )
    if (
        cache is None
        or isinstance(optimizer, torch.optim.Optimizer)
        or metrics is not None
    ):
        return _fit(model, y, x, **fit_kw)
    config = dict(
        model=model,
        y=y,
        x=x,
        steps=steps,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        optimizer=optimizer,
        log_every=log_every,
        device=str(next(model.parameters()).device),
    )

    def run() -> tuple[History, dict[str, Tensor]]:
        hist = _fit(model, y, x, **fit_kw)
        return hist, {k: v.detach().cpu() for k, v in model.state_dict().items()}

    hist, state = resumable(cache, config, run)
    model.load_state_dict(
        state
    )  # a restored run leaves the model trained, as a fresh one does
    return hist


def _fit(
    model: nn.Module,
    y: Tensor,
    x: Tensor | None,
    *,
    steps: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    optimizer: str | torch.optim.Optimizer,
    log_every: int,
    metrics: Metrics | None,
    progress: bool,
    desc: str,
) -> History:
    steps = cap_steps(steps, log_every)  # a smoke run stops after a few steps
    E = int(getattr(model, "members", 1))
    dev = next(model.parameters()).device
    y = y.to(dev)
    x = None if x is None else x.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(
        optimizer, params, lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    losses = torch.empty(steps + 1, E, device=dev)
    logged = list(range(0, steps, log_every)) + [steps]
    measured: dict[int, dict] = {}

    def forward() -> Tensor:
        return model() if x is None else model(x)

    @recording()
    def measure(t: int) -> None:
        if metrics is not None:
            with torch.no_grad():
                measured[t] = metric_values(metrics, model)

    model.train()
    for t in progress_bar(range(steps), desc=desc, enabled=progress):
        step_starts()
        if t % log_every == 0:
            measure(t)
        per_member = member_losses(forward(), y, E)
        opt.zero_grad(set_to_none=True)
        per_member.sum().backward()
        opt.step()
        losses[t] = per_member.detach()
    with torch.no_grad(), recording(once=True):
        losses[steps] = member_losses(forward(), y, E)
    measure(steps)
    values = losses.cpu().numpy()
    if not np.isfinite(values).all():
        raise_diverged(int(np.argmax(~np.isfinite(values).all(axis=1))), "the loss")
    hist = History()
    for t in logged:
        extra = {
            k: torch.as_tensor(v).detach().cpu().numpy()
            for k, v in measured.get(t, {}).items()
        }
        hist.record(t, loss=values[t], **extra)
    return hist
