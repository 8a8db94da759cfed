"""The small MNIST and CelebA subsets shipped in ``data/embedded/``.

flowlib falls back on them when the full data is nowhere to be found and cannot be
downloaded (a fresh clone offline), so the course and the main job always run. Every
dataset object says which data it holds (``.source``), and so do the bpd figures that
training prints: a figure on a subset must never pass for one on the full test set.
``tools/build_embedded_data.py`` rebuilds the files from the full data.
"""

from __future__ import annotations

import sys
from functools import cache

import numpy as np

from . import locate

MNIST_FILE = "mnist_subset.npz"
CELEBA_FILE = "celeba32_subset.npz"
CELEBA_SIZE = 32
_SAID: set[str] = set()


def embedded_dir():
    """``data/embedded/`` of the repository."""
    return locate.repo_data_dir() / "embedded"


def embedded_file(name: str):
    """The embedded file for dataset ``name`` ("MNIST" or "CelebA"), or None if absent."""
    path = embedded_dir() / (MNIST_FILE if name == "MNIST" else CELEBA_FILE)
    return path if path.is_file() else None


@cache
def _arrays(path) -> dict:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def load_split(path, split: str) -> dict:
    """The arrays of ``split`` in the embedded file ``path``, keyed without the split prefix."""
    arrays = _arrays(path)
    prefix = f"{split}_"
    found = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    if not found:
        splits = sorted({k.split("_")[0] for k in arrays if "_" in k} - {"attr"})
        raise ValueError(
            f"The embedded subset {path.name} has no {split!r} split (it has {', '.join(splits)})."
        )
    return {**found, **{k: v for k, v in arrays.items() if k == "attr_names"}}


def describe(name: str, path) -> str:
    """'embedded MNIST subset (5,000 train / 1,000 test images)'."""
    arrays = _arrays(path)
    counts = " / ".join(
        f"{len(v):,} {k.split('_')[0]}" for k, v in arrays.items() if k.endswith("_images")
    )
    return f"embedded {name} subset ({counts} images)"


def test_label(source: str) -> str:
    """How a bpd figure names its test images: the embedded subset is always named."""
    if source.startswith("embedded"):
        return f"test images of the {source}, not the full test set"
    return "test images"


def announce(name: str, path, reason: str) -> None:
    """Say once per process, in one line, that the embedded subset stands in for ``name``."""
    if name in _SAID:
        return
    _SAID.add(name)
    print(
        f"flowlib.data: {reason}; using the {describe(name, path)} from {path}. "
        f"For the full data see data/README.md.",
        file=sys.stderr,
    )
