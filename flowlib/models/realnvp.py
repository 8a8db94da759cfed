"""The RealNVP-style flows of the UvA DL tutorial 11, rebuilt on flowlib layers.

Built with their default settings they have exactly the tutorial's parameter
counts: ``SimpleFlow()`` 556,312, ``SimpleFlow(vardeq=True)`` 628,388,
``MultiscaleFlow()`` 1,711,818.
"""

from __future__ import annotations

import torch

from ..layers import (
    FlowSequential,
    GatedConvNet,
    LogitDequantization,
    MaskedAffineCoupling,
    Squeeze,
    UniformDequantization,
    VariationalDequantization,
    channel_mask,
    checkerboard_mask,
)
from .base import ImageFlow


def dequantization(n_bits: int, image_shape, vardeq: bool) -> LogitDequantization:
    """Uniform or variational dequantization (4 noise couplings of width 16), then the logit."""
    if not vardeq:
        return LogitDequantization(UniformDequantization(n_bits))
    c, h, w = image_shape
    flows = [
        checkerboard_coupling(c, h, w, hidden=16, invert=i % 2 == 1, cond_channels=c)
        for i in range(4)
    ]
    return LogitDequantization(VariationalDequantization(flows, n_bits=n_bits))


def checkerboard_coupling(channels, height, width, hidden, invert, cond_channels=0):
    """UvA coupling: checkerboard mask, gated conv net, tanh scale."""
    net = GatedConvNet(channels + cond_channels, hidden, out_channels=2 * channels)
    return MaskedAffineCoupling(net, checkerboard_mask(height, width, invert), "tanh", channels)


def channel_coupling(channels, hidden, invert):
    """UvA coupling: channel mask, gated conv net, tanh scale."""
    net = GatedConvNet(channels, hidden)
    return MaskedAffineCoupling(net, channel_mask(channels, invert), "tanh", channels)


class SimpleFlow(ImageFlow):
    """Eight checkerboard couplings at full resolution (UvA "simple" / "vardeq")."""

    def __init__(
        self,
        image_shape=(1, 28, 28),
        n_couplings: int = 8,
        hidden: int = 32,
        vardeq: bool = False,
        n_bits: int = 8,
    ):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.config = dict(
            image_shape=self.image_shape,
            n_couplings=n_couplings,
            hidden=hidden,
            vardeq=vardeq,
            n_bits=n_bits,
        )
        self.latent_shapes = [self.image_shape]
        self.n_bits = n_bits
        c, h, w = self.image_shape
        self.dequantize = dequantization(n_bits, self.image_shape, vardeq)
        self.flow = FlowSequential(
            *[checkerboard_coupling(c, h, w, hidden, invert=i % 2 == 1) for i in range(n_couplings)]
        )

    def flow_forward(self, v, y=None):
        z, logdet = self.flow(v)
        return [z], logdet

    def flow_inverse(self, latents, y=None):
        return self.flow.inverse(latents[0])


class MultiscaleFlow(ImageFlow):
    """UvA's multi-scale flow: 2 checkerboard couplings, squeeze, 2 channel couplings,
    split off half, squeeze, 4 channel couplings. Variational dequantization by default.

    The split uses a standard normal prior (no parameters), as in the tutorial.
    """

    def __init__(
        self, image_shape=(1, 28, 28), vardeq: bool = True, n_bits: int = 8, hidden=(32, 48, 64)
    ):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.config = dict(
            image_shape=self.image_shape, vardeq=vardeq, n_bits=n_bits, hidden=tuple(hidden)
        )
        self.n_bits = n_bits
        c, h, w = self.image_shape
        if h % 4 or w % 4:
            raise ValueError(
                f"MultiscaleFlow squeezes twice: height and width must be multiples of 4, "
                f"got {h}x{w}."
            )
        self.latent_shapes = [(2 * c, h // 2, w // 2), (8 * c, h // 4, w // 4)]
        self.dequantize = dequantization(n_bits, self.image_shape, vardeq)
        self.level1 = FlowSequential(
            *[checkerboard_coupling(c, h, w, hidden[0], invert=i % 2 == 1) for i in range(2)],
            Squeeze(),
            *[channel_coupling(4 * c, hidden[1], invert=i % 2 == 1) for i in range(2)],
        )
        self.level2 = FlowSequential(
            Squeeze(), *[channel_coupling(8 * c, hidden[2], invert=i % 2 == 1) for i in range(4)]
        )

    def flow_forward(self, v, y=None):
        h, ld1 = self.level1(v)
        h, z1 = h.chunk(2, dim=1)
        z2, ld2 = self.level2(h)
        return [z1, z2], ld1 + ld2

    def flow_inverse(self, latents, y=None):
        z1, z2 = latents
        h, ld2 = self.level2.inverse(z2)
        v, ld1 = self.level1.inverse(torch.cat([h, z1], dim=1))
        return v, ld1 + ld2
