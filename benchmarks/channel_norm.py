"""Channel normalization: the vectorised module against a per-channel Python loop.

Prints one table: forward + backward time of ``ChannelNorm1d`` (all channels in a
few tensor operations) and of a loop over channels (one mean/variance per channel,
as in the reference implementation of Dai & Heckel), and their ratio, for a few
channel counts. Run: ``python benchmarks/channel_norm.py``.
"""

from __future__ import annotations

import time

import torch

from convbias.config import device, run_info
from convbias.models.conv1d import ChannelNorm1d


def looped_channel_norm(
    x: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Reference: normalize channel by channel in Python (what the vectorised module replaces)."""
    out = torch.zeros_like(x)
    for c in range(x.shape[1]):
        z = x[0, c]
        out[0, c] = (z - z.mean()) / torch.sqrt(z.var(correction=0) + eps) + bias[c]
    return out


def seconds_per_call(fn, x: torch.Tensor, repeats: int) -> float:
    for _ in range(3):
        fn(x).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main(channels=(1, 4, 32, 128), n: int = 1024, repeats: int = 50) -> None:
    dev = device()
    if dev.type == "cpu":
        torch.set_num_threads(
            1
        )  # small tensors: one thread gives stable, comparable timings
    print(run_info())
    print(
        f"{'channels':>8} {'vectorised (ms)':>16} {'loop (ms)':>10} {'loop / vectorised':>18}"
    )
    for C in channels:
        torch.manual_seed(0)
        x = torch.randn(1, C, n, device=dev, requires_grad=True)
        norm = ChannelNorm1d(C).to(dev)
        assert torch.allclose(norm(x), looped_channel_norm(x, norm.bias), atol=1e-5)
        fast = seconds_per_call(norm, x, repeats)
        slow = seconds_per_call(lambda z: looped_channel_norm(z, norm.bias), x, repeats)
        print(f"{C:>8} {fast * 1e3:>16.3f} {slow * 1e3:>10.3f} {slow / fast:>18.1f}")


if __name__ == "__main__":
    main()
