"""What defines a training run, its defaults, and which settings a resumed run keeps."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import checkpoint_path, stored_train_config
from .data import DATASETS, dataset_info
from .layers.networks_mode import FUSE_AND_RECOMPUTE
from .models import MODELS

PREPROCESS = {"logit": 1e-5, "center": None}  # --preprocess -> Glow's logit_alpha
# Fields that must match between a checkpoint and a run started from its weights (init_from) ...
ARCHITECTURE_FIELDS = ("model", "dataset", "n_bits", "size", "K", "L", "hidden", "preprocess")
# ... and the run that resumes it (same data order too).
IDENTITY_FIELDS = ARCHITECTURE_FIELDS + ("batch_size", "seed")
# Where a run ran, which a run started from its weights does not inherit.
_PLACE_FIELDS = ("out", "data_root", "device", "init_from")


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
    ``load_checkpoint`` use. ``init_from``: a checkpoint whose weights, step count and
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
    bf16: bool | None = None  # None: on for CPUs with bf16 support, off otherwise
    grad_checkpoint: bool = False
    compile: bool = False  # fuse the ConcatELUs with torch.compile
    channels_last: bool | None = None  # None: on for the CPU, off for CUDA
    data_root: str | None = None
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with the dataset defaults filled in; raises ValueError on bad values."""
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}; choose one of {', '.join(MODELS)}.")
        d = dataset_info(self.dataset)
        arch = d.glow if self.model == "glow" else {}
        cfg = dataclasses.replace(
            self,
            n_bits=_default(self.n_bits, d.n_bits),
            size=_default(self.size, d.size),
            K=_default(self.K, arch.get("K")),
            L=_default(self.L, arch.get("L")),
            hidden=_default(self.hidden, arch.get("hidden")),
            preprocess=_default(self.preprocess, arch.get("preprocess")),
            hflip=_default(self.hflip, d.hflip),
            epochs=self.epochs if self.epochs is not None or self.max_steps else d.epochs,
            out=self.out or f"runs/{self.dataset}-{self.model}",
        )
        d.check_size(cfg.size)
        cfg._check()
        return cfg

    def _check(self) -> None:
        if self.model == "glow" and self.preprocess not in PREPROCESS:
            raise ValueError(
                f"preprocess must be one of {', '.join(PREPROCESS)}, got {self.preprocess!r}."
            )
        if self.model != "glow" and self.preprocess not in (None, "logit"):
            raise ValueError(
                f"The {self.model} flow always uses the logit preprocessing; "
                f"--preprocess {self.preprocess} is for Glow only."
            )
        for name in (
            "batch_size",
            "eval_batch_size",
            "init_batch_size",
            "log_every",
            "max_bad_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("eval_every", "sample_every", "checkpoint_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must be >= 0 (0 turns it off), got {getattr(self, name)}."
                )
        if self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError(
                f"lr and grad_clip must be positive, got lr={self.lr}, grad_clip={self.grad_clip}."
            )
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(
                f"ema is the weight average's decay, between 0 (off) and 1 "
                f"(e.g. 0.999), got {self.ema}."
            )
        if self.compile and self.grad_checkpoint:
            raise ValueError(FUSE_AND_RECOMPUTE)
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}.")

    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images of a resolved config."""
        return (DATASETS[self.dataset].channels, self.size, self.size)

    def given(self) -> dict:
        """The fields set to something other than their default."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }


def _default(value, default):
    return default if value is None else value


def run_config(given: dict, resume: bool = False) -> TrainConfig:
    """The config of a run from the settings a user ``given``: on ``resume``, the run's
    stored settings are the defaults; with ``init_from``, the checkpoint's are (less
    where it ran); otherwise the dataset's. The API and the command line both use it."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if resume and given.get("init_from"):
        raise ValueError(
            "--resume continues the run in --out; --init-from starts a new one "
            "from a checkpoint's weights: use one of them."
        )
    if resume:
        base = TrainConfig(**given)
        out = base.out or f"runs/{base.dataset}-{base.model}"
        stored = stored_train_config(run_checkpoint(out), "resume")
        defaults = {k: v for k, v in stored.items() if k in names}
        return TrainConfig(**{**defaults, **given, "out": out})
    if given.get("init_from"):
        stored = stored_train_config(checkpoint_path(given["init_from"]), "start a run from it")
        defaults = {k: v for k, v in stored.items() if k in names and k not in _PLACE_FIELDS}
        return TrainConfig(**{**defaults, **given})
    return TrainConfig(**given)


def run_checkpoint(out) -> Path:
    """``<out>/checkpoints/last.pt``: where a run keeps its checkpoint."""
    return Path(out) / "checkpoints" / "last.pt"
