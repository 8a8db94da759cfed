"""What every image flow model offers, on top of its own encode/decode."""

from __future__ import annotations

import abc
import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Sum of ``log N(z_i; 0, 1)`` over all but the batch dimension, in float32 or more."""
    z = z if z.dtype == torch.float64 else z.float()
    return (-0.5 * (z**2 + LOG_2PI)).flatten(1).sum(1)


class _ImageFlowMeta(abc.ABCMeta):
    """Checks, once a model is built, that its ``__init__`` set every required member."""

    def __call__(cls, *args, **kwargs):
        flow = super().__call__(*args, **kwargs)
        missing = [name for name in ImageFlow.REQUIRED if not hasattr(flow, name)]
        if missing:
            raise TypeError(
                f"{cls.__name__} is not a complete ImageFlow: its __init__ must set "
                f"{', '.join(missing)} (see flowlib.models.ImageFlow)."
            )
        return flow


class ImageFlow(nn.Module, metaclass=_ImageFlowMeta):
    """Base class for flows on integer images of shape ``image_shape``.

    A subclass implements ``flow_forward(v, y=None) -> (latents, logdet)`` and
    ``flow_inverse(latents, y=None) -> (v, logdet)``: the continuous bijection from
    dequantized images to a list of latents, one per level, each with a standard normal
    prior. Its ``__init__`` sets:

    * ``dequantize``: a layer from integer pixels to continuous values;
    * ``image_shape`` (C, H, W), ``latent_shapes`` (one (C, H, W) per latent), ``n_bits``;
    * ``config``: its constructor arguments, so a checkpoint can rebuild it.

    Building a subclass that lacks one of them raises ``TypeError``. From them this class
    gives ``encode``, ``decode``, ``log_prob``, ``bpd``, ``sample`` and ``interpolate``.
    The only conditioning keyword is ``y`` (class labels).
    """

    REQUIRED = ("dequantize", "image_shape", "latent_shapes", "n_bits", "config")
    dequantize: nn.Module
    image_shape: tuple[int, int, int]
    latent_shapes: list[tuple[int, int, int]]
    n_bits: int
    config: dict

    @abc.abstractmethod
    def flow_forward(self, v: torch.Tensor, y: torch.Tensor | None = None):
        """Dequantized images -> (list of latents, log-det)."""

    @abc.abstractmethod
    def flow_inverse(self, latents: list[torch.Tensor], y: torch.Tensor | None = None):
        """List of latents -> (dequantized images, log-det)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def check_images(self, x: torch.Tensor) -> torch.Tensor:
        """Raise ValueError unless ``x`` is a batch of images of ``image_shape``."""
        if (
            not isinstance(x, torch.Tensor)
            or x.dim() != 4
            or tuple(x.shape[1:]) != tuple(self.image_shape)
        ):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{type(self).__name__} expects integer images of shape (batch, "
                f"{', '.join(map(str, self.image_shape))}), got {shape}."
            )
        return x.to(device=self.device, dtype=self.dtype if x.is_floating_point() else x.dtype)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Integer images -> (list of latents, one per level; log-det incl. dequantization)."""
        x = self.check_images(x)
        if not x.is_floating_point():
            x = x.to(self.dtype)
        v, logdet = self.dequantize(x)
        latents, ld = self.flow_forward(v, y=y)
        return latents, logdet + ld

    def decode(self, latents: list[torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        """Latents -> integer-valued images (float tensor). Exact inverse of ``encode``."""
        if len(latents) != len(self.latent_shapes):
            raise ValueError(
                f"decode expects {len(self.latent_shapes)} latents with shapes "
                f"{self.latent_shapes}, got {len(latents)}."
            )
        for i, (z, shape) in enumerate(zip(latents, self.latent_shapes)):
            if z.dim() != 4 or tuple(z.shape[1:]) != tuple(shape):
                raise ValueError(
                    f"latent {i} should have shape (batch, {shape}), got {tuple(z.shape)}."
                )
        v, _ = self.flow_inverse(latents, y=y)
        x, _ = self.dequantize.inverse(v)
        return x

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Log-likelihood of integer images, in nats, one value per image.

        A lower bound (exact for uniform dequantization in expectation) that
        includes the discretisation term ``-D log(2**n_bits)``.
        """
        latents, logdet = self.encode(x, y=y)
        return sum(standard_normal_log_prob(z) for z in latents) + logdet

    def bpd(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Bits per dimension of each image: ``-log_prob / (D log 2)``."""
        return -self.log_prob(x, y=y) / (math.prod(self.image_shape) * math.log(2))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` integer-valued images from latents drawn from ``N(0, temperature^2)``."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}.")
        noise_device = generator.device if generator is not None else self.device
        latents = [
            temperature
            * torch.randn(
                (n, *shape), generator=generator, device=noise_device, dtype=self.dtype
            ).to(self.device)
            for shape in self.latent_shapes
        ]
        return self.decode(latents, y=y)

    @torch.no_grad()
    def interpolate(
        self, x0: torch.Tensor, x1: torch.Tensor, steps: int = 8, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decode ``steps`` points on the straight line between the latents of two images.

        ``x0`` and ``x1`` are single images (C, H, W) or batches of one.
        Returns (steps, C, H, W); the ends reconstruct ``x0`` and ``x1``.
        """
        x0 = x0 if x0.dim() == 4 else x0[None]
        x1 = x1 if x1.dim() == 4 else x1[None]
        z0, _ = self.encode(x0, y=y)
        z1, _ = self.encode(x1, y=y)
        w = torch.linspace(0, 1, steps, device=self.device, dtype=self.dtype).view(-1, 1, 1, 1)
        latents = [(1 - w) * a + w * b for a, b in zip(z0, z1)]
        y_steps = None if y is None else y[:1].expand(steps)
        return self.decode(latents, y=y_steps)
