"""MNIST from its IDX files (plain or gzip), downloaded with torchvision on request."""

from __future__ import annotations

import gzip
import os
import socket
import struct
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import Dataset

from ..layers.dequantization import check_n_bits
from . import locate
from .bits import quantize
from .embedded import announce, describe, embedded_file, load_split
from .locate import DataNotFoundError, _how_to_get, find_data_root

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path, expected_magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (the MNIST format), plain or gzip-compressed.

    Checks the magic number (2051 for images, 2049 for labels when
    ``expected_magic`` is given) and that the file length matches its header.

    Raises:
        ValueError: naming the file and what is wrong, for truncated or corrupt files.
    """
    path = Path(path)
    redownload = "Delete it and download it again."
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"{path}: cannot decompress ({err}): the file is truncated or corrupt. {redownload}"
        ) from err
    if len(data) < 4:
        raise ValueError(
            f"{path}: only {len(data)} bytes, too short for an IDX header. {redownload}"
        )
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">I", data[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: magic number {magic}, expected {expected_magic} "
            f"({'images' if expected_magic == 2051 else 'labels'}). This is not the right "
            f"IDX file (or it is an error page saved by a failed download). {redownload}"
        )
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise ValueError(
            f"{path}: magic number {magic} is not an unsigned-byte IDX header. {redownload}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: {len(data)} bytes, too short for its {header}-byte header. {redownload}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(
            f"{path}: file is {kind}: header says shape {shape}, so expected {expected} "
            f"bytes, but it has {len(data)} bytes. {redownload}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _idx_file(raw: Path, name: str) -> Path:
    for candidate in (raw / name, raw / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"MNIST folder {raw} has neither {name} nor {name}.gz. " + _how_to_get("MNIST")
    )


def _download_mnist(root, error: DataNotFoundError) -> Path:
    """Download MNIST with torchvision (which checks its files' MD5 sums) into the first
    explicit place (``root``, then ``$FLOWLIB_DATA``), else the repository's ``data/``.
    Returns that folder."""
    target = next(
        (p for _, p, _ in locate._candidates(root) if p is not None), locate.repo_data_dir()
    )
    print(
        f"flowlib.data: downloading MNIST with torchvision into {target / 'MNIST' / 'raw'} ...",
        file=sys.stderr,
    )
    try:
        import torchvision.datasets

        # fetches all four files into target/MNIST/raw (train=False: loads the small split)
        torchvision.datasets.MNIST(str(target), train=False, download=True)
    except Exception as err:  # network errors come as URLError, RuntimeError, OSError...
        raise DataNotFoundError(
            f"{error}\nDownloading MNIST with torchvision into {target} failed too: "
            f"{type(err).__name__}: {err}"
        ) from err
    return target


def _mirror_reachable(timeout: float = 5.0) -> bool:
    """Whether torchvision's first MNIST mirror answers; False with FLOWLIB_OFFLINE=1."""
    if os.environ.get("FLOWLIB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        import torchvision.datasets

        host = urlparse(torchvision.datasets.MNIST.mirrors[0]).hostname
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except (OSError, ImportError, AttributeError, IndexError):
        return False


def _find_or_fetch(root, download: bool | None) -> Path | None:
    """The folder holding MNIST/raw/, downloading it if allowed; None: use the embedded subset.

    ``download`` True: download when not found, else fail. None (the default): download when
    nothing was named explicitly and the mirror answers, else fall back. False: never.
    """
    try:
        return find_data_root(root, need="MNIST")
    except DataNotFoundError as err:
        if download:
            return _download_mnist(root, err)
        if locate.named_explicitly(root):
            raise
        if download is None and _mirror_reachable():
            try:
                return _download_mnist(root, err)
            except DataNotFoundError as failed:
                print(f"flowlib.data: {str(failed).splitlines()[-1]}", file=sys.stderr)
        if embedded_file("MNIST") is None:
            raise
        return None


def _read_split(root, split: str, download) -> tuple[np.ndarray, np.ndarray, Path, str]:
    """(images (N, 28, 28), labels (N,), where they came from, a description of the data)."""
    folder = _find_or_fetch(root, download)
    if folder is None:
        path = embedded_file("MNIST")
        announce("MNIST", path, "no MNIST files found and none could be downloaded")
        arrays = load_split(path, split)
        return arrays["images"], arrays["labels"], path, describe("MNIST", path)
    raw = folder / "MNIST" / "raw"
    image_name, label_name = _MNIST_FILES[split]
    images = read_idx(_idx_file(raw, image_name), expected_magic=2051)
    labels = read_idx(_idx_file(raw, label_name), expected_magic=2049)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{raw}: {image_name} has shape {images.shape} but {label_name} has shape "
            f"{labels.shape}; expected (N, 28, 28) images and N labels. Re-download both."
        )
    return images, labels, folder, f"MNIST ({raw})"


class MNIST(Dataset):
    """The MNIST digits as ``(image, label)``: image a ``torch.uint8`` tensor of shape
    ``(1, 28, 28)`` (``(1, 32, 32)`` with ``pad_to_32``) holding ``0..2**n_bits - 1``.

    The whole split lives in ``.images`` (N, 1, H, W uint8, already quantised) and
    ``.labels`` (N, long), so training code can slice batches without a DataLoader.

    Args:
        root: folder containing ``MNIST/raw/``; see ``find_data_root``.
        split: "train" (60,000 images) or "test" (10,000).
        n_bits: bits per pixel to keep, 1..8.
        pad_to_32: zero-pad by 2 pixels on each side (for models that halve the size
            several times).
        download: when no local copy is found, True downloads with torchvision into
            ``root``, else ``$FLOWLIB_DATA``, else the repository's ``data/``; None (the
            default) does so only when no place was named and the mirror answers; False
            never does. Where nothing is found or fetched, the embedded subset of
            ``data/embedded/`` stands in, and ``.source`` says so.

    Attributes:
        images, labels, split, n_bits, root (a folder, or the embedded file), source.
    """

    def __init__(
        self,
        root=None,
        split: str = "train",
        n_bits: int = 8,
        pad_to_32: bool = False,
        download: bool | None = None,
    ):
        if split not in _MNIST_FILES:
            raise ValueError(f"MNIST split must be one of {list(_MNIST_FILES)}, got {split!r}.")
        check_n_bits(n_bits)
        images, labels, self.root, self.source = _read_split(root, split, download)
        images = torch.from_numpy(quantize(images, n_bits)).unsqueeze(1)
        if pad_to_32:
            images = torch.nn.functional.pad(images, (2, 2, 2, 2))
        self.split, self.n_bits = split, n_bits
        self.images: torch.Tensor = images
        self.labels: torch.Tensor = torch.from_numpy(labels).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])

    def __repr__(self) -> str:
        return (
            f"MNIST(split={self.split!r}, n={len(self)}, n_bits={self.n_bits}, "
            f"shape={tuple(self.images.shape[1:])}, root={str(self.root)!r})"
        )
