"""A small CNN whose first layer is a convolution, for the rank of learned filters on real images.

``conv(k x k, C filters) -> ReLU -> average pool -> linear``, and
:func:`run_noise_sweep`, the chapter's real-data experiment. The first-layer
filters, reshaped to a ``C x (in_channels k^2)`` matrix, are compared with the
patch matrix of the data (``convbias.data.background``). ``first_init_scale``
shrinks their default initialisation, the small-initialisation regime of the
theory, so that what training adds is not hidden under the random start.
"""
from __future__ import annotations

import functools
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.background import patch_stable_rank
from ..data.real import Split
from ..rank import as_matrix, stable_rank
from ..executors import submit
from ..train import fit_ensemble

Tensor = torch.Tensor


class SmallCNN(nn.Module):
    """``Conv2d(in_channels, width, kernel) -> ReLU -> AvgPool(pool) -> Linear(n_classes)``."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 16, kernel: int = 5,
                 pool: int = 4, image_size: int = 28, first_init_scale: float = 0.1):
        super().__init__()
        side = image_size - kernel + 1
        if side < pool or pool < 1:
            raise ValueError(f"a {kernel}x{kernel} conv on {image_size}x{image_size} images leaves {side} pixels: "
                             f"choose pool in [1, {max(side, 1)}]")
        if first_init_scale <= 0:
            raise ValueError(f"first_init_scale must be positive, got {first_init_scale}")
        self.conv = nn.Conv2d(in_channels, width, kernel)
        with torch.no_grad():
            self.conv.weight.mul_(first_init_scale)
            self.conv.bias.mul_(first_init_scale)
        self.pool = nn.AvgPool2d(pool)
        self.head = nn.Linear(width * (side // pool) ** 2, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))

    def first_layer_filters(self) -> Tensor:
        """The first-layer filters as a matrix ``(width, in_channels * kernel^2)``."""
        return as_matrix(self.conv.weight.detach())


def first_layer_filters(params: dict[str, Tensor]) -> Tensor:
    """Stacked first-layer filter matrices ``(E, width, in_channels * kernel^2)`` of an ensemble's params."""
    W = params["conv.weight"].detach()
    return W.reshape(W.shape[0], W.shape[1], -1)


@dataclass
class NoiseSweep:
    """Result of :func:`run_noise_sweep`: ``data_srank`` is ``(n_sigmas,)``, the rest ``(n_seeds, n_sigmas)``."""

    sigmas: np.ndarray
    seeds: np.ndarray
    data_srank: np.ndarray
    filter_srank: np.ndarray
    test_acc: np.ndarray
    filters: list[Tensor]  # one (n_seeds, width, in_channels k^2) tensor per noise level


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
    for sigma in tqdm(sigmas, desc="noise levels", disable=not progress, leave=False):
        X_train, X_test = add_noise(split.X_train, sigma, 0), add_noise(split.X_test, sigma, 1)
        data_srank.append(patch_stable_rank(X_train, kernel))
        train = functools.partial(_train_level, functools.partial(SmallCNN, **model_kw), X_train, split.y_train,
                                  X_test, split.y_test, seeds=seeds, lr=lr, momentum=momentum, epochs=epochs,
                                  batch_size=batch_size, device=str(torch.device(device)),
                                  progress=progress and executor is None, desc=f"sigma={sigma:g}")
        config = dict(sigma=sigma, seeds=seeds, model_kw=model_kw, lr=lr, momentum=momentum, epochs=epochs,
                      batch_size=batch_size, X_train=X_train, y_train=split.y_train, X_test=X_test,
                      y_test=split.y_test, device=str(torch.device(device)))
        futures.append(submit(executor, cache and f"{cache}-sigma{sigma:g}", config, train))
    for future in futures:
        W, acc = future.result()
        filters.append(W)
        filter_srank.append(stable_rank(W).numpy())
        test_acc.append(acc)
    return NoiseSweep(sigmas=np.asarray(sigmas), seeds=np.asarray(seeds), data_srank=np.asarray(data_srank),
                      filter_srank=np.stack(filter_srank, 1), test_acc=np.stack(test_acc, 1), filters=filters)


def _train_level(make_model: Callable[[], nn.Module], X_train: Tensor, y_train: Tensor, X_test: Tensor,
                 y_test: Tensor, *, device: str, **fit_kw) -> tuple[Tensor, np.ndarray]:
    """One noise level's ensemble: first-layer filters and test accuracies (module level, so executors can pickle it)."""
    result = fit_ensemble(make_model, X_train.to(device), y_train.to(device), loss="ce", log_every=10**9,
                          X_test=X_test.to(device), y_test=y_test.to(device), **fit_kw)
    return first_layer_filters(result.params).cpu(), result.history.last("test_acc")
