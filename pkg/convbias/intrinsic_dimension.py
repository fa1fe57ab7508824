"""Gradient descent learns the intrinsic dimension of data: chapter 1's experiments and their checks.

Zhang, Gao, Zou & Cao (2025): background noise inflates the stable rank of the
*data* (the matrix of all patches), but the filters ``W`` of a CNN trained by
gradient descent keep a stable rank near the intrinsic dimension ``2K`` of the
clean images, and their dominant directions are the clean signal's. The
experiments are :func:`run_sigma_sweep` (synthetic patches, the two-layer
:class:`~convbias.models.patch_cnn.PatchCNN`) and :func:`run_noise_sweep` (MNIST, the
one-convolution CNN ``convbias.models.one_conv.OneConvCNN``); :func:`synthetic_checks`
and :func:`mnist_checks` turn their results into :class:`convbias.checks.Check`
objects, so that a test can rerun the experiments with the phenomenon broken (too few
steps, a large initialisation, few samples, no signal, no training) and see the checks
fail.

The claims are checked in the regime where the signal dominates what gradient
descent accumulates, ``sigma_p <= regime`` (default 1.5): past it the filters'
stable rank rises and they memorise noise, which the chapter shows rather than checks.
Used by chapter 1.
"""

from __future__ import annotations

import functools
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .cache import resumable
from .checks import Check, at_least, at_most
from .data.background import patch_stable_rank
from .data.patches import PatchDataModel
from .data.real import Split
from .executors import submit
from .live import progress as progress_bar
from .models.one_conv import OneConvCNN, first_layer_filters
from .models.patch_cnn import PatchCNN
from .rank import stable_rank
from .train import History, fit_ensemble, fit_gd

Tensor = torch.Tensor

#: the noise levels up to which the synthetic claim is checked
REGIME = 1.5


@dataclass
class SigmaSweep:
    """Result of :func:`run_sigma_sweep`; arrays are ``(n_seeds, n_sigmas)`` unless noted."""

    sigmas: np.ndarray
    seeds: np.ndarray
    intrinsic_dim: int
    data_srank: np.ndarray
    filter_srank: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    history: History
    model: PatchCNN
    signal_bases: (
        Tensor  # (n_seeds, d, 2K): orthonormal basis U of each seed's signal span
    )

    def along_training(self, key: str) -> np.ndarray:
        """A recorded metric along training: ``(n_records, n_seeds, n_sigmas)``."""
        values = self.history[key]
        return values.reshape(len(values), len(self.seeds), len(self.sigmas))

    def filters(self) -> Tensor:
        """Trained filter matrices ``(n_seeds, n_sigmas, 2m, d)``."""
        W = self.model.filters().detach().cpu()
        return W.reshape(len(self.seeds), len(self.sigmas), *W.shape[1:])

    def signal_energy(self) -> np.ndarray:
        """Fraction ``||W U||_F^2 / ||W||_F^2`` of the filters' energy inside the signal span."""
        W = self.filters().double()
        U = self.signal_bases.double()[:, None]
        inside = (W @ U).pow(2).sum((-1, -2))
        return (inside / W.pow(2).sum((-1, -2))).numpy()


def run_sigma_sweep(
    data: PatchDataModel,
    sigmas: Sequence[float],
    seeds: Sequence[int],
    *,
    n_train: int = 100,
    n_test: int = 1000,
    m: int = 20,
    kappa: float = 0.5,
    init_std: float = 0.01,
    lr: float = 1.0,
    steps: int = 300,
    log_every: int = 10,
    device: torch.device | str = "cpu",
    progress: bool = True,
    cache: str | None = None,
) -> SigmaSweep:
    """Train one patch CNN per (seed, sigma_p) pair, all in one batch, and measure ranks.

    For base seed ``s`` the signal directions use ``direction_seed = s``, the
    training set ``seed = s`` and the test set ``seed = s + 10_000``; the
    network is initialised from seed ``s``. Within a seed only ``sigma_p``
    changes (same labels, signal positions and noise draws, rescaled), so the
    sweep isolates the effect of the noise level. All pairs train as one batch, so
    ``cache`` (a name in the results cache, :mod:`convbias.cache`) stores and
    restores the trained batch as a whole.
    """
    sigmas, seeds = [float(s) for s in sigmas], [int(s) for s in seeds]
    if not sigmas or not seeds:
        raise ValueError("give at least one sigma_p and one seed")
    Xs, ys, Xt, yt, dranks, bases = [], [], [], [], [], []
    for s in seeds:
        bases.append(replace(data, direction_seed=s).signal_basis())
        for sig in sigmas:
            model_s = replace(data, sigma_p=sig, direction_seed=s)
            train, test = (
                model_s.sample(n_train, seed=s),
                model_s.sample(n_test, seed=s + 10_000),
            )
            Xs.append(train.X), ys.append(train.y), Xt.append(test.X), yt.append(test.y)
            dranks.append(train.stable_rank())
    X, y, X_test, y_test = (
        torch.stack(Xs),
        torch.stack(ys),
        torch.stack(Xt),
        torch.stack(yt),
    )

    def train() -> tuple[PatchCNN, History]:
        net = PatchCNN(
            data.d,
            m,
            seeds=[s for s in seeds for _ in sigmas],
            kappa=kappa,
            init_std=init_std,
        ).to(device)
        hist = fit_gd(
            net,
            X,
            y,
            lr=lr,
            steps=steps,
            log_every=log_every,
            X_test=X_test,
            y_test=y_test,
            progress=progress,
            desc=f"GD on {len(seeds) * len(sigmas)} CNNs",
        )
        return net, hist

    config = dict(
        seeds=seeds,
        sigmas=sigmas,
        m=m,
        kappa=kappa,
        init_std=init_std,
        lr=lr,
        steps=steps,
        log_every=log_every,
        X=X,
        y=y,
        X_test=X_test,
        y_test=y_test,
        device=str(torch.device(device)),
    )
    net, hist = resumable(cache, config, train)
    shape = (len(seeds), len(sigmas))
    last = lambda key: hist.last(key).reshape(shape)
    return SigmaSweep(
        sigmas=np.asarray(sigmas),
        seeds=np.asarray(seeds),
        intrinsic_dim=data.intrinsic_dim,
        data_srank=np.asarray(dranks).reshape(shape),
        filter_srank=last("filter_srank"),
        train_acc=last("train_acc"),
        test_acc=last("test_acc"),
        history=hist,
        model=net,
        signal_bases=torch.stack(bases),
    )


@dataclass
class NoiseSweep:
    """Result of :func:`run_noise_sweep`: ``data_srank`` is ``(n_sigmas,)``, the rest ``(n_seeds, n_sigmas)``."""

    sigmas: np.ndarray
    seeds: np.ndarray
    data_srank: np.ndarray
    filter_srank: np.ndarray
    test_acc: np.ndarray
    filters: list[
        Tensor
    ]  # one (n_seeds, width, in_channels k^2) tensor per noise level


def run_noise_sweep(
    split: Split,
    sigmas: Sequence[float],
    seeds: Sequence[int],
    add_noise: Callable[[Tensor, float, int], Tensor],
    *,
    model_kw: dict | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
    epochs: int = 4,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    progress: bool = True,
    cache: str | None = None,
    executor: Executor | None = None,
) -> NoiseSweep:
    """For each noise level: add noise to train and test images, train one CNN per seed, measure ranks.

    ``add_noise(X, sigma, seed)`` returns noisy images (e.g.
    ``convbias.data.background.add_background_noise``); train images get
    noise seed 0, test images seed 1. The seeds are trained together with
    :func:`convbias.train.fit_ensemble` (cross-entropy, SGD with momentum).
    The data stable rank is that of the patch matrix of the noisy training
    images with the first layer's kernel size. ``cache`` names the sweep in the
    results cache (:mod:`convbias.cache`): each noise level is stored once trained,
    so a rerun or an interrupted run restores the finished levels. ``executor`` (any
    ``concurrent.futures.Executor``; default: here, in order) trains the noise levels as
    separate tasks (``convbias.executors``).
    """
    sigmas, seeds = [float(s) for s in sigmas], [int(s) for s in seeds]
    if not sigmas or not seeds:
        raise ValueError("give at least one noise level and one seed")
    model_kw = dict(model_kw or {})
    kernel = model_kw.get("kernel", 5)
    model_kw.setdefault("in_channels", split.X_train.shape[1])
    model_kw.setdefault("image_size", add_noise(split.X_train[:1], 0.0, 0).shape[-1])
    model_kw.setdefault("n_classes", int(split.y_train.max()) + 1)
    data_srank, filter_srank, test_acc, filters, futures = [], [], [], [], []
    for sigma in progress_bar(sigmas, desc="noise levels", enabled=progress):
        X_train, X_test = (
            add_noise(split.X_train, sigma, 0),
            add_noise(split.X_test, sigma, 1),
        )
        data_srank.append(patch_stable_rank(X_train, kernel))
        train = functools.partial(
            _train_level,
            functools.partial(OneConvCNN, **model_kw),
            X_train,
            split.y_train,
            X_test,
            split.y_test,
            seeds=seeds,
            lr=lr,
            momentum=momentum,
            epochs=epochs,
            batch_size=batch_size,
            device=str(torch.device(device)),
            progress=progress and executor is None,
            desc=f"sigma={sigma:g}",
        )
        config = dict(
            sigma=sigma,
            seeds=seeds,
            model_kw=model_kw,
            lr=lr,
            momentum=momentum,
            epochs=epochs,
            batch_size=batch_size,
            X_train=X_train,
            y_train=split.y_train,
            X_test=X_test,
            y_test=split.y_test,
            device=str(torch.device(device)),
        )
        futures.append(
            submit(executor, cache and f"{cache}-sigma{sigma:g}", config, train)
        )
    for future in futures:
        W, acc = future.result()
        filters.append(W)
        filter_srank.append(stable_rank(W, batch=True).numpy())
        test_acc.append(acc)
    return NoiseSweep(
        sigmas=np.asarray(sigmas),
        seeds=np.asarray(seeds),
        data_srank=np.asarray(data_srank),
        filter_srank=np.stack(filter_srank, 1),
        test_acc=np.stack(test_acc, 1),
        filters=filters,
    )


def _train_level(
    make_model: Callable[[], nn.Module],
    X_train: Tensor,
    y_train: Tensor,
    X_test: Tensor,
    y_test: Tensor,
    *,
    device: str,
    **fit_kw,
) -> tuple[Tensor, np.ndarray]:
    """One noise level's ensemble: first-layer filters and test accuracies.

    At module level, so executors can pickle it.
    """
    result = fit_ensemble(
        make_model,
        X_train.to(device),
        y_train.to(device),
        loss="ce",
        log_every=10**9,
        X_test=X_test.to(device),
        y_test=y_test.to(device),
        **fit_kw,
    )
    return first_layer_filters(result.params).cpu(), result.history.last("test_acc")


def signal_subspace_overlap(W: Tensor, U: Tensor, k: int | None = None) -> np.ndarray:
    """``||U^T V_k||_F^2 / k``: how much of the top-``k`` right singular subspace of ``W`` lies in span ``U``.

    ``W``: filters ``(..., 2m, d)``; ``U``: orthonormal basis ``(..., d, 2K)`` (broadcast
    against ``W``'s leading dimensions); ``k`` defaults to ``2K``. 1 when the ``k``
    strongest filter directions are signal directions, about ``2K / d`` for random filters.
    """
    k = U.shape[-1] if k is None else int(k)
    if not 1 <= k <= min(W.shape[-2:]):
        raise ValueError(f"k must lie in [1, {min(W.shape[-2:])}], got {k}")
    _, _, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    V = Vh[..., :k, :].transpose(-1, -2)  # (..., d, k)
    return ((U.double().transpose(-1, -2) @ V).pow(2).sum((-1, -2)) / k).numpy()


def synthetic_checks(sweep, regime: float = REGIME) -> list[Check]:
    """The synthetic claim over ``sigma_p <= regime``, every seed (a :class:`SigmaSweep`).

    - ``data_srank_growth``: the data's stable rank grows more than 5x from
      ``sigma_p = 0`` (lowest seed);
    - ``filter_srank_growth``: the filters' grows less than 1.6x (highest seed);
    - ``filter_srank_max``: the filters' stable rank never exceeds ``2K``;
    - ``filter_signal_subspace``: at the largest checked ``sigma_p`` the top-``2K``
      filter directions lie at least half in the signal span (lowest seed);
    - ``test_accuracy``: the lowest test accuracy is at least 0.85.
    """
    inside = sweep.sigmas <= regime + 1e-12
    if not inside[0] or sweep.sigmas[0] != 0 or inside.sum() < 2:
        raise ValueError(
            f"the sweep must start at sigma_p = 0 and hold another level <= {regime}; "
            f"got {sweep.sigmas.tolist()}"
        )
    data, filt = sweep.data_srank[:, inside], sweep.filter_srank[:, inside]
    top = int(np.flatnonzero(inside)[-1])
    overlap = signal_subspace_overlap(sweep.filters()[:, top], sweep.signal_bases)
    two_k = sweep.intrinsic_dim
    upto = f"sigma_p 0 to {sweep.sigmas[top]:g}"
    return [
        at_least(
            "data_srank_growth",
            (data.max(1) / data[:, 0]).min(),
            5.0,
            f"the data's stable rank grows more than 5x ({upto}, every seed)",
            scale="ratio",
        ),
        at_most(
            "filter_srank_growth",
            (filt.max(1) / filt[:, 0]).max(),
            1.6,
            f"the filters' stable rank grows less than 1.6x ({upto}, every seed)",
            scale="ratio",
        ),
        at_most(
            "filter_srank_max",
            filt.max(),
            two_k,
            f"the filters' stable rank stays at most the intrinsic dimension 2K = {two_k}",
            scale="ratio",
        ),
        at_least(
            "filter_signal_subspace",
            overlap.min(),
            0.5,
            f"at sigma_p = {sweep.sigmas[top]:g} the filters' top-{two_k} directions lie at least half "
            "in the clean signal's span",
            scale="ratio",
        ),
        at_least(
            "test_accuracy",
            sweep.test_acc[:, inside].min(),
            0.85,
            f"test accuracy stays high ({upto})",
            scale="ratio",
        ),
    ]


def mnist_checks(sweep) -> list[Check]:
    """The MNIST claim (a :class:`NoiseSweep` whose first level is the clean data).

    - ``mnist_data_srank_growth``: the patch matrix's stable rank grows more than 3x;
    - ``mnist_filter_vs_clean_data``: at every noise level the filters' stable rank is at
      most 1.6 times the *clean* patches' (trained: 1.0 to 1.4 on base seeds 0 to 4; random
      filters of this shape, as initialised: about 2.1 to 2.5 times). It
      replaces a bound on the filters' growth, which no broken experiment failed
      (untrained filters do not grow either);
    - ``mnist_test_accuracy``: the lowest test accuracy is at least 0.65 (chance: 0.1).
    """
    if sweep.sigmas[0] != 0:
        raise ValueError(
            f"the sweep must start at the clean data (sigma = 0); got {sweep.sigmas.tolist()}"
        )
    filt = sweep.filter_srank
    return [
        at_least(
            "mnist_data_srank_growth",
            sweep.data_srank.max() / sweep.data_srank[0],
            3.0,
            "background noise inflates the patch matrix's stable rank more than 3x",
            scale="ratio",
        ),
        at_most(
            "mnist_filter_vs_clean_data",
            filt.max() / sweep.data_srank[0],
            1.6,
            "the filters' stable rank stays near that of the clean patches, at every noise level",
            scale="ratio",
        ),
        at_least(
            "mnist_test_accuracy",
            sweep.test_acc.min(),
            0.65,
            "test accuracy stays far above chance (0.1)",
            scale="ratio",
        ),
    ]
