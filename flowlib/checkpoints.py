"""The checkpoint format: write atomically, read safely, rebuild the model.

A checkpoint is a dict that ``torch.load(weights_only=True)`` reads: the model's state
dict, class and constructor config (enough to rebuild it with nothing else), the
optimizer state, the training config, the RNG states of every rank, and the run's
position (step, epoch, wall time, ...). Reading goes through :func:`read_checkpoint`
alone, so every caller gets the same checks and the same :class:`CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models import MODEL_CLASSES, model_name

CHECKPOINT_FORMAT = "flowlib-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, is not a flowlib checkpoint, or does not fit the model."""


def atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
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


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files a run killed while writing ``path`` left behind."""
    for stale in Path(path).parent.glob(f".{Path(path).name}.tmp*"):
        stale.unlink(missing_ok=True)


def rng_state() -> dict:
    """The torch, CUDA, numpy and Python RNG states, in a form ``weights_only`` loading reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    random.setstate(state["python"])


def _nonfinite_parameters(model: nn.Module) -> list[str]:
    return [
        name
        for name, p in model.state_dict().items()
        if p.is_floating_point() and not torch.isfinite(p).all()
    ]


def save_checkpoint(
    path, model: nn.Module, optimizer=None, *, train_config=None, rng: list | None = None, **state
) -> Path:
    """Write a checkpoint atomically and return its path.

    It holds the model's state dict, class and constructor config (so
    :func:`load_checkpoint` can rebuild it with no other information), the optimizer
    state, ``train_config`` (a :class:`~flowlib.train_config.TrainConfig`), the RNG
    states ``rng`` (a list, one per rank; default: this process's) and any ``state``
    (step, epoch, ...). Raises ValueError, writing nothing, if a parameter holds NaN or inf.
    """
    bad = _nonfinite_parameters(model)
    if bad:
        raise ValueError(
            f"Not saving {path}: non-finite values in {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}."
        )
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_name": model_name(model),
        "model_class": type(model).__name__,
        "model_config": dict(model.config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "train_config": dataclasses.asdict(train_config) if train_config is not None else None,
        "rng": rng if rng is not None else [rng_state()],
        "torch_version": str(torch.__version__),
        **state,
    }
    path = Path(path)
    atomic_write(path, lambda f: torch.save(checkpoint, f))
    return path


def checkpoint_path(path) -> Path:
    """``path`` itself, or ``<path>/checkpoints/last.pt`` when ``path`` is a run folder."""
    path = Path(path)
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


def read_checkpoint(path, map_location=None, purpose: str | None = None) -> dict:
    """The raw checkpoint dict, checked to be a flowlib checkpoint.

    ``path`` may be a run folder. Tensors load onto ``map_location`` (default the CPU, so
    a checkpoint written on a GPU opens on a laptop). ``purpose`` names what a missing
    file stops ("Cannot resume: no checkpoint at ..."). Raises :class:`CheckpointError`.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        where = f"checkpoint at {path}."
        raise CheckpointError(f"Cannot {purpose}: no {where}" if purpose else f"No {where}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors come in many types
        raise CheckpointError(
            f"{path} is not a flowlib checkpoint (torch.load could not read "
            f"it safely: {_load_error_reason(err)})."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        bare = (
            isinstance(ckpt, dict)
            and ckpt
            and all(isinstance(v, torch.Tensor) for v in ckpt.values())
        )
        raise CheckpointError(
            f"{path} is not a flowlib checkpoint (no format="
            f"{CHECKPOINT_FORMAT!r} entry)."
            f"{' It looks like a bare state dict.' if bare else ''}"
        )
    return ckpt


def stored_train_config(path, purpose: str = "resume") -> dict:
    """The training config a checkpoint was written with; CheckpointError if it has none."""
    ckpt = read_checkpoint(path, purpose=purpose)
    if not isinstance(ckpt.get("train_config"), dict):
        raise CheckpointError(
            f"{checkpoint_path(path)} holds no training configuration: cannot {purpose}."
        )
    return ckpt["train_config"]


def load_weights(model: nn.Module, state: dict, source) -> None:
    """``model.load_state_dict(state)``, with a CheckpointError naming ``source``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise CheckpointError(
            f"{source}: the stored weights do not fit {type(model).__name__}: "
            f"{' '.join(lines[1:3] or lines)[:300]}"
        ) from None


def load_checkpoint(path, map_location=None, model: str | None = None):
    """Rebuild the model stored in a checkpoint: returns ``(model, checkpoint_dict)``.

    ``path`` is a checkpoint file or a run folder (its ``checkpoints/last.pt``). A run
    trained with ``ema`` comes back with its averaged weights, the ones it evaluated.
    ``model`` (a :data:`~flowlib.models.MODELS` name), when given, must be the stored
    model. Raises :class:`CheckpointError` for a missing file, a file that is not a
    flowlib checkpoint, another model, or a state dict that does not fit.
    """
    path = checkpoint_path(path)
    ckpt = read_checkpoint(path, map_location)
    stored = ckpt.get("model_name")
    if model is not None and model != stored:
        raise CheckpointError(
            f"{path} holds a {stored!r} model ({ckpt.get('model_class')}), not a {model!r} model."
        )
    cls = MODEL_CLASSES.get(ckpt.get("model_class"))
    if cls is None:
        raise CheckpointError(f"{path}: unknown model class {ckpt.get('model_class')!r}.")
    try:
        net = cls(**ckpt["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path}: cannot rebuild {cls.__name__} from its stored config: {err}"
        ) from None
    load_weights(net, ckpt.get("ema_model") or ckpt["model"], f"{path} ({ckpt['model_config']})")
    if map_location is not None:
        net.to(map_location)
    return net, ckpt


def stored_step(path: Path):
    """The step of the checkpoint at ``path``, or "?" if it cannot be read."""
    try:
        return read_checkpoint(path).get("step")
    except CheckpointError:
        return "?"


def _load_error_reason(err: Exception) -> str:
    """The informative part of a torch.load error (the weights-only ones are long)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(
        r"WeightsUnpickler error:\s*(.*?)(?:\. Please use|\s*Check the documentation|$)", text, re.S
    )
    reason = " ".join((found.group(1) if found else text).split())
    return reason[:200] or type(err).__name__
