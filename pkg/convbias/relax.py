"""The relax-time protocol of d'Ascoli et al. (2019).

Train a CNN; at each relax time ``t`` (in epochs) embed its snapshot into FCN
space (:func:`convbias.efcn.to_fcn`) and keep training that eFCN with the same
optimizer settings for ``relax_train_epochs``; optionally do the same in LCN
space (:func:`convbias.efcn.to_lcn`). References: the CNN trained to the end,
and a standard FCN of the eFCN's architecture trained from scratch for the
same number of epochs as each eFCN.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .cache import resumable
from .config import cap_items, stands_for
from .config import device as default_device
from .data.real import Split
from .efcn import reinitialized_fcn, subspace_distance, to_fcn, to_lcn
from .live import progress as progress_bar
from .train import History, evaluate, fit, steps_per_epoch


def log_relax_times(epochs: int, n: int) -> list[int]:
    """``0`` plus ``n`` log-spaced epochs in ``[1, epochs]``, rounded and deduplicated (the paper's checkpoints)."""
    if epochs < 1 or n < 1:
        raise ValueError(f"need epochs >= 1 and n >= 1, got epochs={epochs}, n={n}")
    times = np.unique(np.logspace(0, np.log10(epochs), n).astype(int))
    return [0] + [int(t) for t in times]


@dataclass
class RelaxRun:
    """Outcome of one seed of the protocol (accuracies are test accuracies in [0, 1])."""

    relax_epochs: list[int]
    cnn_acc: float  # the CNN after all its epochs
    cnn_acc_long: (
        float  # the CNN trained relax_train_epochs more (same budget as the last eFCN)
    )
    cnn_acc_at: np.ndarray  # the CNN at each relax time
    efcn_acc: np.ndarray  # the eFCN relaxed at each time, after relax_train_epochs
    fcn_acc: float  # the scratch FCN, after relax_train_epochs
    lcn_acc: np.ndarray | None  # the eLCN relaxed at each time (if asked)
    off_support: np.ndarray  # final off-support fraction of each eFCN
    off_tying: np.ndarray  # final off-tying fraction of each eFCN
    histories: dict[str, History] = field(default_factory=dict)
    embed_error: np.ndarray | None = (
        None  # relative output error of each embedded snapshot vs its trained CNN
    )


def relax_protocol(
    make_cnn: Callable[[], nn.Sequential],
    data: Split,
    *,
    input_shape: Sequence[int],
    epochs: int,
    relax_epochs: Sequence[int],
    relax_train_epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    lcn: bool = False,
    log_every: int | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    cache: str | None = None,
    perturb: Callable[[nn.Module], None] | None = None,
) -> RelaxRun:
    """Run the protocol for one seed and return a :class:`RelaxRun`.

    ``relax_epochs`` must lie in ``[0, epochs]``. Every network is trained by
    :func:`convbias.train.fit` with SGD(``lr``, ``momentum``, ``weight_decay``)
    and mini-batches of ``batch_size``; the CNN's optimizer state carries over
    its whole run, each embedded network starts a fresh optimizer (its
    parameters live in another space). After its ``epochs`` the CNN is also
    trained ``relax_train_epochs`` more, the same budget as an eFCN relaxed at
    ``epochs`` (``cnn_acc_long``): an eFCN that "beats the CNN" should beat both.
    ``log_every`` (steps) sets how often the eFCN's distance from the CNN subspace is recorded (default: every epoch).
    ``cache`` names the run in the results cache (:mod:`convbias.cache`): a seed's
    run is stored once done, so a loop over seeds resumes after an interruption.
    ``perturb`` (for experiments on the protocol itself) is applied in place to every
    embedded network before it trains; a perturbed run is never cached. Each embedded
    snapshot's relative output error against its trained CNN, on the test inputs, is
    recorded in ``embed_error`` (after ``perturb``).
    """
    for value, name in (
        (epochs, "epochs"),
        (relax_train_epochs, "relax_train_epochs"),
        (batch_size, "batch_size"),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if batch_size > len(data.X_train):
        raise ValueError(
            f"batch_size={batch_size} exceeds the {len(data.X_train)} training examples"
        )
    if log_every is not None and (
        isinstance(log_every, bool)
        or not isinstance(log_every, (int, np.integer))
        or log_every < 1
    ):
        raise ValueError(
            f"log_every must be a positive integer or None, got {log_every!r}"
        )
    for value, name in (
        (lr, "lr"),
        (momentum, "momentum"),
        (weight_decay, "weight_decay"),
    ):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    times = sorted({int(t) for t in relax_epochs})
    if not times or times[0] < 0 or times[-1] > epochs:
        raise ValueError(
            f"relax_epochs must lie in [0, epochs={epochs}], got {list(relax_epochs)}"
        )
    dev = device or default_device()
    if perturb is not None:
        cache = None
    torch.manual_seed(seed)
    config = dict(
        cnn=make_cnn(),
        X=data.X_train,
        y=data.y_train,
        X_test=data.X_test,
        y_test=data.y_test,
        input_shape=list(input_shape),
        epochs=epochs,
        relax_epochs=times,
        relax_train_epochs=relax_train_epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        momentum=momentum,
        weight_decay=weight_decay,
        lcn=lcn,
        log_every=log_every,
        device=str(dev),
    )
    return resumable(
        cache and f"{cache}-seed{seed}",
        config,
        lambda: _relax_protocol(
            make_cnn,
            data,
            input_shape=input_shape,
            epochs=epochs,
            times=times,
            relax_train_epochs=relax_train_epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            momentum=momentum,
            weight_decay=weight_decay,
            lcn=lcn,
            log_every=log_every,
            dev=dev,
            progress=progress,
            perturb=perturb,
        ),
    )


def _relax_protocol(
    make_cnn: Callable[[], nn.Sequential],
    data: Split,
    *,
    input_shape: Sequence[int],
    epochs: int,
    times: list[int],
    relax_train_epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    momentum: float,
    weight_decay: float,
    lcn: bool,
    log_every: int | None,
    dev: torch.device,
    progress: bool,
    perturb: Callable[[nn.Module], None] | None = None,
) -> RelaxRun:
    every_time, times = (
        times,
        cap_items(times),
    )  # a smoke run relaxes at the first and last time only
    per_epoch = steps_per_epoch(len(data.X_train), batch_size)
    log_every = log_every or per_epoch
    train = dict(
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=batch_size,
        X_test=data.X_test,
        y_test=data.y_test,
        progress=False,
    )
    X, y = data.X_train.to(dev), data.y_train.to(dev)

    torch.manual_seed(seed)
    cnn = make_cnn().to(dev)
    opt = torch.optim.SGD(
        cnn.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    snapshots: dict[int, nn.Module] = {}
    cnn_acc_at, histories = {}, {}
    done = 0
    cnn_hist = History()
    for t in sorted(set(times) | {epochs}):
        if t > done:
            h = fit(
                cnn,
                X,
                y,
                optimizer=opt,
                epochs=t - done,
                seed=seed * 1000 + done,
                log_every=per_epoch * (t - done),
                **train,
            )
            cnn_hist.record(
                t, test_acc=h.last("test_acc"), train_acc=h.last("train_acc")
            )
        elif t == 0:
            cnn_hist.record(
                0,
                **{
                    k: v
                    for k, v in evaluate(
                        cnn, data.X_test.to(dev), data.y_test.to(dev), prefix="test_"
                    ).items()
                    if k == "test_acc"
                },
            )
        done = t
        cnn_acc_at[t] = float(cnn_hist.last("test_acc"))
        if t in times:
            snapshots[t] = copy.deepcopy(cnn).eval()
    h = fit(
        cnn,
        X,
        y,
        optimizer=opt,
        epochs=relax_train_epochs,
        seed=seed * 1000 + epochs,
        log_every=per_epoch * relax_train_epochs,
        **train,
    )
    cnn_acc_long = float(h.last("test_acc"))
    histories["cnn"] = cnn_hist

    efcn_acc, lcn_acc, off_support, off_tying, embed_error = [], [], [], [], []
    X_check = data.X_test[:256].to(dev)
    kinds = [("efcn", to_fcn)] + ([("lcn", to_lcn)] if lcn else [])
    bar = progress_bar(
        total=len(times) * len(kinds) + 1, desc=f"relax (seed {seed})", enabled=progress
    )
    with stands_for(
        len(every_time) / len(times)
    ):  # what a cost meter counts for the skipped times
        for t in times:
            for kind, embed in kinds:
                # an eFCN's output error is measured below: to_fcn need not verify it too
                net = embed(snapshots[t], input_shape, verify=kind != "efcn").to(dev)
                if kind == "efcn":
                    if perturb is not None:
                        perturb(net)
                    embed_error.append(
                        relative_output_error(net, snapshots[t].to(dev), X_check)
                    )
                h = fit(
                    net,
                    X,
                    y,
                    epochs=relax_train_epochs,
                    seed=seed * 1000 + 500 + t,
                    log_every=log_every,
                    metrics=subspace_distance if kind == "efcn" else None,
                    **train,
                )
                histories[f"{kind}@{t}"] = h
                if kind == "efcn":
                    efcn_acc.append(h.last("test_acc"))
                    off_support.append(h.last("off_support"))
                    off_tying.append(h.last("off_tying"))
                else:
                    lcn_acc.append(h.last("test_acc"))
                bar.update()
    fcn = reinitialized_fcn(  # new weights: only the layer shapes are kept, nothing to verify
        to_fcn(snapshots[times[0]], input_shape, verify=False), seed=seed + 10_000
    ).to(dev)
    h = fit(
        fcn,
        X,
        y,
        epochs=relax_train_epochs,
        seed=seed * 1000 + 999,
        log_every=log_every,
        **train,
    )
    histories["fcn"] = h
    bar.update()
    bar.close()
    return RelaxRun(
        times,
        cnn_acc_at[epochs],
        cnn_acc_long,
        np.array([cnn_acc_at[t] for t in times]),
        np.array(efcn_acc),
        float(h.last("test_acc")),
        np.array(lcn_acc) if lcn else None,
        np.array(off_support),
        np.array(off_tying),
        histories,
        np.array(embed_error),
    )


def relative_output_error(
    net: nn.Module, reference: nn.Module, x: torch.Tensor
) -> float:
    """``||net(x) - reference(x)|| / ||reference(x)||`` with both networks in eval mode (no gradients)."""
    modes = net.training, reference.training
    net.eval(), reference.eval()
    with torch.no_grad():
        ref = reference(x)
        err = float((net(x) - ref).norm() / ref.norm())
    net.train(modes[0]), reference.train(modes[1])
    return err


def late_gains(runs: Sequence[RelaxRun], late_from: int) -> np.ndarray:
    """Per seed: mean eFCN accuracy over the relax times ``>= late_from`` minus the scratch FCN's accuracy."""
    out = []
    for r in runs:
        late = np.asarray(r.relax_epochs) >= late_from
        if not late.any():
            raise ValueError(f"no relax time >= {late_from} in {r.relax_epochs}")
        out.append(float(np.mean(r.efcn_acc[late]) - r.fcn_acc))
    return np.array(out)


def relax_checks(
    runs: Sequence[RelaxRun],
    random_error: float,
    late_from: int,
    gain: float = 0.10,
    beat_from: int | None = None,
    beat_by: float = 0.05,
    exact: float = 1e-5,
    off_max: float = 0.1,
) -> list:
    """Chapter 5's claims as :class:`convbias.checks.Check` objects.

    ``random_error`` is the relative output error of the eFCN of an untrained CNN on random
    inputs. Per seed (never only on the mean over seeds): the embedded *trained* snapshots
    reproduce their CNN; the eFCN relaxed at ``late_from`` or later beats the scratch FCN by
    ``gain`` on average; from ``beat_from`` on (when given) it beats the scratch FCN by ``beat_by``
    at every relax time on every seed; its weights stay within ``off_max`` of the CNN subspace.
    """
    from .checks import at_least, at_most

    checks = [
        at_most(
            "exact_random",
            random_error,
            exact,
            "eFCN(x) = CNN(x) on random inputs (float32)",
            scale="ratio",
        ),
        at_most(
            "exact_trained",
            max(float(np.max(r.embed_error)) for r in runs),
            exact,
            "every embedded trained snapshot reproduces its CNN on the test inputs",
            scale="ratio",
        ),
        at_least(
            "late_gain_min",
            float(late_gains(runs, late_from).min()),
            gain,
            f"on every seed the eFCN relaxed at t >= {late_from} beats the scratch FCN by {gain:.0%}",
        ),
    ]
    if beat_from is not None:
        worst = min(
            float(
                np.min(r.efcn_acc[np.asarray(r.relax_epochs) >= beat_from]) - r.fcn_acc
            )
            for r in runs
        )
        checks.append(
            at_least(
                "beats_fcn_from",
                worst,
                beat_by,
                f"on every seed the eFCN beats the scratch FCN by {beat_by:.0%} at every relax "
                f"time >= {beat_from}",
            )
        )
    off_support = max(float(np.max(r.off_support)) for r in runs)
    off_tying = max(float(np.max(r.off_tying)) for r in runs)
    checks += [
        at_most(
            "off_support_max",
            off_support,
            off_max,
            f"the eFCN keeps over {1 - off_max:.0%} of its weight norm on the CNN's support",
            scale="ratio",
        ),
        at_most(
            "off_tying_max",
            off_tying,
            off_max,
            f"and within {off_max:.0%} of the CNN's weight tying",
            scale="ratio",
        ),
    ]
    return checks
