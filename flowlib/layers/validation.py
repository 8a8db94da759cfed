"""Input checks shared by the layers: clear errors instead of deep torch crashes."""

from __future__ import annotations

import torch


def expect_image_batch(x: torch.Tensor, name: str, channels: int | None = None) -> None:
    """Raise ValueError unless ``x`` is a (batch, channels, height, width) tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 4:
        raise ValueError(
            f"{name}: expected a 4-d tensor (batch, channels, height, width), got shape "
            f"{tuple(x.shape)}. Add a batch dimension with x[None] or a channel "
            f"dimension with x[:, None]."
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name}: expected {channels} channels, got {x.shape[1]} (input shape "
            f"{tuple(x.shape)}). Build the layer for the channel count it will see."
        )


def expect_channels(x: torch.Tensor, name: str, channels: int) -> None:
    """Raise ValueError unless ``x`` has ``channels`` channels in dimension 1."""
    if x.dim() < 2 or x.shape[1] != channels:
        raise ValueError(
            f"{name}: expected input of shape (batch, {channels}, ...), got "
            f"{tuple(x.shape)}. Build the layer for the channel count it will see."
        )
