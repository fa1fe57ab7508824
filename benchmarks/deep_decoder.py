"""Deep decoder fitting speed: eager float32 vs channels_last, torch.compile and bf16 autocast.

Times Adam iterations of fitting a deep decoder to a random image (the inner
loop of Chapter 4) in one process, each variant after a warm-up, and prints
iterations per second and the ratio to eager float32. A variant that fails
here (e.g. torch.compile without a working compiler) is reported, not fatal.

    python benchmarks/deep_decoder.py [--size 64] [--channels 64] [--iters 60]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from convbias.models.deep_decoder import DeepDecoder


def fit_iterations(
    dev: torch.device,
    args,
    channels_last: bool = False,
    compile_: bool = False,
    bf16: bool = False,
) -> float:
    """Iterations per second of Adam on ``||net() - target||^2`` (after a warm-up)."""
    torch.manual_seed(0)
    net = DeepDecoder(
        out_channels=3,
        channels=args.channels,
        depth=5,
        output_size=(args.size, args.size),
    ).to(dev)
    target = torch.rand(1, 3, args.size, args.size, device=dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        target = target.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.mse_loss(net().float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step = torch.compile(step) if compile_ else step
    for _ in range(5):  # warm-up (and compilation)
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return args.iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() else []
    )
    variants = {
        "eager fp32": {},
        "channels_last": {"channels_last": True},
        "torch.compile": {"compile_": True},
        "bf16 autocast": {"bf16": True},
    }
    print(
        f"deep decoder depth 5, k={args.channels}, {args.size}x{args.size}x3, Adam; torch {torch.__version__}"
    )
    print(f"{'device':<8}{'variant':<16}{'it/s':>9}{'vs eager':>10}")
    for dev in devices:
        base = None
        for name, kw in variants.items():
            try:
                rate = fit_iterations(dev, args, **kw)
            except Exception as exc:  # report and go on
                print(
                    f"{dev.type:<8}{name:<16}{'failed':>9}  ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"
                )
                continue
            base = base or rate
            print(f"{dev.type:<8}{name:<16}{rate:>9.1f}{rate / base:>9.2f}x")


if __name__ == "__main__":
    main()
