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
* **Exact resume.** Checkpoints hold the model, optimizer, scheduler, step, and the
  torch / CUDA / numpy / Python RNG states (of every rank at periodic checkpoints).
  Evaluation and sampling run under a forked, fixed-seed RNG, so how often they run
  never changes the training trajectory. Resuming N/2 + N/2 steps gives the same
  parameters as N steps in one go (single process, same device and thread count).
* **Checkpoints** are written atomically (temporary file + ``os.replace``): ``kill -9``
  at any moment leaves the previous checkpoint intact. A checkpoint whose parameters
  hold NaN/inf is never written.
* **Ctrl-C / SIGTERM** stops at the end of the current step, saves a checkpoint and
  returns with ``result.interrupted = True`` (the CLI exits with code 130). A second
  Ctrl-C aborts at once.
* **Non-finite losses** (or gradient norms) skip the optimizer step; they are counted in
  ``skipped_steps``. More than ``max_bad_steps`` in a row raise :class:`TrainingDiverged`,
  naming the last good checkpoint (which is kept as it was).
* **Weight averaging.** With ``ema`` (e.g. 0.999) an exponential moving average of the
  weights is kept, as openai/glow does; evaluations and samples use it, checkpoints
  store it next to the raw weights (``ema_model``), and :func:`load_checkpoint` returns
  it. ``--resume`` continues from the raw weights and the stored average.
* **Starting from a checkpoint.** ``init_from`` (``--init-from``) starts a new run from
  the weights of another run's checkpoint or of a shipped one (and its average, if it
  stored one), continuing its step count, wall time and data order, with a fresh
  optimizer and learning-rate warm-up: how a run continues across machines that only
  keep the shipped checkpoint, which holds no optimizer state.
* **Devices.** CUDA when available, else the CPU; ``device`` overrides. ``bf16`` runs the
  forward pass under bfloat16 autocast (CUDA only); the loss is summed in float32.
* **torchrun.** With ``WORLD_SIZE`` in the environment, the process group is initialised
  (nccl on CUDA, gloo on CPU), ActNorm is initialised on every rank (its statistics are
  averaged over ranks) before the model is wrapped in DistributedDataParallel, and only
  rank 0 writes files. Test hook: with ``FLOWLIB_DEBUG_PARAM_DUMP=1`` every rank saves
  its state dict after ActNorm's init (``<out>/debug/rank<r>_init.pt``) and at the end
  (``<out>/debug/rank<r>.pt``); tests/test_ddp.py compares them.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import inspect
import json
import math
import os
import platform
import random
import re
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .averaging import WeightAverage
from .metrics import evaluate_bpd
from .models import Glow, MultiscaleFlow, SimpleFlow
from .viz import save_grid

CHECKPOINT_FORMAT = "flowlib-checkpoint"
CHECKPOINT_VERSION = 1

# name -> (class, fixed constructor arguments)
MODELS = {
    "simple": (SimpleFlow, {"vardeq": False}),
    "vardeq": (SimpleFlow, {"vardeq": True}),
    "multiscale": (MultiscaleFlow, {}),
    "glow": (Glow, {}),
}
MODEL_CLASSES = {cls.__name__: cls for cls, _ in MODELS.values()}

# Per-dataset defaults (``glow`` holds the Glow-only ones).
# MNIST Glow: K=4, L=2, width 64 (2 epochs: 7 min 19 s and 1.417 test bpd on the 2-core
# CPU) with the logit preprocessing, which learns MNIST's flat black background far
# faster than Glow's centring: 1.87 test bpd after 200 steps, against 5.03 centred.
# CelebA follows Glow's 5-bit 32x32 setting (centred) with a CPU-sized width (GPU: --hidden 512).
DATASETS = {
    "mnist": dict(channels=1, n_bits=8, size=28, epochs=2, hflip=False, glow=dict(K=4, L=2, hidden=64, preprocess="logit")),
    "celeba": dict(channels=3, n_bits=5, size=32, epochs=10, hflip=True, glow=dict(K=8, L=3, hidden=128, preprocess="center")),
}
PREPROCESS = {"logit": 1e-5, "center": None}  # --preprocess -> Glow's logit_alpha
TEST_SPLIT = {"mnist": "test", "celeba": "test"}
# Fields that must match between a checkpoint and a run started from its weights (init_from) ...
ARCHITECTURE_FIELDS = ("model", "dataset", "n_bits", "size", "K", "L", "hidden", "preprocess")
# ... and the run that resumes it (same data order too).
IDENTITY_FIELDS = ARCHITECTURE_FIELDS + ("batch_size", "seed")


class CheckpointError(ValueError):
    """A checkpoint is missing, is not a flowlib checkpoint, or does not fit the model."""


class TrainingDiverged(RuntimeError):
    """Too many non-finite losses in a row; the message names the last good checkpoint."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``None`` means "the dataset's default".

    Architecture: ``model`` ("simple", "vardeq", "multiscale", "glow"); ``K``, ``L``
    and ``preprocess`` (Glow only: "logit", or "center" as in openai/glow) and
    ``hidden`` (coupling width). Data: ``dataset`` ("mnist", "celeba"),
    ``n_bits``, ``size`` (MNIST: 28, or 32 = zero-padded), ``data_root``; ``hflip``
    mirrors each training image with probability 1/2 (CelebA's default: faces are
    left-right symmetric, digits are not).
    Length: ``max_steps`` if set, else ``epochs``. Optimisation: Adam(``lr``) with a
    linear warm-up over ``warmup_steps``, gradient norm clipped to ``grad_clip``; ``ema``
    (e.g. 0.999; 0 turns it off) keeps a Polyak average of the weights
    (:class:`~flowlib.averaging.WeightAverage`) that evaluations, samples and
    :func:`load_checkpoint` use. ``init_from``: a checkpoint whose weights, step count and
    wall time a new run starts from (with a fresh optimizer).
    Evaluation every ``eval_every`` steps on ``eval_images`` test images (a fixed random
    subset; 0 turns it off), and at the end on ``final_eval_images`` (None: the whole test
    set). Samples: ``n_samples`` images at ``temperature`` every ``sample_every``
    steps from latents fixed by ``sample_seed``. Checkpoint every ``checkpoint_every``
    steps and at the end.
    """

    model: str = "glow"
    dataset: str = "mnist"
    out: str | None = None
    n_bits: int | None = None
    size: int | None = None
    K: int | None = None
    L: int | None = None
    hidden: int | None = None
    preprocess: str | None = None
    hflip: bool | None = None
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    grad_clip: float = 50.0
    ema: float = 0.0
    init_from: str | None = None
    epochs: float | None = None
    max_steps: int | None = None
    eval_every: int = 500
    eval_images: int = 1000
    final_eval_images: int | None = None  # None: the whole test set; 0: no final evaluation
    eval_batch_size: int = 256
    sample_every: int = 1000
    n_samples: int = 64
    temperature: float = 0.7
    sample_seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    init_batch_size: int = 256
    max_bad_steps: int = 20
    seed: int = 0
    device: str | None = None
    bf16: bool = False
    channels_last: bool | None = None  # None: on for the CPU (~+15% there), off for CUDA
    data_root: str | None = None
    progress: bool = True

    def resolved(self) -> "TrainConfig":
        """A copy with the dataset defaults filled in; raises ValueError on bad values."""
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}.")
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}; choose one of {', '.join(MODELS)}.")
        d = DATASETS[self.dataset]
        arch = d["glow"] if self.model == "glow" else {}
        cfg = dataclasses.replace(
            self,
            n_bits=self.n_bits if self.n_bits is not None else d["n_bits"],
            size=self.size if self.size is not None else d["size"],
            K=self.K if self.K is not None else arch.get("K"),
            L=self.L if self.L is not None else arch.get("L"),
            hidden=self.hidden if self.hidden is not None else arch.get("hidden"),
            preprocess=self.preprocess if self.preprocess is not None else arch.get("preprocess"),
            hflip=self.hflip if self.hflip is not None else d["hflip"],
            epochs=self.epochs if self.epochs is not None or self.max_steps else d["epochs"],
            out=self.out or f"runs/{self.dataset}-{self.model}",
        )
        if cfg.model == "glow" and cfg.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {cfg.preprocess!r}.")
        if cfg.model != "glow" and cfg.preprocess not in (None, "logit"):
            raise ValueError(f"The {cfg.model} flow always uses the logit preprocessing; "
                             f"--preprocess {cfg.preprocess} is for Glow only.")
        if cfg.dataset == "mnist" and cfg.size not in (28, 32):
            raise ValueError(f"MNIST images are 28x28 (or 32x32 zero-padded): --size must be 28 or 32, got {cfg.size}.")
        for name in ("batch_size", "eval_batch_size", "init_batch_size", "log_every", "max_bad_steps"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}.")
        for name in ("eval_every", "sample_every", "checkpoint_every", "warmup_steps"):
            if getattr(cfg, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns it off), got {getattr(cfg, name)}.")
        if cfg.lr <= 0 or cfg.grad_clip <= 0:
            raise ValueError(f"lr and grad_clip must be positive, got lr={cfg.lr}, grad_clip={cfg.grad_clip}.")
        if not 0.0 <= cfg.ema < 1.0:
            raise ValueError(f"ema is the weight average's decay, between 0 (off) and 1 (e.g. 0.999), got {cfg.ema}.")
        if cfg.max_steps is not None and cfg.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {cfg.max_steps}.")
        return cfg

    def image_shape(self) -> tuple[int, int, int]:
        cfg = self.resolved()
        return (DATASETS[cfg.dataset]["channels"], cfg.size, cfg.size)


@dataclass
class TrainResult:
    """What :func:`train` returns (rank 0's view under DDP)."""

    out: Path
    checkpoint: Path | None
    step: int
    epoch: int
    train_bpd: float | None
    test_bpd: float | None
    skipped_steps: int
    images_per_s: float | None
    interrupted: bool = False


# --------------------------------------------------------------------------- models


def build_model(name: str, dataset_shape, **overrides) -> nn.Module:
    """Build model ``name`` ("simple", "vardeq", "multiscale", "glow") for images of
    shape ``dataset_shape`` (C, H, W). ``overrides`` go to the model's constructor
    (``None`` values are ignored): e.g. ``K``, ``L``, ``hidden``, ``n_bits``. For
    "multiscale" an int ``hidden`` means the widths ``(h, 3h/2, 2h)`` of its levels.

    The model gets a ``config`` dict (its full constructor arguments) when its class
    does not set one, so :func:`save_checkpoint` can record how to rebuild it.
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    cls, fixed = MODELS[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if cls is MultiscaleFlow and isinstance(overrides.get("hidden"), int):
        h = overrides["hidden"]
        overrides["hidden"] = (h, 3 * h // 2, 2 * h)
    accepted = [p for p in inspect.signature(cls).parameters if p != "image_shape" and p not in fixed]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(f"Model {name!r} takes no {', '.join(unknown)} (it takes {', '.join(accepted)}).")
    kwargs = {"image_shape": tuple(int(s) for s in dataset_shape), **fixed, **overrides}
    model = cls(**kwargs)
    if not isinstance(getattr(model, "config", None), dict):
        bound = inspect.signature(cls).bind(**kwargs)
        bound.apply_defaults()
        model.config = dict(bound.arguments)
    return model


def model_name(model: nn.Module) -> str:
    """The :data:`MODELS` name of a built model ("glow", "simple", ...)."""
    config = getattr(model, "config", None) or {}
    for name, (cls, fixed) in MODELS.items():
        if type(model) is cls and all(config.get(k, getattr(model, k, v)) == v for k, v in fixed.items()):
            return name
    if isinstance(model, SimpleFlow):  # built without config: tell vardeq by its layer
        return "vardeq" if hasattr(model.dequantize.dequant, "flow") else "simple"
    raise ValueError(f"{type(model).__name__} is not one of flowlib's models ({', '.join(MODELS)}).")


# --------------------------------------------------------------------------- checkpoints


def _atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def rng_state() -> dict:
    """The torch, CUDA, numpy and Python RNG states, in a form ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(state["python"])


def _nonfinite_parameters(model: nn.Module) -> list[str]:
    return [name for name, p in model.state_dict().items()
            if p.is_floating_point() and not torch.isfinite(p).all()]


def save_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, *,
                    train_config: TrainConfig | None = None, rng: list | None = None, **state) -> Path:
    """Write a checkpoint atomically and return its path.

    It holds the model's state dict, class and constructor config (so
    :func:`load_checkpoint` can rebuild it with no other information), the optimizer
    and scheduler states, the :class:`TrainConfig`, the RNG states ``rng`` (a list, one
    per rank; default: this process's) and any ``state`` (step, epoch, ...).
    Raises ValueError, writing nothing, if a parameter holds NaN or inf.
    """
    bad = _nonfinite_parameters(model)
    if bad:
        raise ValueError(f"Not saving {path}: non-finite values in {', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}.")
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise ValueError(f"{type(model).__name__} has no .config: build it with flowlib.train.build_model.")
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_name": model_name(model),
        "model_class": type(model).__name__,
        "model_config": dict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "train_config": asdict(train_config) if train_config is not None else None,
        "rng": rng if rng is not None else [rng_state()],
        "torch_version": str(torch.__version__),
        **state,
    }
    path = Path(path)
    _atomic_write(path, lambda f: torch.save(checkpoint, f))
    return path


def checkpoint_path(path) -> Path:
    """``path`` itself, or ``<path>/checkpoints/last.pt`` when ``path`` is a run folder."""
    path = Path(path)
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


def read_checkpoint(path, map_location=None) -> dict:
    """The raw checkpoint dict (``torch.load(weights_only=True)``), checked to be a flowlib
    checkpoint. ``path`` may be a run folder. Tensors load onto ``map_location`` (default
    the CPU, so a checkpoint written on a GPU opens on a laptop). Raises :class:`CheckpointError`."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors come in many types
        raise CheckpointError(f"{path} is not a flowlib checkpoint (torch.load could not read it "
                              f"safely: {_load_error_reason(err)}).") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        hint = " It looks like a bare state dict." if isinstance(ckpt, dict) and ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()) else ""
        raise CheckpointError(f"{path} is not a flowlib checkpoint (no format={CHECKPOINT_FORMAT!r} entry).{hint}")
    return ckpt


def load_checkpoint(path, map_location=None, model: str | None = None):
    """Rebuild the model stored in a checkpoint: returns ``(model, checkpoint_dict)``.

    ``path`` is a checkpoint file or a run folder (its ``checkpoints/last.pt``). A run
    trained with ``ema`` comes back with its averaged weights, the ones it evaluated.
    ``model`` (a :data:`MODELS` name), when given, must be the stored model.
    Raises :class:`CheckpointError` for a missing file, a file that is not a flowlib
    checkpoint, another model, or a state dict that does not fit.
    """
    path = checkpoint_path(path)
    ckpt = read_checkpoint(path, map_location)
    stored = ckpt.get("model_name")
    if model is not None and model != stored:
        raise CheckpointError(f"{path} holds a {stored!r} model ({ckpt.get('model_class')}), "
                              f"not a {model!r} model.")
    cls = MODEL_CLASSES.get(ckpt.get("model_class"))
    if cls is None:
        raise CheckpointError(f"{path}: unknown model class {ckpt.get('model_class')!r}.")
    try:
        net = cls(**ckpt["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot rebuild {cls.__name__} from its stored config: {err}") from None
    if not isinstance(getattr(net, "config", None), dict):
        net.config = dict(ckpt["model_config"])
    try:
        net.load_state_dict(ckpt.get("ema_model") or ckpt["model"])
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise CheckpointError(f"{path}: the stored weights do not fit {cls.__name__}"
                              f"({ckpt['model_config']}): {' '.join(lines[1:3])[:300]}") from None
    if map_location is not None:
        net.to(map_location)
    return net, ckpt


def _load_error_reason(err: Exception) -> str:
    """The informative part of a torch.load error (the weights-only ones are long)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\. Please use|\s*Check the documentation|$)", text, re.S)
    reason = " ".join((found.group(1) if found else text).split())
    return reason[:200] or type(err).__name__


# --------------------------------------------------------------------------- data


def load_images(cfg: TrainConfig, split: str) -> torch.Tensor:
    """The (N, C, H, W) uint8 images of ``split`` for a resolved config."""
    from .data import load_dataset

    kw = dict(n_bits=cfg.n_bits)
    if cfg.dataset == "mnist":
        kw["pad_to_32"] = cfg.size == 32
    else:
        kw["size"] = cfg.size
    return load_dataset(cfg.dataset, split, root=cfg.data_root, **kw).images


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image of ``x`` (N, C, H, W) left-right with probability 1/2.

    Draws from torch's global RNG, which checkpoints store, so a resumed run stays exact.
    """
    flip = torch.rand(len(x)) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


class ShardedBatches:
    """Deterministic shuffled batches of indices for one rank.

    Epoch ``e`` uses ``randperm(n)`` seeded by ``(seed, e)``; rank ``r`` of ``world``
    takes every ``world``-th index; the last partial batch is dropped. Step ``s`` is
    batch ``s % per_epoch`` of epoch ``s // per_epoch``, so the step is the sampler
    position.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_epoch = (n // world) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"batch_size {batch_size} x {world} process(es) is larger than the "
                             f"training set ({n} images).")
        self._epoch, self._perm = None, None

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.per_epoch)

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = self.position(step)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)[self.rank::self.world]
            self._epoch = epoch
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]


# --------------------------------------------------------------------------- helpers


def compute_loss(objective: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean bits per dimension of the batch ``x`` (the training loss), in float32."""
    return objective(x).float()


class _Objective(nn.Module):
    """``x -> mean bpd``: the module DDP wraps, so gradients sync in ``backward``."""

    def __init__(self, flow: nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow.bpd(x).float().mean()


class _Distributed:
    """Rank, world size and device; initialises torch.distributed under torchrun."""

    def __init__(self, device: str | None):
        self.enabled = "WORLD_SIZE" in os.environ and "RANK" in os.environ
        self.rank = int(os.environ.get("RANK", 0)) if self.enabled else 0
        self.world = int(os.environ.get("WORLD_SIZE", 1)) if self.enabled else 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0)) if self.enabled else 0
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"--device {device}: CUDA is not available here (use --device cpu).")
            index = self.local_rank if self.enabled else (dev.index if dev.index is not None
                                                          else torch.cuda.current_device())
            dev = torch.device("cuda", index)
            torch.cuda.set_device(dev)
        self.device = dev
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class _StopFlag:
    """SIGINT/SIGTERM set a flag checked between steps; a second SIGINT aborts at once."""

    def __init__(self):
        self.stop, self._old = False, {}

    def _handle(self, signum, frame):
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave the handlers alone
            pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stdout)
    sys.stdout.flush()


def _device_description(device: torch.device, world: int) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}), {world} process(es)"
    return f"cpu ({torch.get_num_threads()} threads), {world} process(es)"


@contextlib.contextmanager
def _fixed_rng(device: torch.device, seed: int):
    """Run a block with a fixed seed, leaving the global RNG streams as they were."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


METRICS_FIELDS = ["step", "epoch", "train_bpd", "test_bpd", "lr", "images_per_s", "skipped_steps",
                  "grad_norm", "wall_time"]


def _prepare_metrics(path: Path, resume_step: int | None) -> None:
    """Start metrics.csv, or on resume drop the rows written after the checkpoint."""
    rows = []
    if resume_step is not None and path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, METRICS_FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in METRICS_FIELDS} for r in rows)


def _write_metrics(path: Path, row: dict) -> None:
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, METRICS_FIELDS).writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


# --------------------------------------------------------------------------- train


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; see the module docstring.

    ``resume=True`` continues from ``<out>/checkpoints/last.pt``: the architecture
    fields (:data:`IDENTITY_FIELDS`) must match the checkpoint; others (length,
    intervals, lr, device) may change. A new run with ``init_from`` starts from that
    checkpoint's weights (:data:`ARCHITECTURE_FIELDS` must match; ignored on resume). Raises ValueError / CheckpointError /
    DataNotFoundError on bad input and :class:`TrainingDiverged` on divergence.
    """
    cfg = config.resolved()
    if cfg.bf16 and not ((cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")):
        raise ValueError("--bf16 needs CUDA: bfloat16 autocast is only used on GPUs, and this run is on the CPU.")
    out = Path(cfg.out)
    ckpt_file = out / "checkpoints" / "last.pt"
    if not resume and ckpt_file.exists():
        raise ValueError(f"{out} already holds a run ({ckpt_file}); pass --resume to continue it "
                         f"or choose another --out.")
    ckpt = init = None
    if resume:
        if not ckpt_file.exists():
            raise CheckpointError(f"Cannot resume: no checkpoint at {ckpt_file}.")
        ckpt = _read_fitting_checkpoint(ckpt_file, cfg, IDENTITY_FIELDS)
        if ckpt.get("optimizer") is None:
            raise CheckpointError(f"{ckpt_file} holds no optimizer state (a shipped checkpoint?), so it cannot be "
                                  f"resumed exactly: start a new run from its weights with --init-from {ckpt_file}.")
    elif cfg.init_from:
        init = _read_fitting_checkpoint(cfg.init_from, cfg, ARCHITECTURE_FIELDS)
    shape = (DATASETS[cfg.dataset]["channels"], cfg.size, cfg.size)
    # Build once before touching data or processes, so bad sizes/levels fail fast.
    torch.manual_seed(cfg.seed)
    arch = dict(K=cfg.K, L=cfg.L, hidden=cfg.hidden)
    if cfg.model == "glow":
        arch["logit_alpha"] = PREPROCESS[cfg.preprocess]
    model = build_model(cfg.model, shape, n_bits=cfg.n_bits, **arch)
    dd = _Distributed(cfg.device)
    try:
        return _train(cfg, model, dd, out, ckpt_file, ckpt, init)
    finally:
        dd.close()


def _read_fitting_checkpoint(path, cfg: TrainConfig, fields) -> dict:
    """The checkpoint at ``path``; CheckpointError unless its ``fields`` match ``cfg``'s."""
    ckpt = read_checkpoint(path, map_location="cpu")
    stored = dict(ckpt.get("train_config") or {}, model=ckpt.get("model_name"))
    diff = [f"{k}={stored.get(k)!r} (this run asks for {getattr(cfg, k)!r})" for k in fields
            if k in stored and stored[k] != getattr(cfg, k)]
    if diff:
        raise CheckpointError(f"{checkpoint_path(path)} does not fit this run: it was trained with {', '.join(diff)}.")
    return ckpt


def _load_weights(model: nn.Module, state: dict, source) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: the stored weights do not fit the model: "
                              f"{' '.join(str(err).split())[:300]}") from None


def _train(cfg: TrainConfig, model: nn.Module, dd: _Distributed, out: Path, ckpt_file: Path,
           ckpt: dict | None, init: dict | None) -> TrainResult:
    resume = ckpt is not None
    device, main = dd.device, dd.main
    log = _log if main else (lambda msg: None)

    # Data (rank 0 first, so a dataset cache is written once).
    if dd.enabled and not main:
        dist.barrier()
    train_images = load_images(cfg, "train")
    test_images = None
    if main:  # shuffled once with a fixed seed: periodic evaluations use a fair fixed subset
        test_images = load_images(cfg, TEST_SPLIT[cfg.dataset])  # (MNIST's first 5,000 are easier)
        test_images = test_images[torch.randperm(len(test_images), generator=torch.Generator().manual_seed(0))]
    if dd.enabled and main:
        dist.barrier()
    batches = ShardedBatches(len(train_images), cfg.batch_size, cfg.seed, dd.rank, dd.world)
    total_steps = cfg.max_steps if cfg.max_steps is not None else math.ceil(cfg.epochs * batches.per_epoch)

    use_cl = cfg.channels_last if cfg.channels_last is not None else device.type == "cpu"
    memory_format = torch.channels_last if use_cl else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    warmup = cfg.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)

    step, skipped, wall_time, last_test = 0, 0, 0.0, None
    if resume:
        if main:  # temporary files of a run killed while writing
            for stale in ckpt_file.parent.glob(f".{ckpt_file.name}.tmp*"):
                stale.unlink(missing_ok=True)
        _load_weights(model, ckpt["model"], ckpt_file)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        # This run's lr wins over the stored one (e.g. lowered after a divergence).
        scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
        for group in optimizer.param_groups:
            group["initial_lr"], group["lr"] = cfg.lr, cfg.lr * scheduler.lr_lambdas[0](scheduler.last_epoch)
        step, skipped = ckpt["step"], ckpt.get("skipped_steps", 0)
        wall_time, last_test = ckpt.get("wall_time", 0.0), ckpt.get("test_bpd")
        rngs = ckpt.get("rng") or []
        if dd.rank < len(rngs) and rngs[dd.rank] is not None:
            set_rng_state(rngs[dd.rank])
        else:  # e.g. a checkpoint written on Ctrl-C under DDP holds rank 0's RNG only
            torch.manual_seed(cfg.seed * 1_000_003 + 7919 * dd.rank + step)
    elif init is not None:  # its weights, step and wall time; this run's fresh optimizer
        _load_weights(model, init["model"], cfg.init_from)
        step, wall_time = init.get("step") or 0, init.get("wall_time") or 0.0
        if step >= total_steps:
            raise ValueError(f"{cfg.init_from} is at step {step:,}, and this run would stop at step {total_steps:,}: "
                             f"the step count continues from the checkpoint, so ask for more --max-steps or --epochs.")
        torch.manual_seed(cfg.seed * 1_000_003 + 7919 * dd.rank + step)
    else:
        torch.manual_seed(cfg.seed * 1_000_003 + 7919 * dd.rank + 1)  # per-rank dequantization noise
        # ActNorm's data-dependent init, on every rank before DDP (stats all-reduced inside).
        g = torch.Generator().manual_seed(cfg.seed + 104729 * dd.rank)
        init_idx = torch.randperm(len(train_images), generator=g)[:cfg.init_batch_size]
        with torch.no_grad():
            model.log_prob(train_images[init_idx].to(device).contiguous(memory_format=memory_format))
        _debug_dump(model, out, f"rank{dd.rank}_init")
    model.train()
    # Polyak averaging, continuing a stored average; without one it starts from the weights.
    average, start = None, ckpt if resume else init
    if cfg.ema:
        state = start.get("ema_model") if start else None
        average = WeightAverage(model, cfg.ema, state, start.get("ema_updates", 0) if state else 0)
    if resume:
        ckpt.clear()  # free the memory
    averaged = average.applied if average else contextlib.nullcontext

    objective: nn.Module = _Objective(model)
    if dd.enabled:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "config.json", lambda f: f.write(json.dumps(asdict(cfg), indent=2).encode()))
        _prepare_metrics(out / "metrics.csv", step if resume else None)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"flowlib train: {cfg.model} on {cfg.dataset} {tuple(model.image_shape)} {cfg.n_bits}-bit, {n_params:,} parameters, "
        f"device {_device_description(device, dd.world)}{', channels_last' if use_cl else ''}"
        f"{', bf16 autocast' if cfg.bf16 else ''}"
        f"{f', evaluated with weights averaged at decay {cfg.ema}' if average else ''}; "
        f"{'resuming at' if resume else 'starting at'} step {step} of {total_steps} "
        f"{f'from the weights of {cfg.init_from} ' if init is not None else ''}"
        f"({batches.per_epoch} steps per epoch); run folder {out}")

    def evaluate(n_images):
        with _fixed_rng(device, cfg.seed + 12345), averaged():
            return evaluate_bpd(model, test_images, cfg.eval_batch_size, 1, max_images=n_images)

    def write_samples(at_step):
        with _fixed_rng(device, cfg.sample_seed), averaged():
            model.eval()
            try:
                images = model.sample(cfg.n_samples, cfg.temperature,
                                      generator=torch.Generator().manual_seed(cfg.sample_seed))
            finally:
                model.train()
        save_grid(images, out / "samples" / f"step_{at_step:06d}.png", cfg.n_bits,
                  nrow=max(1, int(math.sqrt(cfg.n_samples))))

    hardware = f"{_device_description(device, dd.world)}, {platform.processor() or platform.machine()}"

    def save(at_step, all_ranks=True):
        """Checkpoint (rank 0 writes). ``all_ranks``: gather every rank's RNG state (collective)."""
        rngs = [rng_state()]
        if dd.enabled and all_ranks:
            rngs = [None] * dd.world
            dist.all_gather_object(rngs, rng_state())
        if not main:
            return None
        try:
            return save_checkpoint(
                ckpt_file, model, optimizer, scheduler, train_config=cfg, rng=rngs, step=at_step,
                epoch=batches.position(at_step)[0], batch_in_epoch=batches.position(at_step)[1],
                skipped_steps=skipped, wall_time=wall_time, test_bpd=last_test, hardware=hardware,
                ema_model=average.state_dict() if average else None,
                ema_updates=average.updates if average else 0)
        except ValueError as err:
            log(f"{err} Last good checkpoint kept: {ckpt_file if ckpt_file.exists() else 'none'}.")
            return None

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=not (main and cfg.progress), unit="step",
               dynamic_ncols=True, file=sys.stderr)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()
    params = [p for p in model.parameters() if p.requires_grad]
    window = dict(loss=0.0, n=0, images=0, time=0.0)
    ema = img_s = train_bpd = norm_value = None
    bad_in_row, interrupted = 0, False

    if main and not resume and cfg.eval_every:
        last_test = evaluate(cfg.eval_images)
        _write_metrics(out / "metrics.csv", dict(step=step, epoch=batches.position(step)[0], test_bpd=last_test,
                                                 lr=scheduler.get_last_lr()[0], skipped_steps=0, wall_time=wall_time))
        log(f"step {step}: test bpd {last_test:.4f} ({min(cfg.eval_images, len(test_images))} test images)")

    with _StopFlag() as stop:
        t_last = time.perf_counter()
        while step < total_steps:
            x = train_images[batches.indices(step)]
            if cfg.hflip:
                x = random_hflip(x)
            x = x.to(device, non_blocking=True)
            x = x.contiguous(memory_format=memory_format)
            with autocast:
                loss = compute_loss(objective, x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # also when non-finite: under DDP every rank must join the all-reduce
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            # One sync per step; under DDP the ranks agree on the loss, the skip and the stop.
            stats = torch.stack([loss.detach().float(), norm.float(), torch.tensor(float(stop.stop), device=device)])
            if dd.enabled:
                dist.all_reduce(stats)
                stats[:2] /= dd.world
            loss_value, norm_value, stop_requested = stats.tolist()
            if math.isfinite(loss_value) and math.isfinite(norm_value):
                optimizer.step()
                if average:
                    average.update()
                bad_in_row = 0
                window["loss"] += loss_value
                window["n"] += 1
                ema = loss_value if ema is None else 0.98 * ema + 0.02 * loss_value
            else:
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                bad_in_row += 1
                log(f"step {step + 1}: non-finite loss {loss_value} (grad norm {norm_value}): step skipped "
                    f"({bad_in_row} in a row, {skipped} in all)")
                if bad_in_row > cfg.max_bad_steps:
                    good = f"{ckpt_file} (step {_stored_step(ckpt_file)})" if ckpt_file.exists() else "none was saved yet"
                    bar.close()
                    raise TrainingDiverged(
                        f"Stopped at step {step + 1}: {bad_in_row} non-finite losses in a row (limit "
                        f"max_bad_steps={cfg.max_bad_steps}). Last good checkpoint: {good}. Lower the "
                        f"learning rate or lengthen the warm-up, then resume from it.")
            scheduler.step()
            step += 1
            window["images"] += len(x) * dd.world
            dt = time.perf_counter() - t_last
            wall_time += dt
            window["time"] += dt
            bar.update(1)

            last = step == total_steps
            n_eval = (cfg.final_eval_images if last else
                      cfg.eval_images if cfg.eval_every and step % cfg.eval_every == 0 else 0)
            do_eval = main and n_eval != 0
            if do_eval:
                last_test = evaluate(n_eval)
            if main and (step % cfg.log_every == 0 or do_eval or last):
                img_s = window["images"] / window["time"] if window["time"] > 0 else None
                train_bpd = window["loss"] / window["n"] if window["n"] else None
                _write_metrics(out / "metrics.csv", dict(
                    step=step, epoch=batches.position(step - 1)[0], train_bpd=train_bpd,
                    test_bpd=last_test if do_eval else "", lr=scheduler.get_last_lr()[0], images_per_s=img_s,
                    skipped_steps=skipped, grad_norm=norm_value, wall_time=wall_time))
                window.update(loss=0.0, n=0, images=0, time=0.0)
            if main and (step % 10 == 0 or do_eval):
                bar.set_postfix(bpd=f"{ema:.3f}" if ema is not None else "nan",
                                test=f"{last_test:.3f}" if last_test is not None else "-",
                                img_s=f"{img_s:.0f}" if img_s else "-", refresh=False)
            if do_eval:
                n_test = len(test_images) if n_eval is None else min(n_eval, len(test_images))
                log(f"step {step}: {'final ' if last else ''}test bpd {last_test:.4f} ({n_test} test images), "
                    f"train bpd {ema if ema is not None else float('nan'):.4f}, {skipped} skipped step(s), "
                    f"{wall_time:.0f} s of training")
            if main and cfg.sample_every and step % cfg.sample_every == 0 and not last:
                write_samples(step)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not last and not bad_in_row:
                save(step)  # never in a run of non-finite losses: "last good" means after a good step
            if stop_requested and not last:
                interrupted = True
                break
            t_last = time.perf_counter()  # evaluation, samples and checkpoints do not count as training time
    bar.close()

    if interrupted:
        path = save(step)
        log(f"Interrupted at step {step}: checkpoint saved to {path}. Continue with --resume.")
    else:
        if main and cfg.sample_every:
            write_samples(step)
        path = save(step)
    _debug_dump(model, out, f"rank{dd.rank}")
    return TrainResult(out=out, checkpoint=path, step=step, epoch=batches.position(max(step - 1, 0))[0],
                       train_bpd=train_bpd, test_bpd=last_test, skipped_steps=skipped,
                       images_per_s=img_s, interrupted=interrupted)


def _debug_dump(model: nn.Module, out: Path, name: str) -> None:
    """Test hook: with FLOWLIB_DEBUG_PARAM_DUMP=1 save the state dict to <out>/debug/<name>.pt."""
    if os.environ.get("FLOWLIB_DEBUG_PARAM_DUMP") not in (None, "", "0"):
        (out / "debug").mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "debug" / f"{name}.pt")


def _stored_step(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("step")
    except Exception:
        return "?"
