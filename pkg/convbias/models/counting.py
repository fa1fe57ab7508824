"""How many numbers a network trains: one count for every chapter.

Used by chapter 4 (the deep decoder's size against its formula,
:func:`convbias.models.deep_decoder.parameter_formula`) and chapter 5 (a CNN
against its eFCN and eLCN embeddings).
"""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars of ``model`` (for an eFCN's sparse layer, the stored support values)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
