"""A chain of flow layers, itself a flow layer."""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn


class FlowSequential(nn.Module):
    """Apply flow layers in order; log-dets add up.

    ``forward`` runs the layers first to last (data towards latent), ``inverse``
    runs their inverses last to first. Conditioning keywords (``cond=`` for the
    noise flows of variational dequantization, ``y=`` for class labels) go to the
    layers whose method names them or takes ``**kwargs``; the others never see them.
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
            x, ld = layer(x, **_accepted(layer.forward, kwargs))
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = z.new_zeros(z.shape[0], dtype=_logdet_dtype(z))
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z, **_accepted(layer.inverse, kwargs))
            logdet = logdet + ld
        return z, logdet


def _accepted(method, kwargs: dict) -> dict:
    """The part of ``kwargs`` that ``method`` takes."""
    if not kwargs:
        return kwargs
    names, takes_any = _keywords(getattr(method, "__func__", method))
    return kwargs if takes_any else {k: v for k, v in kwargs.items() if k in names}


@functools.cache
def _keywords(function) -> tuple[frozenset, bool]:
    """(keyword names of ``function``, whether it takes ``**kwargs``)."""
    params = inspect.signature(function).parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return names, takes_any


def _logdet_dtype(x: torch.Tensor) -> torch.dtype:
    """Log-dets stay in float32 or float64, even for integer or half inputs."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def sum_except_batch(t: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dimension; half precision is summed in float32."""
    return t.flatten(1).to(_logdet_dtype(t)).sum(1)
