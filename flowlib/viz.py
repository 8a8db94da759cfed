"""Pictures of images: grids of samples, reconstructions and interpolations, saved as PNG,
drawn with matplotlib or as PNG bytes for an image widget."""
from __future__ import annotations

import io
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
    if isinstance(images, torch.Tensor):
        x = images.detach().cpu().float().numpy()
    else:
        x = np.asarray(images, float)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"make_grid expects images of shape (N, 1 or 3, H, W), got {x.shape}.")
    n, c, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    levels = 2 ** n_bits - 1
    x = np.clip(np.rint(x * (255.0 / levels)), 0, 255).astype(np.uint8)
    shape = (padding + rows * (h + padding), padding + nrow * (w + padding), c)
    grid = np.full(shape, pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = x[i].transpose(1, 2, 0)
    return grid


def _hw(grid: np.ndarray) -> np.ndarray:
    """A grey grid (H, W, 1) as (H, W), what PIL and imshow take; colour stays (H, W, 3)."""
    return grid[:, :, 0] if grid.shape[2] == 1 else grid


def _picture(grid: np.ndarray):
    from PIL import Image

    return Image.fromarray(_hw(grid))


def save_grid(images, path, n_bits: int = 8, nrow: int | None = None) -> Path:
    """Write :func:`make_grid` of ``images`` as a PNG at ``path`` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _picture(make_grid(images, n_bits, nrow)).save(path)
    return path


def show_grid(images, n_bits: int = 8, nrow: int | None = None, title: str | None = None, ax=None,
              zoom: float = 1.0):
    """Draw :func:`make_grid` of ``images`` with matplotlib, without axes; returns the axes.

    Without ``ax`` it opens a figure of 50 grid pixels per inch, times ``zoom``.
    """
    import matplotlib.pyplot as plt

    grid = make_grid(images, n_bits=n_bits, nrow=nrow)
    if ax is None:
        height, width = grid.shape[:2]
        _, ax = plt.subplots(figsize=(zoom * width / 50, zoom * height / 50))
    ax.imshow(_hw(grid), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def grid_png(images, n_bits: int = 8, nrow: int | None = None, zoom: int = 3) -> bytes:
    """PNG bytes of :func:`make_grid` of ``images``, enlarged ``zoom`` times.

    For ``ipywidgets.Image``.
    """
    from PIL import Image

    picture = _picture(make_grid(images, n_bits=n_bits, nrow=nrow))
    picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="png")
    return buffer.getvalue()


def temperature_widget(model, n: int = 25, nrow: int | None = None, seed: int = 0,
                       value: float = 0.7, max_temperature: float = 1.5, zoom: int = 3):
    """A temperature slider over ``n`` samples of ``model``, as an ``ipywidgets.VBox`` to display.

    The latents ``eps`` are drawn once (N(0, I) in each of ``model.latent_shapes``, from
    ``seed``); the slider decodes ``T * eps``, so each sample keeps its place and changes
    smoothly with the temperature T. ``model``: a flowlib model (``decode``, ``n_bits``).
    """
    import ipywidgets as widgets

    g = torch.Generator().manual_seed(seed)
    eps = [torch.randn((n, *shape), generator=g) for shape in model.latent_shapes]
    param = next(model.parameters())

    def render(temperature):
        with torch.no_grad():
            images = model.decode([(temperature * e).to(param.device, param.dtype) for e in eps])
        return grid_png(images, n_bits=model.n_bits, nrow=nrow, zoom=zoom)

    slider = widgets.FloatSlider(value=value, min=0.0, max=max_temperature, step=0.05,
                                 description="temperature", continuous_update=False,
                                 readout_format=".2f")
    image = widgets.Image(value=render(value), format="png")
    slider.observe(lambda change: setattr(image, "value", render(change["new"])), names="value")
    return widgets.VBox([slider, image])
