"""Affine coupling: transform half of the input, conditioned on the other half.

The untouched half passes through, so the Jacobian is triangular and its
log-determinant is just the sum of the log-scales. Two ways to choose the halves:

* :class:`MaskedAffineCoupling` multiplies by a binary mask (checkerboard or
  channel), as in RealNVP and the UvA tutorial; the network sees the masked input.
* :class:`ChannelAffineCoupling` splits the channels in two, as in Glow; the
  network sees only the first half, which is cheaper.

Both shift then scale, ``z = (x + t) * exp(log_s)``, with one of three scale
parametrisations (``scale=``):

* ``"tanh"``: ``log_s = c * tanh(h / c)`` with a learned per-channel ``c = exp(w)`` (UvA);
* ``"sigmoid"``: ``exp(log_s) = sigmoid(h + 2)``, bounded in (0, 1), near 0.88 at start (Glow);
* ``"additive"``: ``log_s = 0``, volume preserving (NICE); the network outputs only ``t``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .networks_mode import run_network
from .sequential import sum_except_batch
from .validation import expect_channels

SCALES = ("tanh", "sigmoid", "additive")


def checkerboard_mask(height: int, width: int, invert: bool = False) -> torch.Tensor:
    """A (1, 1, height, width) mask with 1 where ``(row + col)`` is even (odd if ``invert``)."""
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    mask = ((rows + cols) % 2 == 0).float()
    if invert:
        mask = 1 - mask
    return mask.view(1, 1, height, width)


def channel_mask(channels: int, invert: bool = False) -> torch.Tensor:
    """A (1, channels, 1, 1) mask: 1 on the first half of the channels (second if ``invert``)."""
    mask = torch.cat([torch.ones(channels // 2), torch.zeros(channels - channels // 2)])
    if invert:
        mask = 1 - mask
    return mask.view(1, channels, 1, 1)


def net_out_channels(transformed_channels: int, scale: str) -> int:
    """How many channels the coupling network must output for ``scale``."""
    check_scale(scale)
    return transformed_channels if scale == "additive" else 2 * transformed_channels


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}.")
    return scale


class _AffineScale(nn.Module):
    """Turns the network's output into ``(log_s, t)`` for one scale parametrisation."""

    def __init__(self, scale: str, channels: int):
        super().__init__()
        self.scale = check_scale(scale)
        if scale == "tanh":
            self.scaling_factor = nn.Parameter(torch.zeros(channels))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scale == "additive":
            return torch.zeros_like(h), h
        raw, t = h.chunk(2, dim=1)
        if self.scale == "tanh":
            factor = self.scaling_factor.exp().view(1, -1, 1, 1)
            log_s = torch.tanh(raw / factor) * factor
        else:
            log_s = F.logsigmoid(raw + 2.0)
        return log_s, t


class MaskedAffineCoupling(nn.Module):
    """Affine coupling with a binary mask: entries where ``mask == 1`` pass unchanged.

    ``net`` maps the masked input (concatenated with ``cond`` when given) to
    ``net_out_channels(channels, scale)`` channels.
    """

    def __init__(
        self, net: nn.Module, mask: torch.Tensor, scale: str = "tanh", channels: int | None = None
    ):
        super().__init__()
        channels = channels if channels is not None else mask.shape[1]
        self.channels = channels
        self.net = net
        self.affine = _AffineScale(scale, channels)
        self.register_buffer("mask", mask)

    def _log_s_and_t(self, x: torch.Tensor, cond: torch.Tensor | None):
        expect_channels(x, type(self).__name__, self.channels)
        if x.shape[2:] != self.mask.shape[2:] and self.mask.shape[2:] != (1, 1):
            raise ValueError(
                f"{type(self).__name__}: the mask is {tuple(self.mask.shape[2:])} but the input "
                f"is {tuple(x.shape[2:])}. Build the mask for the image size the layer sees."
            )
        mask = self.mask.to(x.dtype)
        h = x * mask
        if cond is not None:
            h = torch.cat([h, cond], dim=1)
        log_s, t = self.affine(run_network(self.net, h))
        return log_s * (1 - mask), t * (1 - mask)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        log_s, t = self._log_s_and_t(x, cond)
        z = (x + t) * torch.exp(log_s)
        return z, sum_except_batch(log_s)

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None):
        log_s, t = self._log_s_and_t(z, cond)  # depends only on the unchanged entries
        x = z * torch.exp(-log_s) - t
        return x, -sum_except_batch(log_s)


class ChannelAffineCoupling(nn.Module):
    """Glow's coupling: the first half of the channels conditions the second.

    ``net`` maps the first ``channels // 2`` channels (plus ``cond`` when given)
    to ``net_out_channels(channels - channels // 2, scale)`` channels.
    """

    def __init__(self, net: nn.Module, channels: int, scale: str = "sigmoid"):
        super().__init__()
        if channels < 2:
            raise ValueError(f"ChannelAffineCoupling needs at least 2 channels, got {channels}.")
        self.channels = channels
        self.split = channels // 2
        self.net = net
        self.affine = _AffineScale(scale, channels - self.split)

    def _log_s_and_t(self, a: torch.Tensor, cond: torch.Tensor | None):
        h = a if cond is None else torch.cat([a, cond], dim=1)
        return self.affine(run_network(self.net, h))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        expect_channels(x, type(self).__name__, self.channels)
        a, b = x[:, : self.split], x[:, self.split :]
        log_s, t = self._log_s_and_t(a, cond)
        b = (b + t) * torch.exp(log_s)
        return torch.cat([a, b], dim=1), sum_except_batch(log_s)

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None):
        expect_channels(z, type(self).__name__, self.channels)
        a, b = z[:, : self.split], z[:, self.split :]
        log_s, t = self._log_s_and_t(a, cond)
        b = b * torch.exp(-log_s) - t
        return torch.cat([a, b], dim=1), -sum_except_batch(log_s)
