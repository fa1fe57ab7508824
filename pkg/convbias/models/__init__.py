"""Models used across the book; each family lives in its own submodule.

Models import only :mod:`convbias.config` and :mod:`convbias.rank` (no training,
data or cache code; see ``tests/test_layers.py``).

- :mod:`~convbias.models.patch_cnn`: two-layer patch CNN with Huberized ReLU (chapter 1)
- :mod:`~convbias.models.one_conv`: a CNN with one convolution layer, for noisy MNIST (chapter 1)
- :mod:`~convbias.models.mlp`, :mod:`~convbias.models.galanti_cnn`: MLP and small CNN of the low-rank sweeps (chapter 2)
- :mod:`~convbias.models.conv1d`: deep 1-D circular conv nets and channel normalization (chapter 3)
- :mod:`~convbias.models.deep_decoder`, :mod:`~convbias.models.generator1d`: un-trained generators (chapters 3-4)
- :mod:`~convbias.models.canvas_cnn`: the CNNs embedded into FCNs (chapter 5)
- :mod:`~convbias.models.layered`: small nets with named layers (chapter 7)
- :mod:`~convbias.models.counting`: :func:`count_parameters` (chapters 4-5)
"""

from .canvas_cnn import alexnet_style, canvas_cnn, skinny_cnn
from .conv1d import ChannelBias1d, ChannelNorm1d, DeepConv1d
from .counting import count_parameters
from .deep_decoder import (
    DeepDecoder,
    FixedKernelGenerator,
    TransposedConvGenerator,
    make_generator,
    parameter_formula,
)
from .galanti_cnn import GalantiCNN
from .generator1d import ConvGenerator1D
from .mlp import MLP
from .one_conv import OneConvCNN
from .patch_cnn import HuberizedReLU, PatchCNN

__all__ = [
    "ChannelBias1d",
    "ChannelNorm1d",
    "ConvGenerator1D",
    "DeepConv1d",
    "DeepDecoder",
    "FixedKernelGenerator",
    "GalantiCNN",
    "HuberizedReLU",
    "MLP",
    "OneConvCNN",
    "PatchCNN",
    "TransposedConvGenerator",
    "alexnet_style",
    "canvas_cnn",
    "count_parameters",
    "make_generator",
    "parameter_formula",
    "skinny_cnn",
]
