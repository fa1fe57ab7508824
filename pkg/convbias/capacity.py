"""Norm-based capacity of a CNN counted two ways: from its kernels and from its exact eFCN.

A conv layer with kernel ``K`` (``c_out x c_in x k x k``), stride 1 and circular padding
on ``H x W`` maps is the dense matrix ``T(K)`` of its eFCN (:func:`convbias.efcn.to_fcn`),
and every tap of ``K`` appears once per output position, so exactly

.. math:: \\|T(K)\\|_F = \\sqrt{H_\\text{out} W_\\text{out}}\\, \\|K\\|_F .

``rho = prod_l ||W_l||_F`` (Poggio et al.) therefore differs by ``prod_l sqrt(positions_l)``
between the two counts of the *same* function. We evaluate one norm-based bound on
both: the Frobenius-product Rademacher bound of Golowich, Rakhlin & Shamir (2018),

.. math:: \\mathcal{R}_n \\le \\frac{B\\,(\\sqrt{2 L \\ln 2} + 1)\\,\\rho}{\\sqrt n},

``B = max_i ||x_i||_2``, ``L`` layers, bias-free ReLU network. With the eFCN's dense
matrices it is a theorem about the eFCN (hence the CNN's function); with kernel norms
it is the conv-aware count. Used by chapter 6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .checks import Check, at_least, at_most
from .efcn import to_fcn


def circular_cnn(
    input_shape: Sequence[int],
    channels: int = 8,
    depth: int = 3,
    n_classes: int = 10,
    kernel: int = 3,
    padding_mode: str = "circular",
) -> nn.Sequential:
    """``depth`` bias-free stride-1 conv + ReLU layers (circular padding), then a linear read-out."""
    c_in, H, W = input_shape
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [
            nn.Conv2d(
                c_in if i == 0 else channels,
                channels,
                kernel,
                padding=kernel // 2,
                padding_mode=padding_mode,
                bias=False,
            ),
            nn.ReLU(),
        ]
    layers += [nn.Flatten(), nn.Linear(channels * H * W, n_classes, bias=False)]
    return nn.Sequential(*layers)


@dataclass
class Capacity:
    """Per-layer norms of a network counted from kernels and from its eFCN, and the bounds."""

    kernel_norms: np.ndarray  # ||K_l||_F (the read-out's ||W||_F)
    dense_norms: np.ndarray  # ||T(K_l)||_F from the eFCN
    positions: np.ndarray  # output positions per layer (1 for the read-out)
    input_norm: float  # B = max_i ||x_i||
    n: int

    @property
    def rho_kernel(self) -> float:
        return float(np.prod(self.kernel_norms))

    @property
    def rho_dense(self) -> float:
        return float(np.prod(self.dense_norms))

    @property
    def predicted_ratio(self) -> float:
        """``prod_l sqrt(positions_l)``: exact for stride-1 circular convolutions."""
        return float(np.prod(np.sqrt(self.positions)))

    def bound(self, rho: float) -> float:
        """Golowich-Rakhlin-Shamir: ``B (sqrt(2 L ln 2) + 1) rho / sqrt(n)``."""
        L = len(self.kernel_norms)
        return (
            self.input_norm
            * (math.sqrt(2 * L * math.log(2)) + 1)
            * rho
            / math.sqrt(self.n)
        )

    @property
    def bound_kernel(self) -> float:
        return self.bound(self.rho_kernel)

    @property
    def bound_dense(self) -> float:
        return self.bound(self.rho_dense)


def capacity(
    model: nn.Sequential,
    input_shape: Sequence[int],
    X: torch.Tensor,
    efcn: nn.Sequential | None = None,
) -> Capacity:
    """Kernel norms of ``model``'s conv/linear layers and the dense norms of its eFCN's layers
    (``efcn``: the eFCN if already built, else ``to_fcn(model, input_shape)``)."""
    weighted = [m for m in model if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    if efcn is None:
        efcn = to_fcn(model, input_shape)
    dense = [m for m in efcn if isinstance(m, nn.Linear)]
    if len(dense) != len(weighted):
        raise ValueError(
            f"eFCN has {len(dense)} dense layers for {len(weighted)} conv/linear layers"
        )
    kn = np.array([float(m.weight.detach().double().norm()) for m in weighted])
    dn = np.array([float(m.weight.detach().double().norm()) for m in dense])
    pos = np.array(
        [
            m.out_features
            // (m_.out_channels if hasattr(m_, "out_channels") else m.out_features)
            for m, m_ in zip(dense, weighted)
        ],
        dtype=float,
    )
    B = float(X.flatten(1).double().norm(dim=1).max())
    return Capacity(kn, dn, pos, B, len(X))


@dataclass
class CapacityResult:
    cap: Capacity
    model: nn.Sequential
    exact_relerr: float
    train_acc: float
    test_acc: float
    history: object


def capacity_experiment(
    data,
    channels: int = 8,
    depth: int = 3,
    epochs: int = 8,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    padding_mode: str = "circular",
    seed: int = 0,
    progress: bool = True,
    embed=to_fcn,
) -> CapacityResult:
    """Train a circular CNN on ``data`` (a ``convbias.data.Split``) and count its capacity.

    ``embed(model, shape)`` builds the network compared with the CNN (the eFCN; tests pass others)."""
    from .config import device
    from .train import evaluate, fit

    shape = tuple(data.X_train.shape[1:])
    torch.manual_seed(seed)
    model = circular_cnn(
        shape, channels, depth, int(data.y_train.max()) + 1, padding_mode=padding_mode
    )
    dev = device()
    model.to(dev)
    hist = None
    if epochs > 0:
        hist = fit(
            model,
            data.X_train,
            data.y_train,
            loss="ce",
            lr=lr,
            momentum=0.9,
            weight_decay=weight_decay,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            log_every=10**9,
            progress=progress,
            desc="CNN for the capacity count",
        )
    model.eval()
    efcn = embed(model, shape)
    X_test, y_test = data.X_test.to(dev), data.y_test.to(dev)
    with torch.no_grad():
        ref = model(X_test)
        err = float((efcn(X_test) - ref).norm() / ref.norm())
    cap = capacity(model, shape, data.X_train, efcn if embed is to_fcn else None)
    del efcn
    train_acc = evaluate(model, data.X_train.to(dev), data.y_train.to(dev))["acc"]
    test_acc = evaluate(model, X_test, y_test)["acc"]
    return CapacityResult(cap, model, err, train_acc, test_acc, hist)


def capacity_checks(
    r: CapacityResult,
    ratio_tol: float = 1e-6,
    min_orders: float = 2.0,
    min_test_acc: float = 0.8,
) -> list[Check]:
    """The eFCN is the same function; rho from its dense matrices is rho from kernels times
    ``prod sqrt(positions)`` exactly; the bounds differ by orders of magnitude."""
    c = r.cap
    measured = c.rho_dense / c.rho_kernel
    return [
        at_most(
            "efcn_exact_relerr",
            r.exact_relerr,
            1e-5,
            "the eFCN computes the CNN's function",
        ),
        at_least(
            "cnn_test_acc",
            r.test_acc,
            min_test_acc,
            "the counted CNN is a trained classifier",
        ),
        at_most(
            "rho_ratio_vs_sqrt_positions",
            abs(measured / c.predicted_ratio - 1),
            ratio_tol,
            "rho(eFCN) / rho(kernels) = prod sqrt(positions)",
        ),
        at_least(
            "bound_orders_of_magnitude",
            math.log10(c.bound_dense / c.bound_kernel),
            min_orders,
            "log10 of dense bound / kernel bound",
        ),
    ]
