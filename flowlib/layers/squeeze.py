"""Squeeze: space to channels, the reshuffle between the levels of a multi-scale flow."""

from __future__ import annotations

import torch
from torch import nn

from .validation import expect_image_batch


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch becomes 4 channels."""
    expect_image_batch(x, "squeeze")
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(
            f"squeeze: height and width must be even, got {h}x{w}. Pad the images "
            f"(e.g. MNIST 28x28 -> 32x32) or use fewer levels."
        )
    x = x.reshape(b, c, h // 2, 2, w // 2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(z: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H, W) -> (B, C, 2H, 2W): the inverse of :func:`squeeze`."""
    expect_image_batch(z, "unsqueeze")
    b, c, h, w = z.shape
    if c % 4:
        raise ValueError(f"unsqueeze: channels must be a multiple of 4, got {c}.")
    z = z.reshape(b, c // 4, 2, 2, h, w)
    return z.permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)


class Squeeze(nn.Module):
    """Flow layer for :func:`squeeze`; a reshuffle, so its log-det is 0."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return unsqueeze(z), z.new_zeros(z.shape[0])
