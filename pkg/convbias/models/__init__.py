"""Models used across the book; each family lives in its own submodule.

- :mod:`~convbias.models.patch_cnn`: two-layer CNN with Huberized ReLU (Chapter 1)
- :mod:`~convbias.models.small_cnn`: CNN with a conv first layer for noisy MNIST (Chapter 1)
- :mod:`~convbias.models.mlp`, :mod:`~convbias.models.galanti_cnn`: MLP and small CNN of the low-rank sweeps (Chapter 2)
- :mod:`~convbias.models.conv1d`: deep 1-D circular conv nets and channel normalization (Chapter 3)
- :mod:`~convbias.models.deep_decoder`, :mod:`~convbias.models.generator1d`: un-trained generators (Chapters 3-4)
- :mod:`~convbias.models.canvas_cnn`: the CNNs embedded into FCNs (Chapter 5)
"""
from .canvas_cnn import alexnet_style, canvas_cnn, skinny_cnn
from .conv1d import ChannelBias1d, ChannelNorm1d, DeepConv1d
from .deep_decoder import DeepDecoder, FixedKernelGenerator, TransposedConvGenerator, make_generator, parameter_count
from .generator1d import ConvGenerator1D
from .mlp import MLP
from .patch_cnn import HuberizedReLU, PatchCNN

__all__ = [
    "ChannelBias1d", "ChannelNorm1d", "ConvGenerator1D", "DeepConv1d", "DeepDecoder", "FixedKernelGenerator",
    "HuberizedReLU", "MLP", "PatchCNN", "TransposedConvGenerator", "alexnet_style", "canvas_cnn",
    "make_generator", "parameter_count", "skinny_cnn",
]
