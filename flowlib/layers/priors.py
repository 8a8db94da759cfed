"""Learned Gaussian priors, written as standardising bijections.

:class:`Split` factors out half of the channels under a prior conditioned on the other
half (Glow's ``split2d``); :class:`LearnedPrior` is Glow's top prior, optionally per
class. Both map a latent to ``(z - mean) * exp(-log_sd)``, so what is left is standard
normal and the model's prior stays ``N(0, I)`` everywhere.
"""

from __future__ import annotations

import torch
from torch import nn

from .nets import ZeroConv2d
from .sequential import sum_except_batch
from .validation import expect_channels


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

    def mean_log_sd(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior of the second half given the first half ``a``: ``(mean, log_sd)``."""
        half = self.channels // 2
        if a.dim() != 4 or a.shape[1] != half:
            raise ValueError(
                f"Split.mean_log_sd takes the half of the channels that stays, a tensor of "
                f"shape (batch, {half}, H, W); got {tuple(a.shape)}."
            )
        h = self.prior(a)
        return h[:, 0::2], h[:, 1::2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_channels(x, "Split", self.channels)
        a, b = x.chunk(2, dim=1)
        mean, log_sd = self.mean_log_sd(a)
        b = (b - mean) * torch.exp(-log_sd)
        return torch.cat([a, b], dim=1), -sum_except_batch(log_sd)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_channels(z, "Split", self.channels)
        a, b = z.chunk(2, dim=1)
        mean, log_sd = self.mean_log_sd(a)
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
        """``(mean, log_sd)``, each of shape (batch, channels, 1, 1)."""
        if isinstance(batch, bool) or not isinstance(batch, int):
            raise TypeError(
                f"LearnedPrior.mean_log_sd takes the batch size, an int such as n, "
                f"got {type(batch).__name__}."
            )
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
        return h[:, : self.channels], h[:, self.channels :]

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
