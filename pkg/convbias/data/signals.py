"""One-example fitting problems for 1-D conv nets: a step target and a fixed random input.

As in Dai & Heckel (2019): the network's input is drawn once from ``U[0, 1]`` and
kept fixed; the target is a step, ``1`` on the first half of the signal, ``0`` after.

Used by chapter 3.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def step_signal(
    n: int, jump: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """The step target of shape ``(1, 1, n)``: ``1`` on ``[0, jump)``, ``0`` on ``[jump, n)`` (``jump = n // 2``)."""
    if n < 2:
        raise ValueError(f"a step needs length n >= 2, got {n}")
    jump = n // 2 if jump is None else jump
    if not 0 < jump < n:
        raise ValueError(f"jump must lie strictly between 0 and n={n}, got {jump}")
    y = torch.zeros(1, 1, n, device=device)
    y[..., :jump] = 1.0
    return y


def random_input(
    channels: int, n: int, seed: int = 0, device: torch.device | str | None = None
) -> Tensor:
    """A fixed input of shape ``(1, channels, n)`` drawn from ``U[0, 1]`` with its own seeded generator."""
    if channels < 1 or n < 1:
        raise ValueError(
            f"channels and n must be positive, got channels={channels}, n={n}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(1, channels, n, generator=gen).to(device)
