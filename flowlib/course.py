"""Small helpers the course notebooks share."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch


def fast_mode() -> bool:
    """True in CI (FLOWLIB_FAST=1) and during nbgrader grading (NBGRADER_EXECUTION set).

    Fast mode only shortens training; it never changes what a check asserts.
    """
    return os.environ.get("FLOWLIB_FAST", "") not in ("", "0") or bool(
        os.environ.get("NBGRADER_EXECUTION")
    )


def device(verbose: bool = True) -> torch.device:
    """CUDA when available, else the CPU; says which."""
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if verbose:
        name = (
            torch.cuda.get_device_name(dev)
            if dev.type == "cuda"
            else f"CPU ({torch.get_num_threads()} threads)"
        )
        print(f"Using {dev.type}: {name}" + (" (fast mode)" if fast_mode() else ""))
    return dev


@contextmanager
def needs(*exercises: str):
    """Turn an unfinished exercise's NotImplementedError into a message naming it.

    >>> with needs("Exercise 2.1 (dequantize)"):
    ...     z = dequantize(x)
    """
    try:
        yield
    except NotImplementedError:
        names = " and ".join(exercises)
        verb = "is" if len(exercises) == 1 else "are"
        raise NotImplementedError(
            f"This cell uses {names}, which {verb} not finished yet (or not run). Complete "
            f"{'it' if len(exercises) == 1 else 'them'} above, run the cells and their test "
            f"cells, then run this cell again."
        ) from None


def passed(what: str) -> None:
    """The line a visible test cell prints when all its checks pass."""
    print(f"✓ {what}: all visible checks passed.")
