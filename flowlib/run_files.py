"""The files of a run folder besides checkpoints: config.json and metrics.csv."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from .checkpoints import atomic_write

METRICS_FIELDS = [
    "step",
    "epoch",
    "train_bpd",
    "test_bpd",
    "lr",
    "images_per_s",
    "skipped_steps",
    "grad_norm",
    "wall_time",
]


def write_config(out: Path, config) -> None:
    """``<out>/config.json``: the resolved training config."""
    text = json.dumps(dataclasses.asdict(config), indent=2).encode()
    atomic_write(out / "config.json", lambda f: f.write(text))


def prepare_metrics(path: Path, resume_step: int | None) -> None:
    """Start metrics.csv, or on resume drop the rows written after the checkpoint."""
    rows = []
    if resume_step is not None and path.exists():
        with open(path, newline="") as f:
            rows = [
                r
                for r in csv.DictReader(f)
                if r.get("step", "").isdigit() and int(r["step"]) <= resume_step
            ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, METRICS_FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in METRICS_FIELDS} for r in rows)


def write_metrics(path: Path, row: dict) -> None:
    """Append one row to metrics.csv (floats to 6 significant digits)."""
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, METRICS_FIELDS).writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        )
