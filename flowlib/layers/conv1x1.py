"""Invertible 1x1 convolution (Glow): a learned mixing of channels at every pixel.

The log-determinant of the whole map is ``height * width * log|det W|``. Inverting
``W`` in float32 drifts over many layers, so the inverse is computed in float64.
In eval mode ``W`` and ``W^-1`` are cached until a parameter changes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .validation import expect_image_batch


class _CachedWeights(nn.Module):
    """Shared machinery: build ``W``, invert it in float64, cache both in eval mode."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self._cache_key = None
        self._cache = None

    def weight(self) -> torch.Tensor:  # (C, C)
        raise NotImplementedError

    def log_abs_det(self) -> torch.Tensor:
        raise NotImplementedError

    def _key(self):
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, W^-1)``; cached while in eval mode and the parameters stay the same."""
        if not self.training:
            key = self._key()
            if key != self._cache_key:
                with torch.no_grad():
                    w = self.weight()
                    self._cache = (w, torch.linalg.inv(w.double()).to(w.dtype))
                self._cache_key = key
            return self._cache
        w = self.weight()
        return w, torch.linalg.inv(w.double()).to(w.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_image_batch(x, type(self).__name__, self.channels)
        w = self._weights()[0] if not self.training else self.weight()
        z = F.conv2d(x, w.to(x.dtype).view(self.channels, self.channels, 1, 1))
        return z, self._logdet(x, 1.0)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expect_image_batch(z, type(self).__name__, self.channels)
        w_inv = self._weights()[1]
        x = F.conv2d(z, w_inv.to(z.dtype).view(self.channels, self.channels, 1, 1))
        return x, self._logdet(z, -1.0)

    def _logdet(self, x: torch.Tensor, sign: float) -> torch.Tensor:
        hw = x.shape[2] * x.shape[3]
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        return (sign * hw * self.log_abs_det().to(dtype)).expand(x.shape[0])


def _random_rotation(channels: int, generator: torch.Generator | None) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
    return q


class InvConv1x1(_CachedWeights):
    """Dense invertible 1x1 convolution; ``log|det W|`` from ``slogdet``.

    Starts as a random rotation."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__(channels)
        self.w = nn.Parameter(_random_rotation(channels, generator))

    def weight(self) -> torch.Tensor:
        return self.w

    def log_abs_det(self) -> torch.Tensor:
        return torch.linalg.slogdet(self.w.double())[1]


class InvConv1x1LU(_CachedWeights):
    """LU-parametrised 1x1 convolution: ``W = P L (U + diag(sign * exp(log_s)))``.

    ``P`` is a fixed permutation, ``L`` unit lower triangular, ``U`` strictly upper
    triangular, so ``log|det W| = sum(log_s)`` costs O(C) instead of O(C^3).
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__(channels)
        p, lower, upper = torch.linalg.lu(_random_rotation(channels, generator))
        s = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def log_abs_det(self) -> torch.Tensor:
        return self.log_s.sum()
