"""Training loop for the image flows: one process, or several under torchrun (DDP).

Plain functions, no framework::

    from flowlib.train import TrainConfig, train
    result = train(TrainConfig(model="glow", dataset="mnist", out="runs/mnist-glow"))
    result = train(TrainConfig(out="runs/mnist-glow", max_steps=20000), resume=True)
    result = train(TrainConfig(model="multiscale", out="runs/more", max_steps=20000, lr=1e-4,
                               init_from="data/pretrained/mnist_multiscale.pt"))

A run folder holds ``config.json`` (the resolved :class:`TrainConfig`), ``metrics.csv``
(one row every ``log_every`` steps and at every evaluation), ``samples/step_XXXXXX.png``
(always from the same latents, so the grids show the model improving) and
``checkpoints/last.pt``.

Behaviour worth knowing:

* **Steps and data order.** ``step`` counts batches. Each process draws ``batch_size``
  images per step (DDP: the effective batch is ``batch_size * world_size``) from a
  permutation seeded by ``seed`` and the epoch, sharded over ranks, last partial batch
  dropped. The position in the data is therefore a function of ``step``, and a resumed
  run sees exactly the batches the uninterrupted run would have seen.
* **Settings of a resumed run.** On ``resume`` the run's stored settings are the
  defaults of every field the caller leaves at its default; with ``init_from`` the
  checkpoint's are (less where it ran). The command line follows the same rule
  (:func:`~flowlib.train_config.run_config`).
* **Exact resume.** Checkpoints hold the model, optimizer, step, and the torch / CUDA /
  numpy / Python RNG states (of every rank at periodic checkpoints); the learning rate
  is a function of the step (:func:`lr_at`). Evaluation and sampling run under a
  forked, fixed-seed RNG, so how often they run never changes the training trajectory.
  Resuming N/2 + N/2 steps gives the same parameters as N steps in one go (single
  process, same device and thread count).
* **Checkpoints** are written atomically: ``kill -9`` at any moment leaves the previous
  checkpoint intact. A checkpoint whose parameters hold NaN/inf is never written.
* **Ctrl-C / SIGTERM** stops at the end of the current step, saves a checkpoint and
  returns with ``result.interrupted = True`` (the CLI exits with code 130). A second
  Ctrl-C aborts at once.
* **Non-finite losses** (or gradient norms) skip the optimizer step; they are counted in
  ``skipped_steps``. More than ``max_bad_steps`` in a row raise :class:`TrainingDiverged`,
  naming the last good checkpoint (which is kept as it was).
* **Weight averaging.** With ``ema`` (e.g. 0.999) an exponential moving average of the
  weights is kept, as openai/glow does; evaluations and samples use it, checkpoints
  store it next to the raw weights (``ema_model``), and ``load_checkpoint`` returns
  it. ``--resume`` continues from the raw weights and the stored average.
* **Starting from a checkpoint.** ``init_from`` (``--init-from``) starts a new run from
  the weights of another run's checkpoint or of a shipped one (and its average, if it
  stored one), continuing its step count, wall time and data order, with a fresh
  optimizer and learning-rate warm-up: how a run continues across machines that only
  keep the shipped checkpoint, which holds no optimizer state.
* **Devices and precision.** CUDA when available, else the CPU; ``device`` overrides.
  ``bf16`` runs the coupling networks in bfloat16 (on by default on CPUs with AMX or
  AVX512-BF16, off elsewhere unless asked for); everything else, log-dets and loss
  included, stays in float32, and evaluation and sampling run in full precision.
  ``grad_checkpoint`` recomputes the coupling networks in the backward pass instead of
  keeping their activations (less memory, more time). ``compile`` fuses the UvA flows'
  ConcatELUs with ``torch.compile`` during training steps (evaluation stays eager).
* **torchrun.** With ``WORLD_SIZE`` in the environment, the process group is initialised
  (nccl on CUDA, gloo on CPU), ActNorm is initialised on every rank (its statistics are
  averaged over ranks) before the model is wrapped in DistributedDataParallel, and only
  rank 0 writes files. Test hook: with ``FLOWLIB_DEBUG_PARAM_DUMP=1`` every rank saves
  its state dict after ActNorm's init (``<out>/debug/rank<r>_init.pt``) and at the end
  (``<out>/debug/rank<r>.pt``); tests/test_ddp.py compares them.
"""

from __future__ import annotations

import torch

from .checkpoints import CheckpointError, load_checkpoint, read_checkpoint
from .models import build_model
from .run_state import lr_at
from .runtime import Distributed
from .train_config import (
    ARCHITECTURE_FIELDS,
    IDENTITY_FIELDS,
    PREPROCESS,
    TrainConfig,
    run_checkpoint,
    run_config,
)
from .training_run import TrainingDiverged, TrainingRun, TrainResult, compute_loss

__all__ = [
    "CheckpointError",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "compute_loss",
    "load_checkpoint",
    "lr_at",
    "run_training",
    "train",
]


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; see the module docstring.

    ``resume=True`` continues from ``<out>/checkpoints/last.pt``: the architecture
    fields (:data:`~flowlib.train_config.IDENTITY_FIELDS`) must match the checkpoint;
    others (length, intervals, lr, device) may change. A new run with ``init_from``
    starts from that checkpoint's weights (:data:`~flowlib.train_config.ARCHITECTURE_FIELDS`
    must match). Raises ValueError / CheckpointError / DataNotFoundError on bad input
    and :class:`TrainingDiverged` on divergence.
    """
    return run_training(run_config(config.given(), resume), resume)


def run_training(config: TrainConfig, resume: bool = False) -> TrainResult:
    """:func:`train` with exactly ``config``: its fields are not merged with stored ones
    (the command line merges them itself, with the options the user typed)."""
    cfg = config.resolved()
    start = _starting_point(cfg, resume)
    torch.manual_seed(cfg.seed)  # build before touching data or processes: bad sizes fail fast
    model = build_model(
        cfg.model,
        cfg.image_shape(),
        n_bits=cfg.n_bits,
        K=cfg.K,
        L=cfg.L,
        hidden=cfg.hidden,
        **_preprocessing(cfg),
    )
    dd = Distributed(cfg.device)
    try:
        return TrainingRun(cfg, model, dd, resume, start).run()
    finally:
        dd.close()


def _preprocessing(cfg: TrainConfig) -> dict:
    return {"logit_alpha": PREPROCESS[cfg.preprocess]} if cfg.model == "glow" else {}


def _starting_point(cfg: TrainConfig, resume: bool) -> dict | None:
    """The checkpoint a run continues (resume) or starts from (init_from), checked to fit."""
    ckpt_file = run_checkpoint(cfg.out)
    if resume:
        ckpt = _fitting_checkpoint(ckpt_file, cfg, IDENTITY_FIELDS)
        if ckpt.get("optimizer") is None:
            raise CheckpointError(
                f"{ckpt_file} holds no optimizer state (a shipped checkpoint?), "
                f"so it cannot be resumed exactly: start a new run from its "
                f"weights with --init-from {ckpt_file}."
            )
        return ckpt
    if ckpt_file.exists():
        raise ValueError(
            f"{cfg.out} already holds a run ({ckpt_file}); pass --resume to "
            f"continue it or choose another --out."
        )
    return _fitting_checkpoint(cfg.init_from, cfg, ARCHITECTURE_FIELDS) if cfg.init_from else None


def _fitting_checkpoint(path, cfg: TrainConfig, fields) -> dict:
    """The checkpoint at ``path``; CheckpointError unless its ``fields`` match ``cfg``'s."""
    ckpt = read_checkpoint(path)
    stored = dict(ckpt.get("train_config") or {}, model=ckpt.get("model_name"))
    diff = [
        f"{k}={stored.get(k)!r} (this run asks for {getattr(cfg, k)!r})"
        for k in fields
        if k in stored and stored[k] != getattr(cfg, k)
    ]
    if diff:
        raise CheckpointError(
            f"{path} does not fit this run: it was trained with {', '.join(diff)}."
        )
    return ckpt
