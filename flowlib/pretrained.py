"""The course's pretrained checkpoints in ``data/pretrained/``: load, export, re-evaluate.

    model, info = load_pretrained("mnist_glow")      # one call; info says how it was made

A shipped checkpoint is a flowlib checkpoint without optimizer state, plus a
``pretrained`` record: the command, commit and data that made it, steps, wall time,
hardware, its test bpd (8 importance samples, whole test set) and its bpd on a small
fixed subset, which :func:`check` recomputes as a regression test (CI does).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

from .checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from .data import dataset_info, repo_data_dir
from .metrics import evaluate_bpd
from .runtime import resolve_device
from .train_config import TrainConfig

SUBSET_IMAGES = 500  # the regression subset: the first 500 test images
SUBSET_SEED = 0  # seeds the dequantization noise of every evaluation
# name -> what it is (the README's results table follows this order)
CATALOGUE = {
    "mnist_simple": "UvA simple flow (8 couplings, uniform dequantization)",
    "mnist_vardeq": "UvA simple flow with variational dequantization",
    "mnist_multiscale": "UvA multi-scale flow",
    "mnist_glow": "Glow",
    "celeba32_glow": "Glow, CelebA 32x32, 5 bits",
}


def pretrained_dir() -> Path:
    return repo_data_dir() / "pretrained"


def pretrained_path(name: str) -> Path:
    """``data/pretrained/<name>.pt``; ``name`` must be one of :data:`CATALOGUE`."""
    if name not in CATALOGUE:
        raise ValueError(
            f"Unknown pretrained model {name!r}; the course's are: {', '.join(CATALOGUE)}."
        )
    return pretrained_dir() / f"{name}.pt"


def available() -> list[str]:
    """The names in :data:`CATALOGUE` whose checkpoint is present."""
    return [name for name in CATALOGUE if pretrained_path(name).is_file()]


def load_pretrained(name: str, map_location=None):
    """``(model in eval mode, its pretrained record)``; FileNotFoundError if not shipped."""
    path = pretrained_path(name)
    if not path.is_file():
        have = ", ".join(available()) or "none"
        raise FileNotFoundError(
            f"No pretrained checkpoint {path} (present: {have}). Train one with "
            f"`flowlib train` and export it with flowlib.pretrained.export."
        )
    model, ckpt = load_checkpoint(path, map_location=map_location)
    return model.eval(), ckpt.get("pretrained") or {}


def test_set(ckpt: dict, data_root=None):
    """The test split of the dataset a checkpoint was trained on, at its bits and size
    (``.images``; ``.source`` says whether it is the full test set or the embedded subset)."""
    dataset = (ckpt.get("train_config") or {}).get("dataset")
    if dataset is None:
        raise ValueError(
            "This checkpoint does not say which dataset it was trained on "
            "(no train_config): evaluate it with flowlib.metrics.evaluate_bpd."
        )
    config = ckpt["model_config"]
    info = dataset_info(dataset)
    return info.split(info.test_split, config["n_bits"], config["image_shape"][-1], data_root)


def _full_test_images(ckpt: dict, data_root, what: str) -> torch.Tensor:
    """The full test set's images; ValueError where only the embedded subset is found."""
    found = test_set(ckpt, data_root)
    if found.source.startswith("embedded"):  # its bpd is not the full test set's
        raise ValueError(
            f"{what} needs the full test set, and only the {found.source} was found: "
            f"get the full data (data/README.md) and pass --data-root or set FLOWLIB_DATA."
        )
    return found.images


def evaluate(
    model, images: torch.Tensor, importance_samples: int = 8, max_images: int | None = None
) -> float:
    """Test bpd with fixed dequantization noise (seed :data:`SUBSET_SEED`): re-checkable."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SUBSET_SEED)
        return evaluate_bpd(
            model, images, batch_size=100, n_samples=importance_samples, max_images=max_images
        )


def export(
    run,
    name: str,
    command: str,
    data: str,
    hardware: str | None = None,
    importance_samples: int = 8,
    data_root=None,
    commit: str | None = None,
    device=None,
    out_dir=None,
    log=print,
) -> Path:
    """Evaluate a run's last checkpoint and write it to ``data/pretrained/<name>.pt``
    (or to ``out_dir/<name>.pt``, to look at before shipping).

    ``command``: the exact training command(s); ``data``: which data it saw; ``commit``:
    the code's git commit (default: this checkout's HEAD, "unknown" without git);
    ``device``: where the whole test set is evaluated (default: the CPU). The regression
    subset is always evaluated on the CPU, where :func:`check` re-evaluates it.
    """
    model, ckpt = load_checkpoint(run, map_location="cpu")
    images = _full_test_images(ckpt, data_root, "Shipping a checkpoint")
    where = resolve_device(device or "cpu")
    log(
        f"{name}: evaluating on {len(images)} test images with {importance_samples} "
        f"importance samples on {where} ..."
    )
    full = evaluate(model.to(where), images, importance_samples)
    model.cpu()
    subset = evaluate(model, images, importance_samples, max_images=SUBSET_IMAGES)
    train_config = dict(ckpt.get("train_config") or {}, data_root=None, out=None)
    record = dict(
        name=name,
        description=CATALOGUE[name],
        command=command,
        commit=commit or _git_commit(),
        data=data,
        steps=ckpt.get("step"),
        epochs=ckpt.get("epoch"),
        wall_time_s=round(ckpt.get("wall_time") or 0.0),
        hardware=hardware or ckpt.get("hardware") or _this_machine(),
        test_images=len(images),
        evaluated_on=torch.cuda.get_device_name(where) if where.type == "cuda" else "cpu",
        importance_samples=importance_samples,
        test_bpd=full,
        subset_images=min(SUBSET_IMAGES, len(images)),
        subset_bpd=subset,
    )
    target = pretrained_path(name)
    path = save_checkpoint(
        Path(out_dir) / target.name if out_dir else target,
        model,
        train_config=TrainConfig(**train_config),
        step=ckpt.get("step"),
        wall_time=ckpt.get("wall_time"),
        pretrained=record,
    )
    log(
        f"{name}: test bpd {full:.4f} (subset {subset:.4f}); wrote {path} "
        f"({path.stat().st_size / 1e6:.1f} MB)"
    )
    return path


def check(names=None, data_root=None, full: bool = False, log=print) -> list[dict]:
    """Re-evaluate shipped checkpoints (their subset, or the whole test set with ``full``).

    Returns one row per checkpoint: name, recorded and measured bpd, and their difference.
    """
    rows = []
    for name in names or available():
        model, record = load_pretrained(name)
        ckpt = read_checkpoint(pretrained_path(name))
        images = _full_test_images(ckpt, data_root, f"Re-checking {name}'s recorded bpd")
        n = None if full else record["subset_images"]
        measured = evaluate(model, images, record["importance_samples"], max_images=n)
        recorded = record["test_bpd"] if full else record["subset_bpd"]
        rows.append(
            dict(
                name=name,
                images=n or len(images),
                recorded=recorded,
                measured=measured,
                difference=measured - recorded,
                record=record,
            )
        )
        log(
            f"{name}: {measured:.4f} bpd on {n or len(images)} test images "
            f"(recorded {recorded:.4f})"
        )
    return rows


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _this_machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
