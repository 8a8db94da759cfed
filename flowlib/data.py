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

Example::

    from flowlib.data import MNIST, CelebA
    train = MNIST(split="train", n_bits=8)
    x = train.images[:64]                    # (64, 1, 28, 28) uint8, no DataLoader needed
    faces = CelebA(split="valid", size=32, n_bits=5)
    img, attrs = faces[0]                    # (3, 32, 32) uint8, (40,) long of 0/1
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .layers.dequantization import check_n_bits

__all__ = [
    "DataNotFoundError",
    "DataWarning",
    "quantize",
    "find_data_root",
    "read_idx",
    "MNIST",
    "CelebA",
    "load_dataset",
    "repo_data_dir",
    "default_cache_dir",
]

logger = logging.getLogger(__name__)

_README = "data/README.md"
_NEEDS = {"mnist": ("MNIST", Path("MNIST", "raw")), "celeba": ("CelebA", Path("celeba"))}
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_CACHE_VERSION = 1


class DataNotFoundError(FileNotFoundError):
    """The dataset is not where flowlib looked. The message lists every place looked
    and how to get the data."""


class DataWarning(UserWarning):
    """The data on disk is usable but not complete (skipped images, missing rows)."""


# --------------------------------------------------------------------------- quantisation


def quantize(x, n_bits: int):
    """Reduce 8-bit integer images (values 0..255) to ``n_bits`` bits (0..2**n_bits - 1).

    Floor division by ``2**(8 - n_bits)``, as in openai/glow. Works on torch tensors
    and numpy arrays of an integer dtype and returns the same type and dtype.
    """
    check_n_bits(n_bits)
    is_float = x.is_floating_point() if isinstance(x, torch.Tensor) else (
        np.issubdtype(np.asarray(x).dtype, np.floating))
    if is_float:
        raise ValueError(
            "quantize expects integer images with values 0..255 (for example uint8), got "
            "a floating-point array. Quantise the raw integers before dequantising or "
            "scaling to [0, 1)."
        )
    return x >> (8 - n_bits)


# --------------------------------------------------------------------------- finding data


def repo_data_dir() -> Path:
    """The repository's ``data/`` folder (next to the ``flowlib`` package)."""
    return Path(__file__).resolve().parent.parent / "data"


def default_cache_dir() -> Path:
    """Where decoded images are cached: ``$FLOWLIB_CACHE`` or ``~/.cache/flowlib``."""
    env = os.environ.get("FLOWLIB_CACHE")
    return _absolute(env) if env else Path.home() / ".cache" / "flowlib"


def _absolute(path) -> Path:
    """``path`` as an absolute path; relative paths count from the current directory."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _need(need: str) -> tuple[str, Path]:
    try:
        return _NEEDS[need.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"need must be one of 'MNIST', 'celeba', got {need!r}.") from None


def _candidates(root) -> list[tuple[str, Path | None, bool]]:
    """(description, path or None, explicit) for each source, in search order."""
    env = os.environ.get("FLOWLIB_DATA")
    return [
        ("root argument", None if root is None else _absolute(root), True),
        ("environment variable FLOWLIB_DATA", _absolute(env) if env else None, True),
        ("repository data/ folder", repo_data_dir(), False),
    ]


def _how_to_get(name: str) -> str:
    readme = repo_data_dir() / "README.md"
    if name == "MNIST":
        return (
            f"How to get MNIST: see {_README} ({readme}). In short: put "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte (or the .gz files) in <root>/MNIST/raw/, then pass "
            "root=<root> or set FLOWLIB_DATA=<root>; or use MNIST(download=True) where "
            "the internet is reachable."
        )
    return (
        f"How to get CelebA: see {_README} ({readme}). CelebA cannot be downloaded "
        "automatically (it sits behind Google Drive quotas and a non-commercial licence "
        "agreement): fetch img_align_celeba.zip, list_attr_celeba.txt and "
        "list_eval_partition.txt by hand (or the Kaggle 'celeba-dataset' CSV version), "
        "unpack them into <root>/celeba/, then pass root=<root> or set FLOWLIB_DATA=<root>."
    )


def _not_found(name: str, sub: Path, lines: list[str]) -> DataNotFoundError:
    msg = (
        f"No {name} data found: looked for a folder that contains {sub.as_posix()}/.\n"
        "Places looked, in order:\n" + "\n".join(lines) + "\n" + _how_to_get(name)
    )
    return DataNotFoundError(msg)


def find_data_root(root=None, need: str = "MNIST") -> Path:
    """Return the folder that contains the dataset ``need`` ("MNIST" or "celeba").

    Looks at ``root``, then ``$FLOWLIB_DATA``, then the repository's ``data/``; a
    candidate counts when it holds ``MNIST/raw/`` (for MNIST) or ``celeba/``. Relative
    paths count from the current working directory. An explicit ``root`` or
    ``FLOWLIB_DATA`` that does not hold the data is an error, not a reason to look
    elsewhere: a typo should not silently train on other data.

    Raises:
        DataNotFoundError: listing every place looked and how to get the data.
    """
    name, sub = _need(need)
    lines, chosen, first_explicit_failed = [], None, False
    for i, (what, path, explicit) in enumerate(_candidates(root), start=1):
        if path is None:
            lines.append(f"  {i}. {what}: not given")
            continue
        ok = (path / sub).is_dir()
        if ok:
            state = f"has {sub.as_posix()}/"
            if chosen is not None:
                state += " (not used: found at an earlier place)"
            elif first_explicit_failed:
                state += " (not used: an earlier place was given explicitly)"
        elif not path.is_dir():
            state = "no such folder"
        else:
            state = f"exists, but has no {sub.as_posix()}/ inside"
            if path.name.lower() == sub.parts[0].lower() or (path / "raw").is_dir():
                state += f" (this looks like the {sub.parts[0]} folder itself: give its parent)"
        lines.append(f"  {i}. {what}: {path} -> {state}")
        if chosen is None and not first_explicit_failed:
            if ok:
                chosen = path
            elif explicit:
                first_explicit_failed = True
    if chosen is None:
        raise _not_found(name, sub, lines)
    return chosen


# --------------------------------------------------------------------------- MNIST


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
        raise ValueError(f"{path}: cannot decompress ({err}): the file is truncated or "
                         f"corrupt. {redownload}") from err
    if len(data) < 4:
        raise ValueError(f"{path}: only {len(data)} bytes, too short for an IDX header. "
                         f"{redownload}")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">I", data[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: magic number {magic}, expected {expected_magic} "
            f"({'images' if expected_magic == 2051 else 'labels'}). This is not the right "
            f"IDX file (or it is an error page saved by a failed download). {redownload}"
        )
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise ValueError(f"{path}: magic number {magic} is not an unsigned-byte IDX header. "
                         f"{redownload}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: {len(data)} bytes, too short for its {header}-byte header. "
                         f"{redownload}")
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
        f"MNIST folder {raw} has neither {name} nor {name}.gz. " + _how_to_get("MNIST"))


def _download_mnist(root, error: DataNotFoundError) -> Path:
    """Download MNIST with torchvision into the first explicit place (``root``, then
    ``$FLOWLIB_DATA``), else the repository's ``data/``. Returns that folder."""
    target = next((p for _, p, _ in _candidates(root) if p is not None), repo_data_dir())
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
        download: when no local copy is found, download with torchvision into
            ``root``, else ``$FLOWLIB_DATA``, else the repository's ``data/``.
    """

    def __init__(self, root=None, split: str = "train", n_bits: int = 8,
                 pad_to_32: bool = False, download: bool = False):
        if split not in _MNIST_FILES:
            raise ValueError(f"MNIST split must be one of {list(_MNIST_FILES)}, got {split!r}.")
        check_n_bits(n_bits)
        try:
            self.root = find_data_root(root, need="MNIST")
        except DataNotFoundError as err:
            if not download:
                raise
            self.root = _download_mnist(root, err)
        raw = self.root / "MNIST" / "raw"
        image_name, label_name = _MNIST_FILES[split]
        images = read_idx(_idx_file(raw, image_name), expected_magic=2051)
        labels = read_idx(_idx_file(raw, label_name), expected_magic=2049)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{raw}: {image_name} has shape {images.shape} but {label_name} has shape "
                f"{labels.shape}; expected (N, 28, 28) images and N labels. Re-download both."
            )
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
        return (f"MNIST(split={self.split!r}, n={len(self)}, n_bits={self.n_bits}, "
                f"shape={tuple(self.images.shape[1:])}, root={str(self.root)!r})")


# --------------------------------------------------------------------------- CelebA


def _read_text(path: Path) -> list[str]:
    """Non-empty lines of a text file, whatever its line endings."""
    return [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def _read_attributes(path: Path) -> tuple[list[str], dict[str, str]]:
    """Attribute names and {filename: the rest of its row, unparsed} from the .txt or
    .csv file. Rows are parsed later, only for the images used (the full file has
    202,599 rows)."""
    lines = _read_text(path)
    if len(lines) < (1 if path.suffix == ".csv" else 2):
        raise ValueError(f"{path}: too short to hold the header of attribute names; the file "
                         "is empty or truncated. Download it again.")
    if path.suffix == ".csv":
        names = [h.strip() for h in lines[0].split(",")[1:]]
        rows = [line.split(",", 1) for line in lines[1:]]
    else:
        names, rows = lines[1].split(), [line.split(None, 1) for line in lines[2:]]
        count = lines[0].strip()
        if count.isdigit() and int(count) != len(rows):
            warnings.warn(f"{path}: first line says {count} rows, found {len(rows)}; the file "
                          "may be truncated.", DataWarning, stacklevel=4)
    return names, {row[0].strip(): row[1] if len(row) > 1 else "" for row in rows}


def _parse_attributes(table: dict[str, str], files: list[str], n: int,
                      path: Path) -> torch.Tensor:
    """(len(files), n) long tensor of 0/1 from the rows of ``files`` (-1 becomes 0)."""
    rows = []
    for name in files:
        values = table[name].replace(",", " ").split()
        if len(values) != n:
            raise ValueError(f"{path}: row for {name!r} has {len(values)} values, expected "
                             f"{n} (one per attribute in the header).")
        rows.append([int(v) > 0 for v in values])
    return torch.tensor(rows, dtype=torch.long).reshape(len(files), n)


def _read_partition(path: Path) -> dict[str, int]:
    """{filename: 0 (train) | 1 (valid) | 2 (test)} from the .txt or .csv file."""
    lines = _read_text(path)
    rows = [line.split(",") for line in lines[1:]] if path.suffix == ".csv" else (
        line.split() for line in lines)
    try:
        return {row[0].strip(): int(row[1]) for row in rows}
    except (IndexError, ValueError) as err:
        raise ValueError(f"{path}: expected rows 'filename partition' with partition 0, 1 or "
                         f"2 ({err}). Is this the right file? Download it again.") from err


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
    stem = cache_dir / f"celeba-{tag}-{size}px-crop{crop}-{_cache_key(image_dir, files, size, crop)}"
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
    logger.info("CelebA: decoding %d images from %s (cached afterwards in %s)",
                len(files), image_dir, cache_dir)
    images, skipped = _decode_all(image_dir, files, size, crop)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"image_dir": str(image_dir), "skipped": skipped}))
        tmp = npy.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, images)
        os.replace(tmp, npy)  # atomic: a half-written cache is never read
    except OSError as err:
        warnings.warn(f"Could not write the CelebA cache in {cache_dir} ({err}); the images "
                      "will be decoded again next time. Set FLOWLIB_CACHE to a writable "
                      "folder or pass cache=False.", DataWarning, stacklevel=3)
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

    Attributes:
        images, attributes, filenames, attr_names, split, size, n_bits, root.
    """

    def __init__(self, root=None, split: str = "train", size: int = 32, n_bits: int = 5,
                 crop: int = 148, cache=True):
        if split not in _CELEBA_SPLITS:
            raise ValueError(f"CelebA split must be one of {list(_CELEBA_SPLITS)}, got {split!r}.")
        for name, value in (("size", size), ("crop", crop)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CelebA {name} must be a positive int (pixels), got {value!r}.")
        check_n_bits(n_bits)
        self.root = find_data_root(root, need="celeba")
        folder = self.root / "celeba"
        image_dir = _image_dir(folder)
        if image_dir is None:
            raise DataNotFoundError(
                f"No images found in {folder}/img_align_celeba/ (nor in "
                f"img_align_celeba/img_align_celeba/, the Kaggle layout). Unpack "
                f"img_align_celeba.zip there. " + _how_to_get("CelebA"))
        on_disk = {p.name for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES}

        attr_path = _first_existing(folder, ["list_attr_celeba.txt", "list_attr_celeba.csv"])
        part_path = _first_existing(folder, ["list_eval_partition.txt", "list_eval_partition.csv"])
        if attr_path is None or (part_path is None and split != "all"):
            missing = [n for n, p in (("list_attr_celeba.txt (or .csv)", attr_path),
                                      ("list_eval_partition.txt (or .csv)", part_path)) if p is None]
            raise DataNotFoundError(f"{folder}: missing {' and '.join(missing)}. "
                                    + _how_to_get("CelebA"))
        self.attr_names, attr_table = _read_attributes(attr_path)
        partition = _read_partition(part_path) if part_path is not None else None

        files = self._select(on_disk, attr_table, partition, attr_path, part_path, split)
        images, skipped = _load_images(image_dir, files, size, crop, cache, split)
        if skipped:
            warnings.warn(
                f"CelebA: skipped {len(skipped)} unreadable or corrupt image(s) of "
                f"{len(files)} in {image_dir}: {_few(skipped)}. Re-extract or re-download "
                f"them to use them.", DataWarning, stacklevel=2)
            bad = set(skipped)
            files = [f for f in files if f not in bad]
        if not files:
            raise DataNotFoundError(f"CelebA: no readable images in {image_dir}. "
                                    + _how_to_get("CelebA"))

        self.split, self.size, self.n_bits, self.crop = split, size, n_bits, crop
        self.filenames: list[str] = files
        self.images: torch.Tensor = torch.from_numpy(quantize(images, n_bits))
        self.attributes: torch.Tensor = _parse_attributes(attr_table, files,
                                                          len(self.attr_names), attr_path)

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
                    f"{_few(no_row)}.", DataWarning, stacklevel=3)
            absent = partition.keys() - on_disk
            if absent:  # the usual case with a subset of images and the full annotations
                logger.info("CelebA: %d rows of %s have no image on disk (ignored).",
                            len(absent), part_path.name)
            files &= partition.keys()
            if split != "all":
                files = {f for f in files if partition[f] == _CELEBA_SPLITS[split]}
        no_attr = files - attr_table.keys()
        if no_attr:
            warnings.warn(
                f"CelebA: {len(no_attr)} of {len(files)} images of split {split!r} have no "
                f"row in {attr_path.name} and are left out: {_few(no_attr)}.",
                DataWarning, stacklevel=3)
            files -= no_attr
        if not files:
            raise DataNotFoundError(
                f"CelebA: no annotated images of split {split!r} on disk ({len(on_disk)} "
                f"images on disk in all; partition file: {part_path}). "
                + _how_to_get("CelebA"))
        return sorted(files)

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, i):
        return self.images[i], self.attributes[i]

    def __repr__(self) -> str:
        return (f"CelebA(split={self.split!r}, n={len(self)}, size={self.size}, "
                f"n_bits={self.n_bits}, crop={self.crop}, root={str(self.root)!r})")


# --------------------------------------------------------------------------- by name


_DATASETS = {"mnist": MNIST, "celeba": CelebA}


def load_dataset(name: str, split: str, root=None, **kw) -> Dataset:
    """``MNIST`` or ``CelebA`` by name ("mnist" or "celeba", any case); ``kw`` go to
    the dataset class (n_bits, pad_to_32, size, ...)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {list(_DATASETS)}.")
    return _DATASETS[key](root=root, split=split, **kw)
