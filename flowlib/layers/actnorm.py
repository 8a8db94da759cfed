"""Activation normalisation (Glow): a per-channel affine map with data-dependent init."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .sequential import _logdet_dtype
from .validation import expect_channels


class ActNorm(nn.Module):
    """``z = (x + bias) * exp(log_scale)``, per channel.

    On the first forward pass the bias and scale are set so that this batch
    comes out with zero mean and unit variance per channel. That happens once:
    the ``initialized`` buffer is saved in the state dict, so a loaded checkpoint
    is never re-initialised. Under torch.distributed the statistics are averaged
    over all ranks, so every rank starts from the same parameters.
    Accepts (batch, channels) or (batch, channels, height, width) inputs.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set bias and scale from the batch ``x`` (all ranks' batches under DDP)."""
        x = x.double()
        dims = [0, 2, 3]
        mean = _mean_over_ranks(x.mean(dim=dims))
        var = _mean_over_ranks(((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=dims))
        std = var.sqrt()
        self.bias.copy_(-mean.view(1, -1, 1, 1))
        self.log_scale.copy_(-torch.log(std + self.eps).view(1, -1, 1, 1))
        self.initialized.fill_(True)

    def _as_4d(self, x: torch.Tensor, name: str) -> torch.Tensor:
        expect_channels(x, f"ActNorm.{name}", self.channels)
        if x.dim() == 2:
            return x[:, :, None, None]
        if x.dim() != 4:
            raise ValueError(
                f"ActNorm.{name}: expected a 2-d or 4-d input, got shape {tuple(x.shape)}."
            )
        return x

    def _logdet(self, x4: torch.Tensor, sign: float) -> torch.Tensor:
        hw = x4.shape[2] * x4.shape[3]
        ld = sign * hw * self.log_scale.to(_logdet_dtype(x4)).sum()
        return ld.expand(x4.shape[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x4 = self._as_4d(x, "forward")
        if not bool(self.initialized):
            self.initialize(x4)
        z = (x4 + self.bias) * torch.exp(self.log_scale)
        return z.view_as(x), self._logdet(x4, 1.0)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z4 = self._as_4d(z, "inverse")
        x = z4 * torch.exp(-self.log_scale) - self.bias
        return x.view_as(z), self._logdet(z4, -1.0)


def _mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Average ``t`` over all torch.distributed ranks (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t
