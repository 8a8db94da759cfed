"""Quantisation of integer images to fewer bits per pixel."""

from __future__ import annotations

import numpy as np
import torch

from ..layers.dequantization import check_n_bits


def quantize(x, n_bits: int):
    """Reduce 8-bit integer images (values 0..255) to ``n_bits`` bits (0..2**n_bits - 1).

    Floor division by ``2**(8 - n_bits)``, as in openai/glow. Works on torch tensors
    and numpy arrays of an integer dtype and returns the same type and dtype.
    """
    check_n_bits(n_bits)
    is_float = (
        x.is_floating_point()
        if isinstance(x, torch.Tensor)
        else (np.issubdtype(np.asarray(x).dtype, np.floating))
    )
    if is_float:
        raise ValueError(
            "quantize expects integer images with values 0..255 (for example uint8), got "
            "a floating-point array. Quantise the raw integers before dequantising or "
            "scaling to [0, 1)."
        )
    return x >> (8 - n_bits)
