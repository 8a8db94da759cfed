"""Shared scaffolding of the tests: seeded random inputs, the tiny training run.

Perturbing zero-initialised layers is ``flowlib.checks.perturb_``, which the notebooks use too.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from flowlib.train_config import TrainConfig

# A Glow of ~1k parameters on real MNIST that trains at hundreds of steps per second.
TINY_RUN = dict(
    model="glow",
    dataset="mnist",
    K=1,
    L=1,
    hidden=8,
    batch_size=16,
    max_steps=10,
    lr=1e-3,
    warmup_steps=5,
    eval_every=0,
    eval_images=64,
    final_eval_images=64,
    sample_every=0,
    checkpoint_every=0,
    log_every=5,
    init_batch_size=32,
    progress=False,
)
# The same run as `flowlib train` options (length, folder and data are the test's).
TINY_ARGS = (
    "--K 1 --L 1 --hidden 8 --batch-size 16 --warmup-steps 5 --eval-every 0 "
    "--final-eval-images 64 --sample-every 0 --no-progress"
).split()


REPO = Path(__file__).resolve().parent.parent


def course_env() -> dict[str, str]:
    """The environment for the course's subprocesses: FLOWLIB_DATA as CI sets it, the
    ../shared/data next to the checkout (unless FLOWLIB_NO_SHARED_DATA=1, as on a fresh
    clone, where only data/embedded/ is there)."""
    env = dict(os.environ)
    shared = REPO.parent / "shared" / "data"
    if "FLOWLIB_DATA" not in env and not env.get("FLOWLIB_NO_SHARED_DATA"):
        if (shared / "MNIST").is_dir():
            env["FLOWLIB_DATA"] = str(shared)
    return env


def tiny(out, data_root, **kw) -> TrainConfig:
    """:data:`TINY_RUN` in the folder ``out`` on the data in ``data_root``; ``kw`` override."""
    return TrainConfig(**{**TINY_RUN, "out": str(out), "data_root": str(data_root), **kw})


def randn(*shape, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
