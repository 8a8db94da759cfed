"""Fixed channel permutations: volume preserving, log-det 0."""

from __future__ import annotations

import torch
from torch import nn

from .validation import expect_channels


class _Permutation(nn.Module):
    def __init__(self, perm: torch.Tensor):
        super().__init__()
        self.channels = len(perm)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_channels(x, type(self).__name__, self.channels)
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_channels(z, type(self).__name__, self.channels)
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])


class ReversePermutation(_Permutation):
    """Reverse the order of the channels (RealNVP, Glow's ``reverse``)."""

    def __init__(self, channels: int):
        super().__init__(torch.arange(channels - 1, -1, -1))


class ShufflePermutation(_Permutation):
    """A fixed random order of the channels, drawn once and saved in the state dict."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__(torch.randperm(channels, generator=generator))
