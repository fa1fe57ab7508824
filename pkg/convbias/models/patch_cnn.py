"""The two-layer CNN of the intrinsic-dimension case study, and its gradient-descent trainer.

Zhang, Gao, Zou & Cao (2025) study, on images ``x = (x^(1), ..., x^(P))`` of
``P`` patches in ``R^d``, the CNN

    f(W, x) = F_{+1}(W_{+1}, x) - F_{-1}(W_{-1}, x),
    F_j(W_j, x) = (1/m) sum_{r=1}^m sum_{p=1}^P sigma(<w_{j,r}, x^(p)>),

whose second layer is fixed (+1/m for class +1 filters, -1/m for class -1
filters) and whose ``2m`` filters ``w_{j,r}`` (rows of ``W``, ``2m x d``) are
trained by full-batch gradient descent on the logistic loss. The activation
``sigma`` is the Huberized ReLU (:func:`huberized_relu`).

:class:`PatchCNN` holds ``E`` independent copies of this network (weights
``(E, 2, m, d)``) so that a sweep over seeds and noise levels trains in one
batched ``einsum`` rather than a Python loop over runs; :func:`fit_gd` trains
them. The chapter's experiment, :func:`convbias.intrinsic_dimension.run_sigma_sweep`,
builds the data and the batch of networks. Used by chapter 1.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..config import cap_steps
from ..rank import stable_rank
from ..train import History, TrainingDiverged

Tensor = torch.Tensor


def huberized_relu(z: Tensor, kappa: float = 0.5) -> Tensor:
    """Huberized ReLU: ``0`` for ``z <= 0``, ``z^2 / (2 kappa)`` on ``(0, kappa]``, ``z - kappa/2`` above.

    It is continuously differentiable: the derivative ``clamp(z, 0, kappa) / kappa``
    rises from 0 to 1 on ``[0, kappa]``.
    """
    if kappa <= 0:
        raise ValueError(f"kappa (width of the quadratic piece) must be positive, got {kappa}")
    zc = z.clamp(0.0, kappa)
    return zc * zc / (2 * kappa) + (z - kappa).clamp_min(0.0)


class HuberizedReLU(nn.Module):
    """Module form of :func:`huberized_relu`."""

    def __init__(self, kappa: float = 0.5):
        super().__init__()
        if kappa <= 0:
            raise ValueError(f"kappa (width of the quadratic piece) must be positive, got {kappa}")
        self.kappa = float(kappa)

    def forward(self, z: Tensor) -> Tensor:
        return huberized_relu(z, self.kappa)

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}"


class PatchCNN(nn.Module):
    """``E`` independent two-layer patch CNNs with a fixed second layer.

    ``weight`` has shape ``(E, 2, m, d)``: ``weight[e, 0]`` are the ``m`` filters
    ``w_{+1,r}`` of member ``e``, ``weight[e, 1]`` the filters ``w_{-1,r}``.
    Member ``e`` is initialised ``N(0, init_std^2)`` from its own seed
    ``seeds[e]``, so a member does not depend on the others.
    """

    def __init__(self, d: int, m: int, seeds: Sequence[int] = (0,), kappa: float = 0.5, init_std: float = 0.01):
        super().__init__()
        if d < 1 or m < 1:
            raise ValueError(f"d and m must be positive, got d={d}, m={m}")
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must name at least one member")
        inits = [torch.randn(2, m, d, generator=torch.Generator().manual_seed(s)) * init_std for s in seeds]
        self.weight = nn.Parameter(torch.stack(inits))
        self.act = HuberizedReLU(kappa)

    @property
    def n_members(self) -> int:
        return self.weight.shape[0]

    def filters(self) -> Tensor:
        """The filter matrix ``W`` of every member: ``(E, 2m, d)``."""
        E, _, m, d = self.weight.shape
        return self.weight.reshape(E, 2 * m, d)

    def _preactivations(self, X: Tensor) -> Tensor:
        """``<w_{j,r}, x_i^(p)>`` as ``(E, n, P, 2m)``; ``X`` is ``(n, P, d)`` or ``(E, n, P, d)``."""
        E, _, m, d = self.weight.shape
        if X.shape[-1] != d or X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[0] != E):
            raise ValueError(f"X must be (n, P, d) or ({E}, n, P, d) with d={d}, got {tuple(X.shape)}")
        n, P = X.shape[-3], X.shape[-2]
        z = torch.matmul(X.reshape(*X.shape[:-3], n * P, d), self.filters().transpose(1, 2))
        return z.reshape(E, n, P, 2 * m)

    def _output_signs(self) -> Tensor:
        m = self.weight.shape[2]
        return torch.cat([self.weight.new_ones(m), -self.weight.new_ones(m)])

    def class_scores(self, X: Tensor) -> Tensor:
        """``F_{+1}`` and ``F_{-1}`` per member and image: ``(E, n, 2)``.

        ``X`` is ``(n, P, d)`` (the same images for every member) or
        ``(E, n, P, d)`` (one data set per member).
        """
        E, _, m, _ = self.weight.shape
        a = self.act(self._preactivations(X)).sum(2)  # (E, n, 2m)
        return a.reshape(E, -1, 2, m).mean(-1)

    def forward(self, X: Tensor) -> Tensor:
        """Network output ``f(W, x) = F_{+1} - F_{-1}``: ``(E, n)``."""
        F_ = self.class_scores(X)
        return F_[..., 0] - F_[..., 1]

    @torch.no_grad()
    def loss_and_grad(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Logistic loss ``L_e`` per member ``(E,)`` and its gradient in ``weight`` ``(E, 2, m, d)``.

        Written out (no autograd) because it is the whole cost of training:
        ``dL/dw_{j,r} = (1/n) sum_i l'_i y_i (j/m) sum_p sigma'(<w_{j,r}, x_i^(p)>) x_i^(p)``
        with ``l'_i = -1 / (1 + exp(y_i f(W, x_i)))``.
        """
        E, _, m, d = self.weight.shape
        z = self._preactivations(X)
        n, P = z.shape[1], z.shape[2]
        kappa = self.act.kappa
        zc = z.clamp(0.0, kappa)
        act = zc * zc / (2 * kappa) + (z - kappa).clamp_min(0.0)
        signs = self._output_signs()
        out = act.sum(2) @ signs / m  # (E, n)
        margin = y * out
        loss = F.softplus(-margin).mean(-1)
        dloss = -torch.sigmoid(-margin) * y / (n * m)  # dL/df_i times 1/m
        coef = (zc / kappa) * dloss[:, :, None, None] * signs  # (E, n, P, 2m)
        Xf = X.reshape(*X.shape[:-3], n * P, d)
        grad = torch.matmul(coef.reshape(E, n * P, 2 * m).transpose(1, 2), Xf)
        return loss, grad.reshape(E, 2, m, d)


def logistic_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean logistic loss ``log(1 + exp(-y f))`` per member: ``(E,)``."""
    return F.softplus(-y * out).mean(-1)


@torch.no_grad()
def _accuracy(out: Tensor, y: Tensor) -> Tensor:
    return (torch.sign(out) == y).float().mean(-1)


def fit_gd(
    model: PatchCNN,
    X: Tensor,
    y: Tensor,
    *,
    lr: float = 1.0,
    steps: int = 300,
    log_every: int = 10,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    progress: bool = True,
    desc: str = "gradient descent",
) -> History:
    """Full-batch gradient descent ``W <- W - lr * grad L(W)`` on the logistic loss, all members at once.

    ``X``: ``(n, P, d)`` or ``(E, n, P, d)``; ``y``: ``(n,)`` or ``(E, n)`` in
    {+1, -1}. Every ``log_every`` steps (and at step 0 and the end) the history
    records, one value per member, ``loss``, ``train_acc``, ``test_acc`` (when
    test data are given) and ``filter_srank`` (stable rank of ``W``). Values
    leave the device only at those records.
    """
    if lr <= 0 or steps < 1 or log_every < 1:
        raise ValueError(f"need lr > 0, steps >= 1 and log_every >= 1; got lr={lr}, steps={steps}, log_every={log_every}")
    steps = cap_steps(steps, log_every)  # a smoke run stops after a few steps
    dev = model.weight.device
    X, y = X.to(dev), y.to(dev)
    if X_test is not None:
        X_test, y_test = X_test.to(dev), y_test.to(dev)
    hist = History()

    def record(step: int, loss: Tensor) -> None:
        with torch.no_grad():
            out = model(X)
            values = {"loss": loss, "train_acc": _accuracy(out, y), "filter_srank": stable_rank(model.filters())}
            if X_test is not None:
                values["test_acc"] = _accuracy(model(X_test), y_test)
            values = {k: v.detach().cpu().numpy() for k, v in values.items()}
        if not np.isfinite(values["loss"]).all():
            raise TrainingDiverged(f"gradient descent diverged by step {step}: lower the learning rate (lr={lr}).")
        hist.record(step, **values)

    with torch.no_grad():
        record(0, logistic_loss(model(X), y))
    for step in tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=False):
        loss, grad = model.loss_and_grad(X, y)
        model.weight.data.sub_(lr * grad)
        if step % log_every == 0 or step == steps:
            record(step, loss.detach())
    return hist
