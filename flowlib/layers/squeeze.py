"""Squeeze (space to channels) and the factor-out step of multi-scale flows."""
from __future__ import annotations

import torch
from torch import nn

from .nets import ZeroConv2d
from .sequential import sum_except_batch
from .validation import expect_channels, expect_image_batch


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


class Split(nn.Module):
    """Factor out half of the channels under a learned conditional Gaussian prior.

    Glow's ``split2d``: the second half ``b`` of the channels leaves the flow here
    with prior ``N(mean(a), exp(log_sd(a))^2)``, where ``(mean, log_sd)`` come from
    a zero-initialised conv of the first half ``a``. Written as a bijection, the
    layer standardises ``b``: ``b' = (b - mean) * exp(-log_sd)`` with log-det
    ``-sum(log_sd)``. The model then sets ``b'`` aside as this level's latent
    under a standard normal, which gives exactly ``log N(b; mean, sd)``.
    Sampling at temperature T draws ``b' ~ N(0, T^2)``; T = 0 gives the prior mean.
    """

    def __init__(self, channels: int):
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"Split needs an even number of channels, got {channels}.")
        self.channels = channels
        self.prior = ZeroConv2d(channels // 2, channels)

    def _mean_log_sd(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.prior(a)
        return h[:, 0::2], h[:, 1::2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_channels(x, "Split", self.channels)
        a, b = x.chunk(2, dim=1)
        mean, log_sd = self._mean_log_sd(a)
        b = (b - mean) * torch.exp(-log_sd)
        return torch.cat([a, b], dim=1), -sum_except_batch(log_sd)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_channels(z, "Split", self.channels)
        a, b = z.chunk(2, dim=1)
        mean, log_sd = self._mean_log_sd(a)
        b = b * torch.exp(log_sd) + mean
        return torch.cat([a, b], dim=1), sum_except_batch(log_sd)


class LearnedPrior(nn.Module):
    """Glow's learned top prior ``N(mean, sd^2)`` per channel, optionally per class.

    Like :class:`Split`, written as the standardising bijection
    ``z' = (z - mean) * exp(-log_sd)`` so the latent left over is standard normal.
    With ``n_classes`` the mean and log-sd also depend on the label ``y``
    (a zero-initialised linear map of the one-hot label), as in openai/glow.
    """

    def __init__(self, channels: int, n_classes: int | None = None):
        super().__init__()
        self.channels = channels
        self.n_classes = n_classes
        self.params = nn.Parameter(torch.zeros(1, 2 * channels, 1, 1))
        if n_classes:
            self.class_params = nn.Linear(n_classes, 2 * channels)
            nn.init.zeros_(self.class_params.weight)
            nn.init.zeros_(self.class_params.bias)

    def mean_log_sd(self, batch: int, y: torch.Tensor | None = None):
        h = self.params.expand(batch, -1, -1, -1)
        if self.n_classes:
            if y is None:
                raise ValueError(
                    f"This prior is class-conditional (n_classes={self.n_classes}): pass the "
                    f"labels as y=..., a tensor of {batch} integers in 0..{self.n_classes - 1}."
                )
            if y.shape != (batch,) or y.min() < 0 or y.max() >= self.n_classes:
                raise ValueError(
                    f"y must hold {batch} labels in 0..{self.n_classes - 1}, got shape "
                    f"{tuple(y.shape)} with values {y.min().item()}..{y.max().item()}."
                )
            onehot = nn.functional.one_hot(y.long(), self.n_classes).to(h.dtype)
            h = h + self.class_params(onehot)[:, :, None, None]
        return h[:, : self.channels], h[:, self.channels:]

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None):
        expect_channels(z, "LearnedPrior", self.channels)
        mean, log_sd = self.mean_log_sd(z.shape[0], y)
        out = (z - mean) * torch.exp(-log_sd)
        hw = z.shape[2] * z.shape[3]
        return out, -hw * sum_except_batch(log_sd)

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None):
        expect_channels(z, "LearnedPrior", self.channels)
        mean, log_sd = self.mean_log_sd(z.shape[0], y)
        out = z * torch.exp(log_sd) + mean
        hw = z.shape[2] * z.shape[3]
        return out, hw * sum_except_batch(log_sd)
