"""Conversion of a CNN into its eFCN: time and peak memory, vectorized scatter vs a loop over output positions.

Run ``python benchmarks/efcn.py``. Both methods convert the same conv layers of
the AlexNet-style CIFAR-10 network of d'Ascoli et al. (2019) with random
weights, in float32; each run is a fresh process, so that the peak resident
memory it reports belongs to that method alone, and the two methods alternate
for three rounds (the fastest run of each is kept: a shared machine's load
changes between runs). Prints a table and the speed-up.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
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


def _run(method: str, queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    torch.manual_seed(0)
    model = alexnet_style().eval()
    layers = conv_layers(model)
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "scatter (to_fcn)":
        net = to_fcn(model, INPUT_SHAPE)
        size = parameter_bytes(net)
    else:
        mats = [loop_conv_to_dense(m, s) for m, s in layers]
        size = sum(m.numel() * m.element_size() for m in mats)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    queue.put((method, seconds, cpu, _rss_mb() - base, size / 2**20))


def main(rounds: int = 3) -> None:
    ctx = mp.get_context("spawn")
    runs: dict[str, list] = {"scatter (to_fcn)": [], "loop over positions": []}
    for _ in range(
        rounds
    ):  # alternate the two methods, a fresh process each time; keep each one's fastest
        for method in runs:
            q = ctx.Queue()
            p = ctx.Process(target=_run, args=(method, q))
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
    (_, t_fast, c_fast, m_fast, _), (_, t_loop, c_loop, m_loop, _) = rows
    print(
        f"speed-up {t_loop / t_fast:.1f}x wall, {c_loop / c_fast:.1f}x CPU; "
        f"peak memory ratio loop/scatter {m_loop / m_fast:.2f}"
    )
    print(
        "note: the scatter row converts the whole network (dense layers and biases included); "
        "the loop row only the conv matrices."
    )


if __name__ == "__main__":
    main()
