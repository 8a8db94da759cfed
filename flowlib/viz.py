"""Pictures of images: grids of samples, reconstructions and interpolations."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def make_grid(images, n_bits: int = 8, nrow: int | None = None, padding: int = 2,
              pad_value: int = 128) -> np.ndarray:
    """Tile integer images into one ``uint8`` picture of shape (H, W, C), C = 1 or 3.

    ``images``: (N, C, H, W) tensor or array of integer values in ``0..2**n_bits - 1``
    (uint8, long or integer-valued floats). They are scaled to 0..255, laid out
    ``nrow`` per row (default: a square-ish grid) with ``padding`` pixels of gray
    ``pad_value`` between them (gray stays visible on MNIST's black background).
    """
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, float)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"make_grid expects images of shape (N, 1 or 3, H, W), got {x.shape}.")
    n, c, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    levels = 2 ** n_bits - 1
    x = np.clip(np.rint(x * (255.0 / levels)), 0, 255).astype(np.uint8)
    grid = np.full((padding + rows * (h + padding), padding + nrow * (w + padding), c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = x[i].transpose(1, 2, 0)
    return grid


def save_grid(images, path, n_bits: int = 8, nrow: int | None = None) -> Path:
    """Write :func:`make_grid` of ``images`` as a PNG at ``path`` (folders are created)."""
    from PIL import Image

    grid = make_grid(images, n_bits, nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(path)
    return path
