"""Polyak averaging: an exponential moving average of a model's weights.

openai/glow evaluates with averaged weights: the average sits nearer the bottom of the
valley the optimizer is bouncing around in, so its test bpd is lower than that of the
last step's weights, at no extra training cost. ``flowlib train --ema 0.999`` keeps one,
evaluates and samples with it, and stores it in the checkpoint next to the raw weights
(which ``--resume`` continues from).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class WeightAverage:
    """``avg <- decay * avg + (1 - decay) * weights`` after every optimizer step.

    The average starts at the model's current weights. While few updates are in, the
    decay is lowered to ``(1 + n) / (10 + n)`` (as TensorFlow's ExponentialMovingAverage
    does), so an average started on a fresh model follows it instead of lagging behind.
    """

    def __init__(self, model: nn.Module, decay: float, state: dict | None = None, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(
                f"The averaging decay must lie between 0 and 1 (e.g. 0.999), got {decay}."
            )
        self.model, self.decay, self.updates = model, decay, updates
        self.names, self.params = zip(*[(n, p) for n, p in model.named_parameters()])
        with torch.no_grad():
            if state is None:
                self.average = [p.detach().clone() for p in self.params]
            else:
                missing = [n for n in self.names if n not in state]
                if missing:
                    raise ValueError(
                        f"The stored weight average lacks {', '.join(missing[:3])}: "
                        f"it was not made for this model."
                    )
                self.average = [
                    torch.empty_like(p).copy_(state[n]) for n, p in zip(self.names, self.params)
                ]

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """Inside the block the model holds the averaged weights; the raw ones come back after."""
        # In-place copies on the parameters themselves (not .data) bump their version
        # counters, which is how the 1x1 convolutions know to drop their cached W^-1.
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(list(self.params), self.average)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(list(self.params), raw)

    def state_dict(self) -> dict:
        """The model's whole state dict (buffers included) with the averaged parameters."""
        with self.applied():
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
