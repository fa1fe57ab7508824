"""convbias: companion package of the book *Implicit bias in convolutional networks*.

Modules (imported on demand, so ``import convbias`` stays fast):
``config`` (profiles, device, seeds), ``rank`` (stable / effective / numerical
rank), ``data`` (synthetic generators, real-data loaders), ``models``,
``train`` (training loops, vmap ensembles), ``efcn`` (CNN -> FCN embedding),
``plotting`` (house style), ``report`` (glue, paper-vs-build tables),
``cache`` (results cache).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["cache", "checks", "config", "data", "efcn", "models", "plotting", "rank", "report", "train"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'convbias' has no attribute {name!r}")
