"""Flow layers. Every layer maps ``forward(x) -> (z, logdet)`` (data to latent)
and ``inverse(z) -> (x, logdet)`` (latent to data), ``logdet`` of shape (batch,)."""

from .actnorm import ActNorm
from .conv1x1 import InvConv1x1, InvConv1x1LU
from .coupling import (
    ChannelAffineCoupling,
    MaskedAffineCoupling,
    channel_mask,
    checkerboard_mask,
    net_out_channels,
)
from .dequantization import (
    LogitDequantization,
    LogitTransform,
    UniformDequantization,
    VariationalDequantization,
    keep_off_bin_edges,
)
from .nets import ConcatELU, GatedConvNet, GlowCouplingNet, LayerNormChannels, ZeroConv2d
from .permutations import ReversePermutation, ShufflePermutation
from .priors import LearnedPrior, Split
from .sequential import FlowSequential
from .squeeze import Squeeze, squeeze, unsqueeze

__all__ = [
    "ActNorm",
    "ChannelAffineCoupling",
    "ConcatELU",
    "FlowSequential",
    "GatedConvNet",
    "GlowCouplingNet",
    "InvConv1x1",
    "InvConv1x1LU",
    "LayerNormChannels",
    "LearnedPrior",
    "LogitDequantization",
    "LogitTransform",
    "MaskedAffineCoupling",
    "ReversePermutation",
    "ShufflePermutation",
    "Split",
    "Squeeze",
    "UniformDequantization",
    "VariationalDequantization",
    "ZeroConv2d",
    "channel_mask",
    "checkerboard_mask",
    "keep_off_bin_edges",
    "net_out_channels",
    "squeeze",
    "unsqueeze",
]
