"""From discrete pixels to a continuous density, and back.

A continuous density on integer pixels can grow without bound, so the flow is
trained on ``v = (x + u) / n_bins`` with noise ``u`` in [0, 1). The change of
scale contributes ``-D * log(n_bins)`` to the log-likelihood: that is the
discretisation term of bits per dimension. Its inverse floors back to integers.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .sequential import FlowSequential, _logdet_dtype, sum_except_batch


def check_n_bits(n_bits) -> int:
    """Return ``n_bits`` if it is an integer in 1..8, else raise ValueError."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= 8:
        raise ValueError(
            f"n_bits must be an integer from 1 to 8 (8 = the usual 256 levels, "
            f"5 = Glow's CelebA setting), got {n_bits!r}."
        )
    return n_bits


def check_integer_pixels(x: torch.Tensor, n_bins: int, name: str) -> torch.Tensor:
    """Return ``x`` as floats after checking it holds integers in 0..n_bins-1."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{name}: expected a torch.Tensor of integer pixels, got {type(x).__name__}."
        )
    xf = x if x.is_floating_point() else x.to(torch.get_default_dtype())
    if xf.numel() == 0:
        return xf
    lo, hi = xf.min().item(), xf.max().item()
    if torch.is_floating_point(x) and not torch.equal(xf, xf.floor()):
        raise ValueError(
            f"{name}: expected integer pixel values in 0..{n_bins - 1}, got non-integer "
            f"floats in [{lo:.3g}, {hi:.3g}]. Pass the integer image (for example the "
            f"dataset's uint8 tensor), not a scaled one like x / 255."
        )
    if lo < 0 or hi > n_bins - 1:
        raise ValueError(
            f"{name}: expected integer pixel values in 0..{n_bins - 1} "
            f"(n_bits={int(math.log2(n_bins))}), got values in [{lo:.0f}, {hi:.0f}]. "
            f"Quantise the images with flowlib.data.quantize(x, n_bits) first."
        )
    return xf


def keep_off_bin_edges(u: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Clamp noise ``u`` a few float steps away from 0 and 1.

    Otherwise ``x + u`` can round to ``x + 1`` and the inverse's ``floor`` would
    not give back ``x``. The margin (4 ulps at ``n_bins``: about 1e-4 in float32,
    2e-13 in float64) changes the noise distribution by a negligible amount.
    """
    margin = 4 * n_bins * torch.finfo(u.dtype).eps
    return u.clamp(margin, 1 - margin)


class UniformDequantization(nn.Module):
    """Integers in 0..2**n_bits-1 to continuous values in [0, 1) (or [-0.5, 0.5)).

    ``forward(x) = (x + u) / n_bins`` with ``u ~ U[0, 1)``, log-det ``-D log n_bins``.
    ``center=True`` shifts the result by -0.5, as Glow does; the shift has no log-det.
    """

    def __init__(self, n_bits: int = 8, center: bool = False):
        super().__init__()
        self.n_bits = check_n_bits(n_bits)
        self.n_bins = 2**n_bits
        self.center = center

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_integer_pixels(x, self.n_bins, type(self).__name__)
        z = (x + keep_off_bin_edges(torch.rand_like(x), self.n_bins)) / self.n_bins
        if self.center:
            z = z - 0.5
        return z, self._logdet(z, sign=-1.0)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = z + 0.5 if self.center else z
        x = torch.floor(v * self.n_bins).clamp(0, self.n_bins - 1)
        return x, self._logdet(z, sign=1.0)

    def _logdet(self, z: torch.Tensor, sign: float) -> torch.Tensor:
        d = z[0].numel()
        return torch.full(
            (z.shape[0],), sign * d * math.log(self.n_bins), dtype=_logdet_dtype(z), device=z.device
        )


class LogitTransform(nn.Module):
    """Values in [0, 1] to the real line: ``logit(alpha/2 + (1 - alpha) x)``.

    The squeeze by ``1 - alpha`` keeps the logit finite at 0 and 1.
    """

    def __init__(self, alpha: float = 1e-5):
        super().__init__()
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}.")
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"LogitTransform: expected values in [0, 1], got [{x.min().item():.3g}, "
                f"{x.max().item():.3g}]. Dequantize integer pixels first."
            )
        y = self.alpha / 2 + (1 - self.alpha) * x
        z = torch.log(y) - torch.log1p(-y)
        ld = -torch.log(y) - torch.log1p(-y)
        logdet = sum_except_batch(ld) + x[0].numel() * math.log(1 - self.alpha)
        return z, logdet

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.sigmoid(z)
        x = (y - self.alpha / 2) / (1 - self.alpha)
        ld = -z - 2 * F.softplus(-z)  # log sigmoid'(z)
        logdet = sum_except_batch(ld) - z[0].numel() * math.log(1 - self.alpha)
        return x, logdet


class VariationalDequantization(nn.Module):
    """Dequantization noise from a flow conditioned on the image (Flow++, UvA tutorial 11).

    The noise ``u = sigmoid(g(logit(eps); x))`` with ``eps ~ U[0, 1)`` is learned;
    the returned log-det adds ``-log q(u | x) = log|du/deps|`` to the usual
    ``-D log n_bins``. The flows ``g`` receive the image, scaled to [-1, 1], as
    ``cond``. The inverse floors back to the integer image and inverts ``g``, so
    both directions report exactly opposite log-dets. ``eps`` enters through the logit
    squeezed by ``alpha`` (finite at eps = 0); ``u`` leaves through a plain sigmoid, whose
    values lie inside (0, 1): a squeezed inverse logit would reach 5e-6 below 0, where
    keeping ``u`` off the bin edges would change it and break the inverse.
    """

    def __init__(self, flows, n_bits: int = 8, alpha: float = 1e-5):
        super().__init__()
        self.n_bits = check_n_bits(n_bits)
        self.n_bins = 2**n_bits
        self.flow = FlowSequential(*flows)
        self.logit = LogitTransform(alpha)  # eps <-> h
        self.sigmoid = LogitTransform(0.0)  # u <-> h, read backwards

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """The image as the noise flows see it: scaled to [-1, 1]."""
        return x / (self.n_bins - 1) * 2 - 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_integer_pixels(x, self.n_bins, type(self).__name__)
        cond = self.condition(x)
        eps = torch.rand_like(x)
        h, ld_logit = self.logit(eps)
        h, ld_flow = self.flow(h, cond=cond)
        u, ld_sigmoid = self.sigmoid.inverse(h)
        u = keep_off_bin_edges(u, self.n_bins)
        z = (x + u) / self.n_bins
        d = x[0].numel()
        return z, ld_logit + ld_flow + ld_sigmoid - d * math.log(self.n_bins)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = z * self.n_bins
        x = torch.floor(v).clamp(0, self.n_bins - 1)
        u = (v - x).clamp(0, 1)
        h, ld_u = self.sigmoid(u)
        h, ld_flow = self.flow.inverse(h, cond=self.condition(x))
        _, ld_eps = self.logit.inverse(h)
        d = z[0].numel()
        return x, ld_u + ld_flow + ld_eps + d * math.log(self.n_bins)


class LogitDequantization(nn.Module):
    """A dequantization layer followed by the logit transform: RealNVP's front end.

    ``dequant`` maps integer pixels into [0, 1) (:class:`UniformDequantization` or
    :class:`VariationalDequantization`); :class:`LogitTransform` then spreads [0, 1)
    over the real line. The inverse clamps back into [0, 1] before flooring, so a
    sampled value just outside the unit interval still decodes to a valid pixel.
    """

    def __init__(self, dequant: nn.Module, alpha: float = 1e-5):
        super().__init__()
        self.dequant = dequant
        self.logit = LogitTransform(alpha)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, ld_dequant = self.dequant(x)
        z, ld_logit = self.logit(v)
        return z, ld_dequant + ld_logit

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, ld_logit = self.logit.inverse(z)
        x, ld_dequant = self.dequant.inverse(v.clamp(0, 1))
        return x, ld_logit + ld_dequant
