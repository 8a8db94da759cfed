"""Glow (Kingma & Dhariwal, 2018): multi-scale flow of ActNorm, 1x1 conv and coupling steps.

Level by level: squeeze, K flow steps, then (except at the top) split off half
of the channels under a learned conditional prior. The top latent has a learned
(optionally class-conditional) prior. Images are dequantized to [-0.5, 0.5) as in
openai/glow, or, with ``logit_alpha``, through RealNVP's logit transform.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import (
    ActNorm,
    ChannelAffineCoupling,
    FlowSequential,
    GlowCouplingNet,
    InvConv1x1,
    InvConv1x1LU,
    LearnedPrior,
    LogitDequantization,
    ReversePermutation,
    ShufflePermutation,
    Split,
    Squeeze,
    UniformDequantization,
    net_out_channels,
)
from .base import ImageFlow

PERMUTATIONS = ("reverse", "shuffle", "conv1x1", "conv1x1_lu")
COUPLINGS = ("affine", "additive")


def make_permutation(kind: str, channels: int) -> nn.Module:
    if kind == "reverse":
        return ReversePermutation(channels)
    if kind == "shuffle":
        return ShufflePermutation(channels)
    if kind == "conv1x1":
        return InvConv1x1(channels)
    if kind == "conv1x1_lu":
        return InvConv1x1LU(channels)
    raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {kind!r}.")


def flow_step(
    channels: int, hidden: int, permutation: str = "conv1x1_lu", coupling: str = "affine"
) -> FlowSequential:
    """One Glow step: ActNorm, then a channel permutation, then a coupling layer."""
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}.")
    scale = "sigmoid" if coupling == "affine" else "additive"
    half = channels // 2
    net = GlowCouplingNet(half, net_out_channels(channels - half, scale), hidden)
    return FlowSequential(
        ActNorm(channels),
        make_permutation(permutation, channels),
        ChannelAffineCoupling(net, channels, scale),
    )


class Glow(ImageFlow):
    """Multi-scale Glow.

    Args:
        image_shape: (C, H, W) of the images; H and W must be divisible by 2**L.
        K: flow steps per level.  L: levels.  hidden: width of the coupling nets.
        permutation: "reverse", "shuffle", "conv1x1" (dense) or "conv1x1_lu".
        coupling: "affine" (sigmoid(h + 2) scale) or "additive".
        learn_top_prior: learn the mean and scale of the top latent's prior.
        n_classes: if given, a class-conditional top prior and a small classifier
            on the top latent (``class_logits``), as in openai/glow.
        n_bits: bits per pixel of the integer images.
        logit_alpha: None (the default) centres the dequantized pixels to [-0.5, 0.5),
            as openai/glow does. A float ``alpha`` maps them through
            ``logit(alpha/2 + (1 - alpha) v)`` instead, as RealNVP does. On MNIST, whose
            black background fills most pixels, the logit's own expansion of the dark
            bins lets Glow learn much faster (figures in benchmarks/README.md).
    """

    def __init__(
        self,
        image_shape=(1, 28, 28),
        K: int = 8,
        L: int = 2,
        hidden: int = 128,
        permutation: str = "conv1x1_lu",
        coupling: str = "affine",
        learn_top_prior: bool = True,
        n_classes: int | None = None,
        n_bits: int = 8,
        logit_alpha: float | None = None,
    ):
        super().__init__()
        c, h, w = self.image_shape = tuple(int(s) for s in image_shape)
        if K < 1 or L < 1:
            raise ValueError(f"K and L must be at least 1, got K={K}, L={L}.")
        if h % 2**L or w % 2**L:
            raise ValueError(
                f"An image of {h}x{w} cannot be squeezed L={L} times: height and width must "
                f"be divisible by 2**L = {2**L}. Use L <= {_max_levels(h, w)}, or pad the "
                f"images (MNIST: pad_to_32=True allows L=3)."
            )
        self.config = dict(
            image_shape=self.image_shape,
            K=K,
            L=L,
            hidden=hidden,
            permutation=permutation,
            coupling=coupling,
            learn_top_prior=learn_top_prior,
            n_classes=n_classes,
            n_bits=n_bits,
            logit_alpha=logit_alpha,
        )
        self.n_bits = n_bits
        self.n_classes = n_classes
        if logit_alpha is None:
            self.dequantize = UniformDequantization(n_bits, center=True)
        else:
            self.dequantize = LogitDequantization(UniformDequantization(n_bits), logit_alpha)
        self.levels = nn.ModuleList()
        self.splits = nn.ModuleList()
        self.latent_shapes = []
        for level in range(L):
            c, h, w = 4 * c, h // 2, w // 2
            self.levels.append(
                FlowSequential(
                    Squeeze(), *[flow_step(c, hidden, permutation, coupling) for _ in range(K)]
                )
            )
            if level < L - 1:
                self.splits.append(Split(c))
                c = c // 2
                self.latent_shapes.append((c, h, w))
        self.latent_shapes.append((c, h, w))
        self.top_prior = LearnedPrior(c, n_classes) if (learn_top_prior or n_classes) else None
        self.classifier = nn.Linear(c, n_classes) if n_classes else None

    def flow_forward(self, v, y=None):
        latents = []
        logdet = 0
        h = v
        for level, flow in enumerate(self.levels):
            h, ld = flow(h)
            logdet = logdet + ld
            if level < len(self.splits):
                h, ld = self.splits[level](h)
                logdet = logdet + ld
                h, z = h.chunk(2, dim=1)
                latents.append(z)
        if self.top_prior is not None:
            h, ld = self.top_prior(h, y=y)
            logdet = logdet + ld
        latents.append(h)
        return latents, logdet

    def flow_inverse(self, latents, y=None):
        h = latents[-1]
        logdet = 0
        if self.top_prior is not None:
            h, ld = self.top_prior.inverse(h, y=y)
            logdet = logdet + ld
        for level in reversed(range(len(self.levels))):
            if level < len(self.splits):
                h, ld = self.splits[level].inverse(torch.cat([h, latents[level]], dim=1))
                logdet = logdet + ld
            h, ld = self.levels[level].inverse(h)
            logdet = logdet + ld
        return h, logdet

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits from the mean over space of the top latent (needs ``n_classes``)."""
        if self.classifier is None:
            raise ValueError("This Glow has no classifier: build it with n_classes=...")
        v, _ = self.dequantize(self.check_images(x).to(self.dtype))
        h = v
        for level, flow in enumerate(self.levels):
            h, _ = flow(h)
            if level < len(self.splits):
                h, _ = self.splits[level](h)
                h = h.chunk(2, dim=1)[0]
        return self.classifier(h.mean(dim=(2, 3)))


def _max_levels(h: int, w: int) -> int:
    levels = 0
    while h % 2 == 0 and w % 2 == 0:
        h, w, levels = h // 2, w // 2, levels + 1
    return levels
