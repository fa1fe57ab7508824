"""The low-rank chapter's grid as one ensemble per batch size vs the same runs one by one.

Prints one line per batch size and a total: seconds for the ensemble
(:func:`convbias.sweep.run_sweep`), seconds for the same runs trained one after
another with :func:`convbias.train.fit` (torch.optim.SGD), and their ratio.
Both are measured in this one run, on the same device.

    python benchmarks/lowrank_sweep.py [--epochs 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from convbias.config import device, run_info
from convbias.data.mixtures import gaussian_mixture
from convbias.models.mlp import MLP
from convbias.sweep import run_sweep
from convbias.train import fit


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128])
    args = ap.parse_args()
    dev = torch.device(args.device) if args.device else device()
    data = gaussian_mixture(256, 256, d=32, n_classes=8, seed=0)
    X, y = data.X_train.to(dev), data.y_train.to(dev)
    make = lambda: MLP(32, [64, 64, 64], 8)
    lrs, wds, seeds = [0.1, 0.2, 0.3], [0.0, 1e-2, 2e-2, 3e-2], [0]
    print(run_info(), f"| device used: {dev}")
    print(
        f"grid: {len(lrs)} lr x {len(wds)} weight decays x {len(seeds)} seed per batch size, {args.epochs} epochs"
    )
    print(
        f"{'B':>5} {'runs':>5} {'ensemble s':>11} {'one by one s':>13} {'speed-up':>9}"
    )
    tot_e = tot_s = 0.0
    for B in args.batch_sizes:
        _sync(dev)
        t0 = time.perf_counter()
        run_sweep(
            make,
            X,
            y,
            batch_sizes=[B],
            lrs=lrs,
            weight_decays=wds,
            seeds=seeds,
            epochs=args.epochs,
            records=1,
            device=dev,
            progress=False,
        )
        _sync(dev)
        t_ens = time.perf_counter() - t0
        t0 = time.perf_counter()
        for lr, wd, s in itertools.product(lrs, wds, seeds):
            torch.manual_seed(s)
            fit(
                make().to(dev),
                X,
                y,
                lr=lr,
                weight_decay=wd,
                batch_size=B,
                epochs=args.epochs,
                seed=s,
                log_every=10**9,
                progress=False,
            )
        _sync(dev)
        t_seq = time.perf_counter() - t0
        tot_e, tot_s = tot_e + t_ens, tot_s + t_seq
        print(
            f"{B:>5} {len(lrs) * len(wds) * len(seeds):>5} {t_ens:>11.2f} {t_seq:>13.2f} {t_seq / t_ens:>8.2f}x"
        )
    print(f"{'all':>5} {'':>5} {tot_e:>11.2f} {tot_s:>13.2f} {tot_s / tot_e:>8.2f}x")


if __name__ == "__main__":
    main()
