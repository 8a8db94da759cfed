"""Small helpers for the tests: seeded random inputs.

Perturbing zero-initialised layers is ``flowlib.checks.perturb_``, which the notebooks use too."""

from __future__ import annotations

import torch


def randn(*shape, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
