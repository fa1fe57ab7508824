"""convbias: companion package of the book *Implicit bias in convolutional networks*.

Modules (imported on demand, so ``import convbias`` stays fast; ``convbias.sweep``
works as an attribute), by layer, lowest first (the rules: ``tests/test_layers.py``):

- foundations: ``config`` (profiles, device, seeds, folders), ``rank`` (stable /
  effective / numerical rank), ``checks`` (a chapter's claims as checks), ``live`` (progress bars and
  widgets that leave nothing in a static build);
- data and models: ``data`` (synthetic generators, real-data loaders), ``models``
  (the networks; no training or data code);
- the results store: ``cache`` (results cache), ``safe_store`` (its file format),
  ``executors`` (a sweep's items on any executor);
- training: ``train`` (the training loops, one vocabulary; vmap ensembles), ``losses``
  (the loss functions and accuracy);
- the phenomena, one module per idea: ``intrinsic_dimension`` (chapter 1), ``sweep``,
  ``lowrank``, ``collapse`` (chapter 2), ``gradients``, ``one_example`` (chapter 3),
  ``denoise`` (chapter 4), ``efcn``, ``relax`` (chapter 5), ``convex_cnn``,
  ``spectral``, ``capacity`` (chapter 6), ``oscillation``, ``sharpness`` (chapter 7);
- book tooling, beside the phenomena: ``chapter`` (a chapter's set-up), ``plotting``
  (house style), ``report`` (glue, paper-vs-build
  tables), ``runner`` (headless runs), ``notebooks`` (Colab cell, student edition),
  ``verify`` (seed robustness), ``smoke``, ``costs``, ``estimate`` (full-profile
  cost), and the command line ``python -m convbias``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0.dev0"  # X.Y.Z.devN until the release recipe (README) tags vX.Y.Z
__all__ = [
    "cache",
    "capacity",
    "chapter",
    "checks",
    "collapse",
    "config",
    "convex_cnn",
    "costs",
    "data",
    "denoise",
    "efcn",
    "estimate",
    "executors",
    "gradients",
    "intrinsic_dimension",
    "live",
    "losses",
    "lowrank",
    "models",
    "notebooks",
    "one_example",
    "oscillation",
    "plotting",
    "rank",
    "relax",
    "report",
    "runner",
    "safe_store",
    "sharpness",
    "smoke",
    "spectral",
    "sweep",
    "train",
    "verify",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'convbias' has no attribute {name!r}")
