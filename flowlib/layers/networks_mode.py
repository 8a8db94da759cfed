"""How the coupling networks run: in bfloat16 where the hardware has it, recomputed in the
backward pass to save memory, and with their ConcatELUs fused by ``torch.compile``.

Only the networks inside the coupling layers change. Their inputs and outputs stay in the
flow's dtype, so log-dets, priors, ActNorm statistics, the 1x1 convolutions' LU algebra
and the loss are computed in float32 as before. Training turns the modes on for its own
steps; evaluation, sampling and ``decode(encode(x))`` run outside them, in full precision.

    with coupling_networks(dtype=torch.bfloat16, fuse=True):  # or recompute=True, not both
        loss = model.bpd(x).mean()
    loss.backward()
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_MODE: ContextVar[tuple[torch.dtype | None, bool, bool]] = ContextVar(
    "coupling_networks", default=(None, False, False)
)


FUSE_AND_RECOMPUTE = (
    "--compile and --grad-checkpoint cannot be used together: gradient checkpointing "
    "cannot recompute the compiled ConcatELUs as they first ran. Use one of them "
    "(--no-compile turns off a stored --compile)."
)


@contextlib.contextmanager
def coupling_networks(
    dtype: torch.dtype | None = None, recompute: bool = False, fuse: bool = False
):
    """Within the block, coupling networks run under autocast to ``dtype`` (None: the
    flow's own dtype); with ``recompute`` they keep no activations for the backward pass
    (gradient checkpointing: they run again during ``backward``); with ``fuse`` their
    ConcatELUs run as one compiled kernel each way (``torch.compile``)."""
    if fuse and recompute:
        raise ValueError(FUSE_AND_RECOMPUTE)
    token = _MODE.set((dtype, recompute, fuse))
    try:
        yield
    finally:
        _MODE.reset(token)


def run_network(net: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``net(h)`` in the current mode, returned in ``h``'s dtype."""
    dtype, recompute, _ = _MODE.get()
    if dtype is None and not recompute:
        return net(h)

    def call(h: torch.Tensor) -> torch.Tensor:
        with torch.autocast(h.device.type, dtype=dtype or h.dtype, enabled=dtype is not None):
            return net(h).to(h.dtype)

    if recompute and torch.is_grad_enabled():
        return checkpoint(call, h, use_reentrant=False)
    return call(h)


def fusing() -> bool:
    """Whether ConcatELUs run fused (``coupling_networks(fuse=True)``)."""
    return _MODE.get()[2]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX512-BF16)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without these queries: assume not
        return False
