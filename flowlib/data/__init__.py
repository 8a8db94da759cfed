"""MNIST and CelebA as integer image tensors, quantised to ``n_bits``.

Every dataset here holds its whole split in memory as a ``torch.uint8`` tensor of
shape ``(N, C, H, W)`` with integer values ``0 .. 2**n_bits - 1``. Dequantisation
(adding uniform or learned noise and scaling to [0, 1)) belongs to the model, not
to the data: see ``flowlib.layers``.

Where the data is found, in this order (see ``find_data_root``):

1. the ``root`` argument,
2. the environment variable ``FLOWLIB_DATA``,
3. the repository's ``data/`` folder (next to the ``flowlib`` package),
4. for MNIST only, and only with ``download=True``: a torchvision download.

A ``root`` is the folder that *contains* ``MNIST/raw/`` and/or ``celeba/``, the
same layout torchvision uses. ``data/README.md`` says how to get both datasets.
:data:`DATASETS` describes each dataset once (channels, bits, sizes, splits,
training defaults).

Example::

    from flowlib.data import MNIST, CelebA
    train = MNIST(split="train", n_bits=8)
    x = train.images[:64]                    # (64, 1, 28, 28) uint8, no DataLoader needed
    faces = CelebA(split="valid", size=32, n_bits=5)
    img, attrs = faces[0]                    # (3, 32, 32) uint8, (40,) long of 0/1
"""

from __future__ import annotations

from .bits import quantize
from .celeba import CelebA
from .datasets import DATASETS, DatasetInfo, dataset_info, load_dataset
from .locate import DataNotFoundError, DataWarning, default_cache_dir, find_data_root, repo_data_dir
from .mnist import MNIST, read_idx

__all__ = [
    "DATASETS",
    "CelebA",
    "DataNotFoundError",
    "DataWarning",
    "DatasetInfo",
    "MNIST",
    "dataset_info",
    "default_cache_dir",
    "find_data_root",
    "load_dataset",
    "quantize",
    "read_idx",
    "repo_data_dir",
]
