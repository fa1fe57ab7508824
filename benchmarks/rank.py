"""Batched rank computation vs a Python loop of per-matrix SVDs.

``convbias.rank.ranks`` computes the ranks of a whole batch ``(B, m, n)`` with one
batched call (for float32 input: a symmetric eigensolver on the float64 Gram
matrices); the straightforward way loops over matrices with one numpy SVD each.
Both are timed here in one process and must agree (numerical ranks exactly,
stable ranks to 1e-4); the table prints the speed-up, with one torch thread and
with the default number.

    python benchmarks/rank.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from convbias.rank import ranks


def loop_ranks(batch: np.ndarray, rtol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward way: one numpy SVD per matrix."""
    nrank, srank = [], []
    for W in batch:
        s = np.linalg.svd(W, compute_uv=False)
        nrank.append(int((s > rtol * s[0]).sum()))
        srank.append(float((s**2).sum() / s[0] ** 2))
    return np.asarray(nrank), np.asarray(srank)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    g = torch.Generator().manual_seed(0)
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, float32 matrices; best of 3")
    print(
        f"{'batch x shape':<18}{'threads':>8}{'loop s':>10}{'batched s':>11}{'speed-up':>10}"
    )
    for B, m, n in [(64, 100, 100), (512, 32, 64), (4096, 10, 20), (16, 256, 256)]:
        low = torch.randn(B, m, 5, generator=g) @ torch.randn(B, 5, n, generator=g)
        W = low + 1e-2 * torch.randn(B, m, n, generator=g)
        W_np = W.numpy()
        ref_n, ref_s = loop_ranks(W_np)
        ours = ranks(W, batch=True)
        ours_n, ours_s = ours["numerical"].numpy(), ours["stable"].numpy()
        assert np.array_equal(ref_n, ours_n) and np.allclose(
            ref_s, ours_s, rtol=1e-4
        ), "results differ"
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            t_loop = best_of(lambda: loop_ranks(W_np))
            t_batch = best_of(lambda: ranks(W, batch=True))
            print(
                f"{f'{B} x {m}x{n}':<18}{threads:>8}{t_loop:>10.3f}{t_batch:>11.3f}{t_loop / t_batch:>9.1f}x"
            )
        torch.set_num_threads(default_threads)
    if torch.cuda.is_available():
        W = torch.randn(4096, 64, 64, device="cuda")
        ranks(W, batch=True)
        torch.cuda.synchronize()
        start = time.perf_counter()
        ranks(W, batch=True)
        torch.cuda.synchronize()
        print(f"cuda: 4096 x 64x64 batched in {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
