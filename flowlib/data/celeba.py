"""Aligned CelebA faces (torchvision or Kaggle layout), decoded once and cached."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..layers.dequantization import check_n_bits
from .bits import quantize
from .embedded import CELEBA_SIZE, announce, describe, embedded_file, load_split
from .locate import (
    DataNotFoundError,
    DataWarning,
    _absolute,
    _how_to_get,
    default_cache_dir,
    find_data_root,
    named_explicitly,
)

logger = logging.getLogger(__name__)

_CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_CACHE_VERSION = 1


def _read_text(path: Path) -> list[str]:
    """Non-empty lines of a text file, whatever its line endings."""
    return [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def _read_attributes(path: Path) -> tuple[list[str], dict[str, str]]:
    """Attribute names and {filename: the rest of its row, unparsed} from the .txt or
    .csv file. Rows are parsed later, only for the images used (the full file has
    202,599 rows)."""
    lines = _read_text(path)
    if len(lines) < (1 if path.suffix == ".csv" else 2):
        raise ValueError(
            f"{path}: too short to hold the header of attribute names; the file "
            "is empty or truncated. Download it again."
        )
    if path.suffix == ".csv":
        names = [h.strip() for h in lines[0].split(",")[1:]]
        rows = [line.split(",", 1) for line in lines[1:]]
    else:
        names, rows = lines[1].split(), [line.split(None, 1) for line in lines[2:]]
        count = lines[0].strip()
        if count.isdigit() and int(count) != len(rows):
            warnings.warn(
                f"{path}: first line says {count} rows, found {len(rows)}; the file "
                "may be truncated.",
                DataWarning,
                stacklevel=4,
            )
    return names, {row[0].strip(): row[1] if len(row) > 1 else "" for row in rows}


def _parse_attributes(table: dict[str, str], files: list[str], n: int, path: Path) -> torch.Tensor:
    """(len(files), n) long tensor of 0/1 from the rows of ``files`` (-1 becomes 0)."""
    rows = []
    for name in files:
        values = table[name].replace(",", " ").split()
        if len(values) != n:
            raise ValueError(
                f"{path}: row for {name!r} has {len(values)} values, expected "
                f"{n} (one per attribute in the header)."
            )
        rows.append([int(v) > 0 for v in values])
    return torch.tensor(rows, dtype=torch.long).reshape(len(files), n)


def _read_partition(path: Path) -> dict[str, int]:
    """{filename: 0 (train) | 1 (valid) | 2 (test)} from the .txt or .csv file."""
    lines = _read_text(path)
    rows = (
        [line.split(",") for line in lines[1:]]
        if path.suffix == ".csv"
        else (line.split() for line in lines)
    )
    try:
        return {row[0].strip(): int(row[1]) for row in rows}
    except (IndexError, ValueError) as err:
        raise ValueError(
            f"{path}: expected rows 'filename partition' with partition 0, 1 or "
            f"2 ({err}). Is this the right file? Download it again."
        ) from err


def _first_existing(folder: Path, names: list[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _image_dir(folder: Path) -> Path | None:
    """img_align_celeba/, or img_align_celeba/img_align_celeba/ as the Kaggle zip unpacks."""
    for d in (folder / "img_align_celeba" / "img_align_celeba", folder / "img_align_celeba"):
        if d.is_dir() and any(p.suffix.lower() in _IMAGE_SUFFIXES for p in d.iterdir()):
            return d
    return None


def _few(names, k: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


def _decode(path: Path, size: int, crop: int) -> np.ndarray:
    """Center-crop ``crop`` x ``crop`` then resize to ``size`` x ``size`` (bilinear with
    antialiasing, as torchvision's CenterCrop + Resize on PIL images). Returns (3, S, S)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        c = min(crop, w, h)
        left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
        im = im.crop((left, top, left + c, top + c)).resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _decode_all(image_dir: Path, files: list[str], size: int, crop: int):
    """Decode ``files``; returns (uint8 array (n_ok, 3, S, S), names of skipped files)."""
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    skipped, n = [], 0
    for name in files:
        try:
            out[n] = _decode(image_dir / name, size, crop)
            n += 1
        except Exception:  # PIL raises OSError, SyntaxError, ValueError... for bad files
            skipped.append(name)
    return out[:n], skipped


def _cache_key(image_dir: Path, files: list[str], size: int, crop: int) -> str:
    h = hashlib.sha1(f"v{_CACHE_VERSION} size={size} crop={crop} bilinear\n".encode())
    for name in files:
        h.update(f"{name} {(image_dir / name).stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def _load_images(image_dir: Path, files: list[str], size: int, crop: int, cache, tag: str):
    """Decoded images for ``files``, through the .npy cache when ``cache`` allows it."""
    if cache is False or cache is None:
        return _decode_all(image_dir, files, size, crop)
    cache_dir = default_cache_dir() if cache is True else _absolute(cache)
    stem = (
        cache_dir / f"celeba-{tag}-{size}px-crop{crop}-{_cache_key(image_dir, files, size, crop)}"
    )
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if npy.is_file() and meta.is_file():
        try:
            skipped = json.loads(meta.read_text())["skipped"]
            images = np.load(npy)
            if images.shape == (len(files) - len(skipped), 3, size, size):
                logger.info("CelebA: loaded %d decoded images from cache %s", len(images), npy)
                return images, skipped
        except (OSError, ValueError, KeyError):
            pass
        logger.warning("CelebA: cache %s is unreadable; decoding again", npy)
    logger.info(
        "CelebA: decoding %d images from %s (cached afterwards in %s)",
        len(files),
        image_dir,
        cache_dir,
    )
    images, skipped = _decode_all(image_dir, files, size, crop)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"image_dir": str(image_dir), "skipped": skipped}))
        tmp = npy.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, images)
        os.replace(tmp, npy)  # atomic: a half-written cache is never read
    except OSError as err:
        warnings.warn(
            f"Could not write the CelebA cache in {cache_dir} ({err}); the images "
            "will be decoded again next time. Set FLOWLIB_CACHE to a writable "
            "folder or pass cache=False.",
            DataWarning,
            stacklevel=3,
        )
    return images, skipped


class CelebA(Dataset):
    """Aligned CelebA faces as ``(image, attributes)``: image a ``torch.uint8`` tensor
    ``(3, size, size)`` holding ``0..2**n_bits - 1``, attributes a long tensor ``(40,)``
    of 0/1 (the file's -1 becomes 0).

    Images are center-cropped to ``crop`` x ``crop`` (148, the usual setting for the
    178x218 aligned images; smaller images are cropped to their shorter side) and
    resized to ``size`` x ``size`` with antialiased bilinear interpolation, like
    torchvision's ``CenterCrop(148)`` + ``Resize(size)``.
    The whole split is decoded once into ``.images`` (N, 3, size, size) and cached as
    a ``.npy`` file (8-bit, before quantisation) in ``$FLOWLIB_CACHE`` or
    ``~/.cache/flowlib``.

    Accepts the torchvision layout (``celeba/img_align_celeba/*.jpg``,
    ``list_attr_celeba.txt``, ``list_eval_partition.txt``) and the Kaggle layout
    (``list_attr_celeba.csv``, ``list_eval_partition.csv``, images possibly in
    ``img_align_celeba/img_align_celeba/``). Bounding boxes, landmarks and identities
    are not needed. The dataset is the intersection of the images on disk and the
    annotation rows; a :class:`DataWarning` says how many images were left out and
    why. Unreadable images are skipped with one warning.

    Args:
        root: folder containing ``celeba/``; see ``find_data_root``.
        split: "train", "valid", "test" or "all".
        size: output height and width in pixels (any positive int; 32 and 64 are usual).
        n_bits: bits per channel to keep, 1..8 (Glow uses 5 for CelebA).
        crop: side of the center crop taken before resizing.
        cache: True (default cache folder), False (no cache) or a cache folder.

    Where no CelebA folder is found and none was named (``root``, ``$FLOWLIB_DATA``), the
    embedded 32x32 subset of ``data/embedded/`` stands in, and ``.source`` says so.

    Attributes:
        images, attributes, filenames, attr_names, split, size, n_bits, root, source.
    """

    def __init__(
        self,
        root=None,
        split: str = "train",
        size: int = 32,
        n_bits: int = 5,
        crop: int = 148,
        cache=True,
    ):
        if split not in _CELEBA_SPLITS:
            raise ValueError(f"CelebA split must be one of {list(_CELEBA_SPLITS)}, got {split!r}.")
        for name, value in (("size", size), ("crop", crop)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CelebA {name} must be a positive int (pixels), got {value!r}.")
        check_n_bits(n_bits)
        self.split, self.size, self.n_bits, self.crop = split, size, n_bits, crop
        try:
            self.root = find_data_root(root, need="celeba")
        except DataNotFoundError:
            path = None if named_explicitly(root) else embedded_file("CelebA")
            if path is None:
                raise
            self._load_embedded(path)
            return
        self.source = f"CelebA ({self.root / 'celeba'})"
        files, images, attributes = self._load_files(cache)
        self.filenames: list[str] = files
        self.images: torch.Tensor = torch.from_numpy(quantize(images, n_bits))
        self.attributes: torch.Tensor = attributes

    def _load_embedded(self, path) -> None:
        """The faces of this split from the embedded 32x32 subset."""
        if (self.size, self.crop) != (CELEBA_SIZE, 148):
            raise DataNotFoundError(
                f"No CelebA data found, and the embedded subset ({path}) holds 32x32 faces "
                f"(crop 148) only, not size={self.size}, crop={self.crop}. " + _how_to_get("CelebA")
            )
        announce("CelebA", path, "no CelebA files found")
        splits = [k for k in _CELEBA_SPLITS if k != "all"] if self.split == "all" else [self.split]
        parts = [load_split(path, s) for s in splits]
        self.root, self.source = path, describe("CelebA", path)
        self.attr_names = [str(n) for n in parts[0]["attr_names"]]
        self.filenames = [str(f) for p in parts for f in p["filenames"]]
        images = np.concatenate([p["images"] for p in parts])
        self.images = torch.from_numpy(quantize(images, self.n_bits))
        self.attributes = torch.from_numpy(np.concatenate([p["attributes"] for p in parts])).long()

    def _load_files(self, cache):
        """(file names, 8-bit images, attributes) of this split from the CelebA folder."""
        split, size, crop = self.split, self.size, self.crop
        folder = self.root / "celeba"
        image_dir = _image_dir(folder)
        if image_dir is None:
            raise DataNotFoundError(
                f"No images found in {folder}/img_align_celeba/ (nor in "
                f"img_align_celeba/img_align_celeba/, the Kaggle layout). Unpack "
                f"img_align_celeba.zip there. " + _how_to_get("CelebA")
            )
        on_disk = {p.name for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES}

        attr_path = _first_existing(folder, ["list_attr_celeba.txt", "list_attr_celeba.csv"])
        part_path = _first_existing(folder, ["list_eval_partition.txt", "list_eval_partition.csv"])
        if attr_path is None or (part_path is None and split != "all"):
            missing = [
                n
                for n, p in (
                    ("list_attr_celeba.txt (or .csv)", attr_path),
                    ("list_eval_partition.txt (or .csv)", part_path),
                )
                if p is None
            ]
            raise DataNotFoundError(
                f"{folder}: missing {' and '.join(missing)}. " + _how_to_get("CelebA")
            )
        self.attr_names, attr_table = _read_attributes(attr_path)
        partition = _read_partition(part_path) if part_path is not None else None

        files = self._select(on_disk, attr_table, partition, attr_path, part_path, split)
        images, skipped = _load_images(image_dir, files, size, crop, cache, split)
        if skipped:
            warnings.warn(
                f"CelebA: skipped {len(skipped)} unreadable or corrupt image(s) of "
                f"{len(files)} in {image_dir}: {_few(skipped)}. Re-extract or re-download "
                f"them to use them.",
                DataWarning,
                stacklevel=2,
            )
            bad = set(skipped)
            files = [f for f in files if f not in bad]
        if not files:
            raise DataNotFoundError(
                f"CelebA: no readable images in {image_dir}. " + _how_to_get("CelebA")
            )

        attributes = _parse_attributes(attr_table, files, len(self.attr_names), attr_path)
        return files, images, attributes

    @staticmethod
    def _select(on_disk, attr_table, partition, attr_path, part_path, split) -> list[str]:
        """Sorted names of the images of ``split`` that are on disk and annotated.
        Warns (never silently shrinks) when images on disk lack annotation rows."""
        files = set(on_disk)
        if partition is not None:
            no_row = files - partition.keys()
            if no_row:
                warnings.warn(
                    f"CelebA: {len(no_row)} of {len(on_disk)} images on disk have no row in "
                    f"{part_path.name}, so they belong to no split and are left out: "
                    f"{_few(no_row)}.",
                    DataWarning,
                    stacklevel=3,
                )
            absent = partition.keys() - on_disk
            if absent:  # the usual case with a subset of images and the full annotations
                logger.info(
                    "CelebA: %d rows of %s have no image on disk (ignored).",
                    len(absent),
                    part_path.name,
                )
            files &= partition.keys()
            if split != "all":
                files = {f for f in files if partition[f] == _CELEBA_SPLITS[split]}
        no_attr = files - attr_table.keys()
        if no_attr:
            warnings.warn(
                f"CelebA: {len(no_attr)} of {len(files)} images of split {split!r} have no "
                f"row in {attr_path.name} and are left out: {_few(no_attr)}.",
                DataWarning,
                stacklevel=3,
            )
            files -= no_attr
        if not files:
            raise DataNotFoundError(
                f"CelebA: no annotated images of split {split!r} on disk ({len(on_disk)} "
                f"images on disk in all; partition file: {part_path}). " + _how_to_get("CelebA")
            )
        return sorted(files)

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, i):
        return self.images[i], self.attributes[i]

    def __repr__(self) -> str:
        return (
            f"CelebA(split={self.split!r}, n={len(self)}, size={self.size}, "
            f"n_bits={self.n_bits}, crop={self.crop}, root={str(self.root)!r})"
        )
