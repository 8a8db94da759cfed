"""A chain of flow layers, itself a flow layer."""
from __future__ import annotations

import torch
from torch import nn


class FlowSequential(nn.Module):
    """Apply flow layers in order; log-dets add up.

    ``forward`` runs the layers first to last (data towards latent), ``inverse``
    runs their inverses last to first. Keyword arguments (for example ``cond``)
    are passed to every layer that accepts them.
    """

    def __init__(self, *layers: nn.Module):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0], dtype=_logdet_dtype(x))
        for layer in self.layers:
            x, ld = layer(x, **kwargs)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = z.new_zeros(z.shape[0], dtype=_logdet_dtype(z))
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z, **kwargs)
            logdet = logdet + ld
        return z, logdet


def _logdet_dtype(x: torch.Tensor) -> torch.dtype:
    """Log-dets stay in float32 or float64, even for integer or half inputs."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def sum_except_batch(t: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dimension; half precision is summed in float32."""
    return t.flatten(1).to(_logdet_dtype(t)).sum(1)
