"""Ensemble trainer vs a sequential loop: E small MLPs, same data, same steps.

Prints, per device and ensemble size E, the wall time of training the E runs
one after another with ``convbias.train.fit`` (torch.optim.SGD) and together
with ``convbias.train.fit_ensemble`` (vmap), and their ratio. Both are timed
in this one process, side by side, so the ratio is meaningful on a busy machine.

    python benchmarks/ensemble.py [--steps 100] [--sizes 1 8 64]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from convbias.train import fit, fit_ensemble


def make_mlp(d: int = 64, width: int = 128, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, classes),
    )


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_sequential(E: int, X, y, steps: int, batch: int) -> float:
    synchronize(X.device)
    start = time.perf_counter()
    for seed in range(E):
        torch.manual_seed(seed)
        model = make_mlp().to(X.device)
        fit(
            model,
            X,
            y,
            lr=0.05,
            weight_decay=1e-4,
            steps=steps,
            batch_size=batch,
            seed=seed,
            log_every=steps,
            progress=False,
        )
    synchronize(X.device)
    return time.perf_counter() - start


def time_ensemble(E: int, X, y, steps: int, batch: int) -> float:
    synchronize(X.device)
    start = time.perf_counter()
    fit_ensemble(
        make_mlp,
        X,
        y,
        seeds=list(range(E)),
        lr=0.05,
        weight_decay=1e-4,
        steps=steps,
        batch_size=batch,
        log_every=steps,
        progress=False,
    )
    synchronize(X.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    args = parser.parse_args()
    devices = [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() else []
    )
    g = torch.Generator().manual_seed(0)
    print(
        f"MLP 64-128-128-10, {args.steps} SGD steps of batch {args.batch}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(
        f"{'device':<8}{'E':>5}{'sequential s':>15}{'ensemble s':>13}{'speed-up':>10}"
    )
    for dev in devices:
        X = torch.randn(2048, 64, generator=g).to(dev)
        y = torch.randint(0, 10, (2048,), generator=g).to(dev)
        time_ensemble(2, X, y, 5, args.batch)  # warm-up (kernels, allocator)
        time_sequential(1, X, y, 5, args.batch)
        for E in args.sizes:
            seq = time_sequential(E, X, y, args.steps, args.batch)
            ens = time_ensemble(E, X, y, args.steps, args.batch)
            name = (
                dev.type if dev.type == "cpu" else torch.cuda.get_device_name(dev)[:8]
            )
            print(f"{name:<8}{E:>5}{seq:>15.2f}{ens:>13.2f}{seq / ens:>9.1f}x")


if __name__ == "__main__":
    main()
