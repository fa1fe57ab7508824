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
batched ``einsum`` rather than a Python loop over runs; ``convbias.train.fit_gd``
trains them with the logistic loss ``convbias.losses.logistic_loss``. The chapter's
experiment, :func:`convbias.intrinsic_dimension.run_sigma_sweep`, builds the data and
the batch of networks. Used by chapter 1.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def huberized_relu(z: Tensor, kappa: float = 0.5) -> Tensor:
    """Huberized ReLU: ``0`` for ``z <= 0``, ``z^2 / (2 kappa)`` on ``(0, kappa]``, ``z - kappa/2`` above.

    It is continuously differentiable: the derivative ``clamp(z, 0, kappa) / kappa``
    rises from 0 to 1 on ``[0, kappa]``.
    """
    if kappa <= 0:
        raise ValueError(
            f"kappa (width of the quadratic piece) must be positive, got {kappa}"
        )
    return _huberized(z, kappa)[0]


def _huberized(z: Tensor, kappa: float) -> tuple[Tensor, Tensor]:
    """``(sigma(z), clamp(z, 0, kappa))``: the value, and ``kappa`` times the derivative ``sigma'(z)``."""
    zc = z.clamp(0.0, kappa)
    return zc * zc / (2 * kappa) + (z - kappa).clamp_min(0.0), zc


class HuberizedReLU(nn.Module):
    """Module form of :func:`huberized_relu`."""

    def __init__(self, kappa: float = 0.5):
        super().__init__()
        if kappa <= 0:
            raise ValueError(
                f"kappa (width of the quadratic piece) must be positive, got {kappa}"
            )
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

    def __init__(
        self,
        d: int,
        m: int,
        seeds: Sequence[int] = (0,),
        kappa: float = 0.5,
        init_std: float = 0.01,
    ):
        super().__init__()
        if d < 1 or m < 1:
            raise ValueError(f"d and m must be positive, got d={d}, m={m}")
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must name at least one member")
        inits = [
            torch.randn(2, m, d, generator=torch.Generator().manual_seed(s)) * init_std
            for s in seeds
        ]
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
        if (
            X.shape[-1] != d
            or X.ndim not in (3, 4)
            or (X.ndim == 4 and X.shape[0] != E)
        ):
            raise ValueError(
                f"X must be (n, P, d) or ({E}, n, P, d) with d={d}, got {tuple(X.shape)}"
            )
        n, P = X.shape[-3], X.shape[-2]
        z = torch.matmul(
            X.reshape(*X.shape[:-3], n * P, d), self.filters().transpose(1, 2)
        )
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
        act, zc = _huberized(z, kappa)
        signs = self._output_signs()
        out = act.sum(2) @ signs / m  # (E, n)
        margin = y * out
        loss = F.softplus(-margin).mean(-1)
        dloss = -torch.sigmoid(-margin) * y / (n * m)  # dL/df_i times 1/m
        coef = (zc / kappa) * dloss[:, :, None, None] * signs  # (E, n, P, 2m)
        Xf = X.reshape(*X.shape[:-3], n * P, d)
        grad = torch.matmul(coef.reshape(E, n * P, 2 * m).transpose(1, 2), Xf)
        return loss, grad.reshape(E, 2, m, d)
