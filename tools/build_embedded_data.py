"""Build the small datasets embedded in the repository (data/embedded/) from the full ones.

    python tools/build_embedded_data.py --root ../shared/data

MNIST: 5,000 training and 1,000 test digits, drawn at random (seed 0) from the full splits.
CelebA: 1,000 training, 100 validation and 200 test faces from the official partition,
drawn at random (seed 0), center-cropped to 148 and resized to 32x32 exactly as
``flowlib.data.CelebA`` does, stored at 8 bits with their 40 attributes and file names.
The same full data and this script give byte-identical files.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from flowlib.data import MNIST, CelebA
from flowlib.data.embedded import CELEBA_FILE, CELEBA_SIZE, MNIST_FILE, embedded_dir

MNIST_COUNTS = {"train": 5_000, "test": 1_000}
CELEBA_COUNTS = {"train": 1_000, "valid": 100, "test": 200}


def _pick(n_total: int, n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def _save(path: Path, **arrays) -> None:
    """``np.savez_compressed`` with a fixed archive time, so rebuilds are byte-identical."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def build_mnist(root, out: Path) -> None:
    arrays = {}
    for split, n in MNIST_COUNTS.items():
        full = MNIST(root=root, split=split, download=False)
        idx = _pick(len(full), n)
        arrays[f"{split}_images"] = full.images[idx, 0].numpy()
        arrays[f"{split}_labels"] = full.labels[idx].numpy().astype(np.uint8)
    _save(out / MNIST_FILE, **arrays)


def build_celeba(root, out: Path) -> None:
    arrays = {}
    for split, n in CELEBA_COUNTS.items():
        full = CelebA(root=root, split=split, size=CELEBA_SIZE, n_bits=8, cache=False)
        idx = _pick(len(full), n)
        arrays[f"{split}_images"] = full.images[idx].numpy()
        arrays[f"{split}_attributes"] = full.attributes[idx].numpy().astype(np.uint8)
        arrays[f"{split}_filenames"] = np.array([full.filenames[i] for i in idx])
        arrays["attr_names"] = np.array(full.attr_names)
    _save(out / CELEBA_FILE, **arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw/ and celeba/")
    parser.add_argument("--out", default=str(embedded_dir()), help="default: data/embedded/")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    build_mnist(args.root, out)
    build_celeba(args.root, out)
    for name in (MNIST_FILE, CELEBA_FILE):
        print(f"wrote {out / name} ({(out / name).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
