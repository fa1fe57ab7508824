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
from tqdm.auto import tqdm

from .cache import resumable
from .config import cap_steps
from .train import History, TrainingDiverged

Tensor = torch.Tensor
OPTIMIZERS = ("sgd", "adam")


def member_losses(out: Tensor, y: Tensor, members: int) -> Tensor:
    """Mean squared error of each member: ``out`` holds ``members`` blocks shaped like ``y``; returns ``(members,)``."""
    if out.numel() != members * y.numel():
        raise ValueError(f"output of shape {tuple(out.shape)} does not hold {members} member(s) shaped like "
                         f"the target {tuple(y.shape)}")
    # (B, E*C, ...) -> (B, E, C*...) -> per-member mean over everything but the member axis
    diff = out.reshape(out.shape[0], members, -1) - y.reshape(y.shape[0], 1, -1)
    return diff.pow(2).mean(dim=(0, 2))


def fit_one_example(model: nn.Module, y: Tensor, x: Tensor | None = None, *, steps: int = 2000, lr: float = 0.1,
                    momentum: float = 0.9, optimizer: str = "sgd", log_every: int = 1, progress: bool = False,
                    desc: str = "fitting", cache: str | None = None) -> History:
    """Fit ``model`` to the single target ``y`` and return the losses.

    ``optimizer="sgd"`` is SGD with ``momentum`` (the paper: lr 0.1, momentum 0.9);
    ``"adam"`` uses Adam with ``lr``. The history holds ``loss`` of shape
    ``(records, members)`` measured at the steps ``hist["step"]`` (every
    ``log_every`` steps, before that step's update, starting at step 0) plus the final
    loss after the last update. ``cache`` names the run in the results cache
    (:mod:`convbias.cache`): a rerun with the same initial model, data and settings
    restores the history and the trained weights instead of fitting again.
    """
    for value, name in ((steps, "steps"), (log_every, "log_every")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for value, name in ((lr, "lr"), (momentum, "momentum")):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no trainable parameters to fit")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {OPTIMIZERS}")
    if cache is None:
        return _fit(model, y, x, steps, lr, momentum, optimizer, log_every, progress, desc)
    config = dict(model=model, y=y, x=x, steps=steps, lr=lr, momentum=momentum, optimizer=optimizer,
                  log_every=log_every, device=str(next(model.parameters()).device))

    def run() -> tuple[History, dict[str, Tensor]]:
        hist = _fit(model, y, x, steps, lr, momentum, optimizer, log_every, progress, desc)
        return hist, {k: v.detach().cpu() for k, v in model.state_dict().items()}

    hist, state = resumable(cache, config, run)
    model.load_state_dict(state)  # a restored run leaves the model trained, as a fresh one does
    return hist


def _fit(model: nn.Module, y: Tensor, x: Tensor | None, steps: int, lr: float, momentum: float, optimizer: str,
         log_every: int, progress: bool, desc: str) -> History:
    steps = cap_steps(steps, steps)  # a smoke run stops after a few steps; one evaluation, at the end
    E = int(getattr(model, "members", 1))
    dev = next(model.parameters()).device
    y = y.to(dev)
    x = None if x is None else x.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=lr, momentum=momentum) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=lr))
    losses = torch.empty(steps + 1, E, device=dev)

    def forward() -> Tensor:
        return model() if x is None else model(x)

    model.train()
    for t in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        per_member = member_losses(forward(), y, E)
        opt.zero_grad(set_to_none=True)
        per_member.sum().backward()
        opt.step()
        losses[t] = per_member.detach()
    with torch.no_grad():
        losses[steps] = member_losses(forward(), y, E)
    values = losses.cpu().numpy()
    if not np.isfinite(values).all():
        first = int(np.argmax(~np.isfinite(values).all(axis=1)))
        raise TrainingDiverged(f"training diverged at step {first}: the loss is NaN or infinite. "
                               "Lower the learning rate.")
    hist = History()
    for t in list(range(0, steps, log_every)) + [steps]:
        hist.record(t, loss=values[t])
    return hist
