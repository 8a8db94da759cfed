"""One description per dataset: its images, its splits and its training defaults.

Training, the command line and the shipped checkpoints all read :data:`DATASETS`, so a
new dataset is one entry here (and a loader class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from .celeba import CelebA
from .mnist import MNIST


@dataclass(frozen=True)
class DatasetInfo:
    """What flowlib knows of a dataset.

    ``load(root, split, n_bits, size)`` builds the dataset; ``sizes`` are the image
    sizes it can give (empty: any); ``epochs``, ``hflip`` and ``glow`` (K, L, hidden,
    preprocess) are the defaults of ``flowlib train``.
    """

    name: str
    title: str
    channels: int
    n_bits: int
    size: int
    train_split: str
    test_split: str
    load: Callable[..., Dataset]
    sizes: tuple[int, ...] = ()
    epochs: float = 10
    hflip: bool = False
    glow: dict = field(default_factory=dict)

    def check_size(self, size: int) -> None:
        """Raise ValueError unless this dataset can give images of ``size``."""
        if self.sizes and size not in self.sizes:
            allowed = " or ".join(str(s) for s in self.sizes)
            raise ValueError(
                f"{self.title} images come at size {allowed} here (--size), got {size}."
            )

    def split(self, split: str, n_bits: int, size: int, root=None) -> Dataset:
        """The dataset of ``split`` at ``n_bits`` and ``size``; ``.images`` is (N, C, S, S)
        uint8, ``.source`` says which data it is (full, or the embedded subset)."""
        self.check_size(size)
        return self.load(root=root, split=split, n_bits=n_bits, size=size)

    def images(self, split: str, n_bits: int, size: int, root=None) -> torch.Tensor:
        """The (N, C, size, size) uint8 images of ``split`` at ``n_bits``."""
        return self.split(split, n_bits, size, root).images


def _mnist(root, split, n_bits, size):
    return MNIST(root=root, split=split, n_bits=n_bits, pad_to_32=size == 32)


def _celeba(root, split, n_bits, size):
    return CelebA(root=root, split=split, n_bits=n_bits, size=size)


DATASETS = {
    # 28x28, or 32x32 zero-padded for models that halve the size three times
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        channels=1,
        n_bits=8,
        size=28,
        sizes=(28, 32),
        train_split="train",
        test_split="test",
        load=_mnist,
        epochs=2,
        hflip=False,
        glow=dict(K=4, L=2, hidden=64, preprocess="logit"),
    ),
    # Glow's 5-bit setting at 32x32, centred, with a CPU-sized width (GPU: --hidden 512);
    # faces are left-right symmetric, so training mirrors them at random
    "celeba": DatasetInfo(
        name="celeba",
        title="CelebA",
        channels=3,
        n_bits=5,
        size=32,
        train_split="train",
        test_split="test",
        load=_celeba,
        epochs=10,
        hflip=True,
        glow=dict(K=8, L=3, hidden=128, preprocess="center"),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The :data:`DATASETS` entry of ``name`` (any case); ValueError naming the choices."""
    key = name.lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[key]


def load_dataset(name: str, split: str, root=None, **kw) -> Dataset:
    """``MNIST`` or ``CelebA`` by name ("mnist" or "celeba", any case); ``kw`` go to
    the dataset class (n_bits, pad_to_32, size, ...)."""
    return {"mnist": MNIST, "celeba": CelebA}[dataset_info(name).name](root=root, split=split, **kw)
