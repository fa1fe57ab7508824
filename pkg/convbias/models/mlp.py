"""Fully connected ReLU networks for the low-rank chapter.

``MLP(d_in, widths, n_out)`` is the stack of blocks Linear -> [BatchNorm1d] ->
ReLU of Galanti et al. followed by a linear classifier ``head``. Options:

- ``batchnorm=True``: BatchNorm1d *without* running statistics (batch
  statistics in train and eval mode), so stacked copies train inside ``vmap``
  (:func:`convbias.train.fit_ensemble`).
- ``bias=False``: a bias-free, positively homogeneous network
  ``f(x) = W_L relu(W_{L-1} ... relu(W_1 x))`` as in Le & Jegelka.
- ``init_scale``: multiply every initial weight by this factor (small init).

Used by chapter 2.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

Tensor = torch.Tensor


class MLP(nn.Module):
    """ReLU MLP ``d_in -> widths[0] -> ... -> widths[-1] -> n_out``; inputs are flattened."""

    def __init__(
        self,
        d_in: int,
        widths: Sequence[int],
        n_out: int,
        *,
        batchnorm: bool = False,
        bias: bool = True,
        init_scale: float = 1.0,
    ):
        super().__init__()
        widths = list(widths)
        if d_in < 1 or n_out < 1 or any(w < 1 for w in widths):
            raise ValueError(
                f"d_in, widths and n_out must be positive, got {d_in}, {widths}, {n_out}"
            )
        if init_scale <= 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = d_in
        for w in widths:
            layers.append(nn.Linear(prev, w, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm1d(w, affine=bias, track_running_stats=False))
            layers.append(nn.ReLU())
            prev = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, n_out, bias=bias)
        if init_scale != 1.0:
            with torch.no_grad():
                for p in self.parameters():
                    if p.ndim >= 2:
                        p.mul_(init_scale)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features ``h(x)`` (input of the classifier)."""
        return self.body(x)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        h = self.body(x)
        return h if return_features else self.head(h)
