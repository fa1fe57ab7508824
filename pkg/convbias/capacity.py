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
it is the conv-aware count. The ratio of the two is an identity (``8**3 = 512`` for three
circular layers on 8x8 maps, trained or not), so it says nothing about generalization.

What can fail is whether a bound tracks the measured generalization gap:
:func:`labels_experiment` trains the same CNN on true and on random labels and divides each
count by the training margin (a ReLU network without biases is positively homogeneous, so
``rho / gamma`` does not change when the weights are rescaled); :func:`labels_checks` asks
the kernel count to grow with random labels as the gap does. Used by chapter 6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from .checks import Check, at_least, at_most
from .efcn import to_fcn

if TYPE_CHECKING:
    from .data.real import Split


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


def _trained_cnn(
    X: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    arch: dict,
    schedule: dict,
    seed: int,
    progress: bool,
    desc: str,
):
    """The chapter's circular CNN (``circular_cnn(**arch)``) seeded by ``seed``, trained by
    SGD with momentum 0.9 on cross-entropy (``schedule``: lr, weight decay, epochs, batch
    size, milestones; no training at 0 epochs), on the device, in eval mode; and its history."""
    from .config import device
    from .train import fit

    torch.manual_seed(seed)
    model = circular_cnn(tuple(X.shape[1:]), n_classes=n_classes, **arch).to(device())
    hist = None
    if schedule["epochs"] > 0:
        hist = fit(
            model,
            X,
            y,
            loss="ce",
            momentum=0.9,
            seed=seed,
            log_every=10**9,
            progress=progress,
            desc=desc,
            **schedule,
        )
    model.eval()
    return model, hist


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
    from .train import evaluate

    shape = tuple(data.X_train.shape[1:])
    dev = device()
    model, hist = _trained_cnn(
        data.X_train,
        data.y_train,
        int(data.y_train.max()) + 1,
        dict(channels=channels, depth=depth, padding_mode=padding_mode),
        dict(lr=lr, weight_decay=weight_decay, epochs=epochs, batch_size=batch_size),
        seed,
        progress,
        "CNN for the capacity count",
    )
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
    min_test_acc: float = 0.8,
) -> list[Check]:
    """The eFCN is the same function as the trained CNN it counts.

    That rho from its dense matrices is rho from the kernels times ``prod sqrt(positions)``
    is an identity for stride-1 circular convolutions (``Capacity.predicted_ratio``, a unit
    test), not a finding, so it is no check; :func:`labels_checks` tests the bounds."""
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
    ]


def margins(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Multiclass margins ``f_y(x) - max_{j != y} f_j(x)`` of ``model`` on ``(X, y)``."""
    with torch.no_grad():
        out = model(X).double()
    right = out.gather(1, y[:, None]).squeeze(1)
    others = out.scatter(1, y[:, None], -math.inf).max(dim=1).values
    return (right - others).cpu().numpy()


@dataclass
class LabelFit:
    """One CNN trained on true or on random labels: its capacity, margin and accuracies."""

    labels: str  # "true" or "random"
    cap: Capacity
    gamma: float  # the training margin at ``margin_quantile`` (its margin error)
    margin_quantile: float
    train_acc: float
    test_acc: float

    @property
    def gap(self) -> float:
        """Measured generalization gap: training minus test accuracy."""
        return self.train_acc - self.test_acc

    def _normalized(self, bound: float) -> float:
        return bound / self.gamma if self.gamma > 0 else math.inf

    @property
    def bound_kernel(self) -> float:
        """Margin-normalized Frobenius-product bound from the kernels (infinite without a margin)."""
        return self._normalized(self.cap.bound_kernel)

    @property
    def bound_dense(self) -> float:
        """The same bound from the eFCN's dense matrices."""
        return self._normalized(self.cap.bound_dense)

    @property
    def kernel_bound_over_gap(self) -> float:
        """How many times the measured gap the kernel bound is (infinite for no gap)."""
        return self.bound_kernel / self.gap if self.gap > 0 else math.inf


@dataclass
class LabelsResult:
    true: LabelFit
    random: LabelFit
    n_train: int
    seed: int

    @property
    def bound_ratio(self) -> float:
        """Kernel bound with random labels over the kernel bound with true labels."""
        return self.random.bound_kernel / self.true.bound_kernel

    @property
    def gap_ratio(self) -> float:
        """Measured gap with random labels over the gap with true labels (infinite for no gap)."""
        return self.random.gap / self.true.gap if self.true.gap > 0 else math.inf


def random_labels(n: int, n_classes: int, seed: int) -> torch.Tensor:
    """``n`` labels drawn uniformly from ``n_classes``, independent of the images."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_classes, (n,), generator=g)


def labels_experiment(
    data: Split,
    n_train: int = 256,
    channels: int = 8,
    depth: int = 3,
    epochs: int = 60,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 32,
    milestones: Sequence[float] | None = (2 / 3, 5 / 6),
    margin_quantile: float = 0.1,
    seed: int = 0,
    randomize: bool = True,
    trained: bool = True,
    progress: bool = True,
) -> LabelsResult:
    """Train the same circular CNN (same initialization) on ``n_train`` images with their true
    labels and with random labels (train and test labels redrawn uniformly; SGD with momentum,
    the rate divided by 5 past each of ``milestones``, fractions of the run), and measure each
    network's generalization gap and its margin-normalized norm bound, from kernels and eFCN.

    The margin ``gamma`` is the ``margin_quantile`` quantile of the training margins, so the
    bound reads: test error <= that share of margin errors + ``bound / gamma`` (up to constant
    factors >= 1 for the multiclass margin loss and the confidence term, left out; they only
    make both counts larger). ``randomize=False`` keeps the true labels in the second run and
    ``trained=False`` measures the networks at their initialization (mutations for tests).
    """
    from .config import device
    from .train import evaluate

    shape = tuple(data.X_train.shape[1:])
    n_classes = int(data.y_train.max()) + 1
    X, X_test = data.X_train[:n_train], data.X_test
    dev = device()
    fits = {}
    for labels in ("true", "random"):
        y, y_test = data.y_train[:n_train], data.y_test
        if labels == "random" and randomize:
            y = random_labels(len(y), n_classes, seed)
            y_test = random_labels(len(y_test), n_classes, seed + 1)
        model, _ = _trained_cnn(
            X,
            y,
            n_classes,
            dict(channels=channels, depth=depth),
            dict(
                lr=lr,
                weight_decay=weight_decay,
                epochs=epochs if trained else 0,
                batch_size=batch_size,
                milestones=milestones,
            ),
            seed,
            progress,
            f"CNN on {labels} labels",
        )
        Xd, yd = X.to(dev), y.to(dev)
        gamma = float(np.quantile(margins(model, Xd, yd), margin_quantile))
        fits[labels] = LabelFit(
            labels,
            capacity(model, shape, X),
            gamma,
            margin_quantile,
            evaluate(model, Xd, yd)["acc"],
            evaluate(model, X_test.to(dev), y_test.to(dev))["acc"],
        )
    return LabelsResult(fits["true"], fits["random"], len(X), seed)


def labels_checks(
    r: LabelsResult,
    min_memorized: float = 0.9,
    min_gap_increase: float = 0.5,
    min_bound_ratio: float = 1.5,
) -> list[Check]:
    """Random labels are fitted, so the measured gap grows; a bound that explains
    generalization must grow with it: the kernel bound with random labels is at least
    ``min_bound_ratio`` times the one with true labels."""
    return [
        at_least(
            "random_labels_fitted",
            r.random.train_acc,
            min_memorized,
            "the CNN fits random labels (training accuracy)",
        ),
        at_least(
            "random_label_gap_increase",
            r.random.gap - r.true.gap,
            min_gap_increase,
            "generalization gap with random labels minus with true labels",
        ),
        at_least(
            "kernel_bound_random_vs_true",
            r.bound_ratio,
            min_bound_ratio,
            "the margin-normalized kernel bound grows with random labels (ratio)",
            scale="ratio",
        ),
    ]
