"""Conversion of a CNN into its eFCN: time and peak memory, ``to_fcn`` vs a loop over output positions.

Run ``python benchmarks/efcn.py [--against PKG_DIR]``. Both methods convert the
same conv layers of the AlexNet-style CIFAR-10 network of d'Ascoli et al. (2019)
with random weights, in float32: ``to_fcn`` the whole network with every safety
check (input shape, size estimate, verification on random inputs), the loop only
the conv matrices. Each run is a fresh process, so that the peak resident memory
it reports belongs to that method alone, and the methods alternate for three
rounds (the fastest run of each is kept: a shared machine's load changes between
runs). ``--against`` adds the ``to_fcn`` of another version of the package (the
``pkg`` folder of an older checkout), measured in the same rounds. Prints a table
and the speed-ups over the loop.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time

import torch
from torch import nn

from convbias.efcn import parameter_bytes, to_fcn
from convbias.models.canvas_cnn import alexnet_style

INPUT_SHAPE = (3, 32, 32)


def loop_conv_to_dense(conv: nn.Conv2d, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """The straightforward method: loop over output positions and kernel taps, vectorized over channels.

    Zero padding and groups=1 only (what the benchmark's network needs).
    """
    C, H, W = in_shape
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    P = Ho * Wo
    w = conv.weight.detach()
    dense = torch.zeros(conv.out_channels * P, C * H * W)
    rows_o = torch.arange(conv.out_channels) * P
    cols_c = torch.arange(C) * H * W
    for i in range(Ho):
        for j in range(Wo):
            rows = rows_o + i * Wo + j
            for a in range(kh):
                y = i * sh - ph + a
                if not 0 <= y < H:
                    continue
                for b in range(kw):
                    x = j * sw - pw + b
                    if 0 <= x < W:
                        dense[rows[:, None], (cols_c + y * W + x)[None, :]] = w[
                            :, :, a, b
                        ]
    return dense


def conv_layers(model: nn.Sequential) -> list[tuple[nn.Conv2d, tuple[int, ...]]]:
    """Every conv of ``model`` with the shape of its input."""
    out, x = [], torch.zeros(1, *INPUT_SHAPE)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                out.append((m, tuple(x.shape[1:])))
            x = m(x)
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


LOOP = "loop over positions"
TO_FCN = "to_fcn"


def _run(method: str, queue, against: str | None = None) -> None:
    torch.set_num_threads(torch.get_num_threads())
    torch.manual_seed(0)
    model = alexnet_style().eval()
    layers = conv_layers(model)
    embed = to_fcn
    if (
        against is not None
    ):  # the other version's package, imported fresh in this process
        for name in [m for m in sys.modules if m.split(".")[0] == "convbias"]:
            del sys.modules[name]
        sys.path.insert(0, against)
        from convbias.efcn import to_fcn as embed
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    if method != LOOP:
        net = embed(model, INPUT_SHAPE)
        size = parameter_bytes(net)
    else:
        mats = [loop_conv_to_dense(m, s) for m, s in layers]
        size = sum(m.numel() * m.element_size() for m in mats)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    queue.put((method, seconds, cpu, _rss_mb() - base, size / 2**20))


def main(rounds: int = 3, against: str | None = None) -> None:
    ctx = mp.get_context("spawn")
    runs: dict[str, list] = {TO_FCN: [], LOOP: []}
    if against is not None:
        runs[f"to_fcn of {against}"] = []
    for _ in range(
        rounds
    ):  # alternate the methods, a fresh process each time; keep each one's fastest
        for method in runs:
            q = ctx.Queue()
            other = against if method.startswith("to_fcn of") else None
            p = ctx.Process(target=_run, args=(method, q, other))
            p.start()
            runs[method].append(q.get())
            p.join()
    rows = [min(r, key=lambda row: row[1]) for r in runs.values()]
    print(
        f"AlexNet-style on {INPUT_SHAPE}, float32, {torch.get_num_threads()} threads, "
        f"fastest of {rounds} alternating runs each"
    )
    print(
        f"{'method':<22}{'wall (s)':>10}{'CPU (s)':>10}{'peak extra RSS (MB)':>22}{'result (MB)':>14}"
        f"{'peak / result':>15}"
    )
    for method, sec, cpu, peak, size in rows:
        print(
            f"{method:<22}{sec:>10.3f}{cpu:>10.3f}{peak:>22.0f}{size:>14.0f}{peak / size:>15.2f}"
        )
    loop = rows[1]
    for method, sec, cpu, peak, _ in rows[:1] + rows[2:]:
        print(
            f"{method}: {loop[1] / sec:.2f}x the loop's wall time, {loop[2] / cpu:.2f}x its CPU time; "
            f"peak memory ratio loop/{method} {loop[3] / peak:.2f}"
        )
    print(
        "note: to_fcn converts the whole network (dense layers and biases included) and verifies it; "
        "the loop row builds only the conv matrices."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--against", help="the pkg folder of another version of convbias, measured too"
    )
    main(against=parser.parse_args().against)
