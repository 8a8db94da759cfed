"""Where a run stands, and how it gets there: resumed from its checkpoint, or started
from another run's weights; and the learning rate as a function of the step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checkpoints import load_weights, set_rng_state
from .runtime import seed_for
from .train_config import TrainConfig


@dataclass
class RunState:
    """Where a run stands; restored from a checkpoint, or fresh."""

    step: int = 0
    skipped: int = 0
    wall_time: float = 0.0
    test_bpd: float | None = None
    warmup_from: int = 0  # the step the learning-rate warm-up counts from
    resumed: bool = False


@dataclass
class Window:
    """Losses and timings since the last metrics row."""

    loss: float = 0.0
    n: int = 0
    images: int = 0
    time: float = 0.0

    def images_per_s(self) -> float | None:
        return self.images / self.time if self.time > 0 else None

    def train_bpd(self) -> float | None:
        return self.loss / self.n if self.n else None


def lr_at(cfg: TrainConfig, step: int, warmup_from: int = 0) -> float:
    """Adam's learning rate at ``step``: linear warm-up over ``warmup_steps`` steps counted
    from ``warmup_from``, then ``cfg.lr``."""
    if not cfg.warmup_steps:
        return cfg.lr
    return cfg.lr * min(1.0, (step - warmup_from + 1) / cfg.warmup_steps)


def restored(ckpt: dict, model, optimizer, seed: int, rank: int, source) -> RunState:
    """Load the checkpoint being resumed into ``model`` and ``optimizer``, set this rank's
    RNG as it was, and return the run's position."""
    load_weights(model, ckpt["model"], source)
    optimizer.load_state_dict(ckpt["optimizer"])
    step = ckpt["step"]
    warmup_from = ckpt.get("warmup_from")
    if warmup_from is None:  # written before lr_at: its LambdaLR counted from there
        warmup_from = step - ((ckpt.get("scheduler") or {}).get("last_epoch") or step)
    rngs = ckpt.get("rng") or []
    if rank < len(rngs) and rngs[rank] is not None:
        set_rng_state(rngs[rank])
    else:  # e.g. a checkpoint written on Ctrl-C under DDP holds rank 0's RNG only
        torch.manual_seed(seed_for(seed, rank, step))
    return RunState(
        step=step,
        skipped=ckpt.get("skipped_steps", 0),
        wall_time=ckpt.get("wall_time", 0.0),
        test_bpd=ckpt.get("test_bpd"),
        warmup_from=warmup_from,
        resumed=True,
    )


def started_from(init: dict, model, cfg: TrainConfig, rank: int, total_steps: int) -> RunState:
    """A new run from ``init``'s weights, step count and wall time (a fresh warm-up)."""
    load_weights(model, init["model"], cfg.init_from)
    step, wall_time = init.get("step") or 0, init.get("wall_time") or 0.0
    if step >= total_steps:
        raise ValueError(
            f"{cfg.init_from} is at step {step:,}, and this run would stop at step "
            f"{total_steps:,}: the step count continues from the checkpoint, so ask "
            f"for more --max-steps or --epochs."
        )
    torch.manual_seed(seed_for(cfg.seed, rank, step))
    return RunState(step=step, wall_time=wall_time, warmup_from=step)
