"""The losses every training loop minimises, in one place.

``loss_value(kind, out, y)`` is the mean loss of one model (``kind`` one of
``LOSSES``); :func:`logistic_loss` and :func:`member_losses` are the
per-member forms used when ``E`` networks are trained side by side (one value
per member, so the sum of them trains each member on its own gradient).
:func:`check_labels` refuses targets a loss cannot read (0/1 labels for the
logistic loss, which needs ``y`` in {-1, +1}). Used by :mod:`convbias.train`
(chapters 1, 2, 5), ``convbias.one_example`` and ``convbias.gradients``
(chapter 3) and :mod:`convbias.sharpness` (chapter 7). Used by chapters 1, 2, 3, 5 and 7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
LOSSES = ("ce", "logistic", "mse")


def check_loss_kind(kind: str) -> None:
    """Refuse a loss name that is not one of ``LOSSES``."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}: use one of {LOSSES}")


def check_labels(kind: str, y: Tensor | None, which: str = "y") -> None:
    """Refuse labels the loss ``kind`` cannot read (logistic: ``y`` in {-1, +1})."""
    if kind != "logistic" or y is None:
        return
    if not bool(((y == 1) | (y == -1)).all()):
        seen = torch.unique(y.detach().cpu())[:5].tolist()
        hint = " (0/1 labels: pass 2 * y - 1)" if set(seen) <= {0, 1} else ""
        raise ValueError(
            f"loss='logistic' needs labels in {{-1, +1}}, "
            f"but {which} holds {seen}{hint}"
        )


def logistic_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean logistic loss ``log(1 + exp(-y f))`` over the last axis.

    One value per member for ``(E, n)`` outputs.
    """
    return F.softplus(-y * out).mean(-1)


def member_losses(out: Tensor, y: Tensor, members: int) -> Tensor:
    """Mean squared error of each member: ``(members,)``.

    ``out`` holds ``members`` blocks side by side, each shaped like ``y``.
    """
    if out.numel() != members * y.numel():
        raise ValueError(
            f"output of shape {tuple(out.shape)} does not hold {members} member(s) "
            f"shaped like the target {tuple(y.shape)}"
        )
    # (B, E*C, ...) -> (B, E, C*...) -> per-member mean over all but the member axis
    diff = out.reshape(out.shape[0], members, -1) - y.reshape(y.shape[0], 1, -1)
    return diff.pow(2).mean(dim=(0, 2))


def loss_value(kind: str, out: Tensor, y: Tensor) -> Tensor:
    """Mean loss of outputs ``out`` against targets ``y``.

    ``ce``: cross-entropy on class indices. ``logistic``: ``log(1 + exp(-y f))``
    with labels in {-1, +1} and one output per example. ``mse``: mean squared
    error; integer class labels are one-hot encoded to the output width.
    """
    if kind == "ce":
        return F.cross_entropy(out, y)
    if kind == "logistic":
        return F.softplus(-y * out.reshape(y.shape)).mean()
    if kind == "mse":
        if not y.is_floating_point() and out.ndim == 2:
            # one-hot by scatter, not F.one_hot, so it also works inside vmap
            y = torch.zeros_like(out).scatter(-1, y.unsqueeze(-1), 1.0)
        return (
            F.mse_loss(out, y.reshape(out.shape))
            if y.numel() == out.numel()
            else F.mse_loss(out, y)
        )
    raise ValueError(f"unknown loss {kind!r}: use one of {LOSSES}")


def accuracy(kind: str, out: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct predictions.

    Labels ±1 for ``logistic``, class indices (or one-hot rows) otherwise.
    """
    if kind == "logistic":
        return (torch.sign(out.reshape(y.shape)) == torch.sign(y)).float().mean()
    if y.is_floating_point() and y.ndim == out.ndim:
        y = y.argmax(-1)
    return (out.argmax(-1) == y).float().mean()
