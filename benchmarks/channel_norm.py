"""Channel normalization: the vectorised module against a per-channel Python loop.

Prints one table: forward + backward time of ``ChannelNorm1d`` (all channels in a
few tensor operations) and of a loop over channels (one mean/variance per channel,
as in the reference implementation of Dai & Heckel), and their ratio, for a few
channel counts. A second table times one SGD step of chapter 3's linear nets (an
ensemble of ``DeepConv1d`` with channel normalization, full-profile sizes) with the
circular padding by one ``torch.cat`` (``CircularConv1d``) against PyTorch's own
circular padding (``nn.Conv1d``), after checking that both give the same loss and
gradients. Run: ``python benchmarks/channel_norm.py``.
"""

from __future__ import annotations

import time

import torch

from convbias.config import device, run_info
from convbias.models.conv1d import ChannelNorm1d, CircularConv1d, DeepConv1d


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


def _sgd_step_seconds(net, x, y, repeats: int) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def padding(depths=(10, 30), members: int = 8, n: int = 128, repeats: int = 30) -> None:
    """One SGD step of chapter 3's ensembles: padding by one ``torch.cat`` vs PyTorch's circular padding."""
    dev = device()
    print(
        f"{'depth':>5} {'members':>7} {'torch.cat (ms)':>15} {'F.pad circular (ms)':>20} "
        f"{'ratio':>6}  max |loss, grad difference|"
    )
    for depth in depths:
        torch.manual_seed(0)
        fast = DeepConv1d(depth, kernel_size=15, members=members).to(dev)
        plain = DeepConv1d(depth, kernel_size=15, members=members).to(dev)
        plain.load_state_dict(fast.state_dict())
        for m in plain.conv_layers():
            assert type(m) is CircularConv1d
            m.__class__ = torch.nn.Conv1d  # PyTorch's own circular padding
        x = torch.randn(1, 1, n, device=dev)
        y = (torch.arange(n, device=dev) < n // 2).float().expand(1, members, n)
        diffs = []
        for net in (fast, plain):
            net.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
        with torch.no_grad():
            diffs.append(float((fast(x) - plain(x)).abs().max()))
        diffs += [
            float((a.grad - b.grad).abs().max())
            for a, b in zip(fast.parameters(), plain.parameters())
        ]
        assert max(diffs) < 1e-5, diffs
        t_fast = _sgd_step_seconds(fast, x, y, repeats)
        t_plain = _sgd_step_seconds(plain, x, y, repeats)
        print(
            f"{depth:>5} {members:>7} {t_fast * 1e3:>15.2f} {t_plain * 1e3:>20.2f} "
            f"{t_plain / t_fast:>6.2f}  {max(diffs):.1e}"
        )


if __name__ == "__main__":
    main()
    padding()
