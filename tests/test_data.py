"""Tests for flowlib.data: real MNIST and CelebA (through the ``data_root`` fixtures of
conftest.py) and the error paths, on tiny files written under tmp_path."""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import flowlib.data as fd
from flowlib.data import (
    MNIST,
    CelebA,
    DataNotFoundError,
    DataWarning,
    find_data_root,
    load_dataset,
    quantize,
    read_idx,
)

ATTR_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch, tmp_path):
    """Each test starts without FLOWLIB_DATA (tests that want it set it) and with its
    own cache folder, so nothing leaks between tests or into ~/.cache."""
    monkeypatch.delenv("FLOWLIB_DATA", raising=False)
    monkeypatch.setenv("FLOWLIB_CACHE", str(tmp_path / "cache"))


def data_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


# --------------------------------------------------------------------------- quantize


def test_quantize_floor_divides_like_glow():
    x = torch.arange(256, dtype=torch.uint8)
    for n_bits in range(1, 9):
        q = quantize(x, n_bits)
        assert q.dtype == torch.uint8
        assert torch.equal(q.long(), torch.arange(256) // 2 ** (8 - n_bits))
        assert int(q.max()) == 2**n_bits - 1
    assert np.array_equal(quantize(np.arange(256, dtype=np.uint8), 3), np.arange(256) // 32)


@pytest.mark.parametrize("n_bits", [0, 9, -1, 5.0, True, "5", None])
def test_quantize_rejects_bad_n_bits(n_bits):
    with pytest.raises(ValueError, match="n_bits must be an integer from 1 to 8"):
        quantize(torch.zeros(2, dtype=torch.uint8), n_bits)


def test_quantize_rejects_float_images():
    with pytest.raises(ValueError, match="integer images"):
        quantize(torch.rand(2, 2), 5)


@pytest.mark.parametrize("n_bits", [0, 9])
def test_datasets_reject_bad_n_bits(n_bits, tmp_path):
    with pytest.raises(ValueError, match="n_bits"):
        MNIST(root=tmp_path, n_bits=n_bits)
    with pytest.raises(ValueError, match="n_bits"):
        CelebA(root=tmp_path, n_bits=n_bits)


# --------------------------------------------------------------------------- tiny MNIST files


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_tiny_mnist(root: Path, gz: bool = False, n_train: int = 7, n_test: int = 3):
    """Random IDX files under root/MNIST/raw; returns {split: (images, labels)}."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for name, arr in (
            (f"{prefix}-images-idx3-ubyte", images),
            (f"{prefix}-labels-idx1-ubyte", labels),
        ):
            if gz:
                with gzip.open(raw / (name + ".gz"), "wb") as f:
                    f.write(idx_bytes(arr))
            else:
                (raw / name).write_bytes(idx_bytes(arr))
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_tiny_mnist_loads_plain_and_gz(tmp_path, gz):
    truth = write_tiny_mnist(tmp_path, gz=gz)
    for split in ("train", "test"):
        ds = MNIST(root=tmp_path, split=split, n_bits=4)
        images, labels = truth[split]
        assert ds.images.shape == (len(labels), 1, 28, 28) and ds.images.dtype == torch.uint8
        assert np.array_equal(ds.images[:, 0].numpy(), images // 16)
        assert ds.labels.dtype == torch.long and ds.labels.tolist() == labels.tolist()
        image, label = ds[1]
        assert image.shape == (1, 28, 28) and label == int(labels[1]) and type(label) is int


def test_truncated_idx_gives_clear_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(data[:-1000])
    with pytest.raises(ValueError) as info:
        read_idx(path, expected_magic=2051)
    message = str(info.value)
    assert str(path) in message and "truncated" in message
    assert str(len(data)) in message and str(len(data) - 1000) in message
    assert "download" in message


def test_idx_longer_than_header_and_wrong_magic(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8)) + b"\0")
    with pytest.raises(ValueError, match="longer than its header"):
        read_idx(path)
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        read_idx(path, expected_magic=2051)
    path.write_bytes(b"<html>404</html>")
    with pytest.raises(ValueError, match="magic number"):
        read_idx(path, expected_magic=2049)


def test_truncated_gz_gives_clear_error(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(500, np.uint8)))[:-20])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(path)


def test_mnist_missing_file_and_bad_split(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        MNIST(root=tmp_path, split="test")
    with pytest.raises(ValueError, match=r"\['train', 'test'\]"):
        MNIST(root=tmp_path, split="valid")


# --------------------------------------------------------------------------- finding the data


def test_explicit_wrong_root_lists_every_place(tmp_path, monkeypatch):
    good = tmp_path / "good"
    write_tiny_mnist(good)
    monkeypatch.setenv("FLOWLIB_DATA", str(good))  # right, but an explicit root wins
    wrong = tmp_path / "typo"
    with pytest.raises(DataNotFoundError) as info:
        MNIST(root=wrong)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert f"root argument: {wrong} -> no such folder" in message
    assert f"FLOWLIB_DATA: {good} -> has MNIST/raw/ (not used" in message
    assert "repository data/ folder" in message and "data/README.md" in message


def test_wrong_flowlib_data_raises_at_once(tmp_path, monkeypatch):
    good = tmp_path / "repo_data"
    write_tiny_mnist(good)
    monkeypatch.setattr(fd.locate, "repo_data_dir", lambda: good)  # would be found, but ...
    monkeypatch.setenv("FLOWLIB_DATA", str(tmp_path / "nowhere"))  # ... the env var is wrong
    with pytest.raises(DataNotFoundError, match="FLOWLIB_DATA: .*nowhere -> no such folder"):
        find_data_root()
    with pytest.raises(DataNotFoundError, match="CelebA cannot be downloaded"):
        find_data_root(need="celeba")


def test_search_order_and_relative_paths(tmp_path, monkeypatch):
    for name in ("a", "b", "repo"):
        write_tiny_mnist(tmp_path / name)
    monkeypatch.setattr(fd.locate, "repo_data_dir", lambda: tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    assert find_data_root() == tmp_path / "repo"
    monkeypatch.setenv("FLOWLIB_DATA", "b")  # relative: from the current directory
    assert find_data_root() == tmp_path / "b"
    assert find_data_root("a") == tmp_path / "a"
    with pytest.raises(ValueError, match="need must be one of"):
        find_data_root(need="cifar")


def test_nothing_found_lists_all_places(tmp_path, monkeypatch):
    monkeypatch.setattr(fd.locate, "repo_data_dir", lambda: tmp_path / "data")
    with pytest.raises(DataNotFoundError) as info:
        find_data_root()
    message = str(info.value)
    assert "root argument: not given" in message
    assert "FLOWLIB_DATA: not given" in message
    assert f"repository data/ folder: {tmp_path / 'data'} -> no such folder" in message
    # giving the MNIST folder itself instead of its parent gets a hint
    write_tiny_mnist(tmp_path)
    with pytest.raises(DataNotFoundError, match="looks like the MNIST folder itself"):
        find_data_root(tmp_path / "MNIST")


def test_download_failure_and_success(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(fd.locate, "repo_data_dir", lambda: tmp_path / "data")

    def offline(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataNotFoundError) as info:
        MNIST(download=True)
    assert "No MNIST data found" in str(info.value)
    assert f"into {tmp_path / 'data'} failed too" in str(info.value)
    assert "Error downloading" in str(info.value)

    def fake_download(root, train, download):  # writes what torchvision would
        if not (Path(root) / "MNIST").exists():
            write_tiny_mnist(Path(root))

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_download)
    assert len(MNIST(root=tmp_path / "mine", download=True, split="test")) == 3
    assert (tmp_path / "mine" / "MNIST" / "raw").is_dir()  # the explicit root is the target


def test_load_dataset_by_name(tmp_path):
    write_tiny_mnist(tmp_path)
    ds = load_dataset("MNIST", "train", root=tmp_path, pad_to_32=True)
    assert isinstance(ds, MNIST) and ds.images.shape == (7, 1, 32, 32)
    with pytest.raises(ValueError, match=r"choose one of mnist, celeba"):
        load_dataset("cifar10", "train")


# --------------------------------------------------------------------------- real MNIST


@pytest.mark.data
def test_real_mnist(mnist_root):
    train = MNIST(root=mnist_root, split="train")
    test = load_dataset("mnist", "test", root=mnist_root)
    for ds, n, counts in ((train, 60_000, MNIST_TRAIN_COUNTS), (test, 10_000, MNIST_TEST_COUNTS)):
        assert len(ds) == n and ds.images.shape == (n, 1, 28, 28)
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.long
        assert int(ds.images.min()) == 0 and int(ds.images.max()) == 255
        assert torch.bincount(ds.labels, minlength=10).tolist() == counts
    assert train.labels[0] == 5 and test.labels[0] == 7  # the well-known first digits
    image, label = test[0]
    assert image.shape == (1, 28, 28) and label == 7


@pytest.mark.data
def test_real_mnist_n_bits_and_padding(mnist_root):
    full = MNIST(root=mnist_root, split="test")
    for n_bits in (1, 5):
        ds = MNIST(root=mnist_root, split="test", n_bits=n_bits)
        assert int(ds.images.max()) == 2**n_bits - 1
        assert torch.equal(ds.images, full.images // 2 ** (8 - n_bits))
    padded = MNIST(root=mnist_root, split="test", n_bits=5, pad_to_32=True)
    assert padded.images.shape == (10_000, 1, 32, 32)
    border = padded.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.abs().sum()) == 0
    assert torch.equal(padded.images[:, :, 2:30, 2:30], full.images // 8)


# --------------------------------------------------------------------------- tiny CelebA folders


def write_fake_celeba(
    root: Path,
    splits: dict[str, int],
    layout: str = "torchvision",
    corrupt: tuple[str, ...] = (),
    no_attr: tuple[str, ...] = (),
    no_partition: tuple[str, ...] = (),
) -> dict[str, list[int]]:
    """Random 178x218 JPEGs named like CelebA plus annotations in the torchvision (.txt,
    CRLF) or Kaggle (.csv, nested image folder) layout. Returns {file: 40 values of +-1}."""
    folder = root / "celeba"
    images = folder / "img_align_celeba"
    if layout == "kaggle":
        images = images / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(1)
    attrs = {}
    for name in splits:
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name, quality=90)
        attrs[name] = rng.choice([-1, 1], 40).tolist()
    for i, name in enumerate(corrupt):
        if i % 2:  # a truncated JPEG
            data = (images / name).read_bytes()
            (images / name).write_bytes(data[:200])
        else:  # not an image at all
            (images / name).write_bytes(b"this is not a jpeg")
    attr_rows = {f: v for f, v in attrs.items() if f not in no_attr}
    part_rows = {f: s for f, s in splits.items() if f not in no_partition}
    if layout == "kaggle":
        (folder / "list_attr_celeba.csv").write_text(
            "image_id,"
            + ",".join(ATTR_NAMES)
            + "\n"
            + "".join(f"{f}," + ",".join(map(str, v)) + "\n" for f, v in attr_rows.items())
        )
        (folder / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{f},{s}\n" for f, s in part_rows.items())
        )
    else:
        lines = [str(len(attr_rows)), " ".join(ATTR_NAMES) + " "]
        lines += [f + " " + " ".join(f"{v:2d}" for v in vals) for f, vals in attr_rows.items()]
        (folder / "list_attr_celeba.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
        (folder / "list_eval_partition.txt").write_bytes(
            "".join(f"{f} {s}\r\n" for f, s in part_rows.items()).encode()
        )
    return attrs


SIX = {
    "000001.jpg": 0,
    "000002.jpg": 0,
    "000003.jpg": 0,
    "000004.jpg": 1,
    "000005.jpg": 2,
    "000006.jpg": 2,
}


@pytest.mark.parametrize("layout", ["torchvision", "kaggle"])
def test_fake_celeba_layouts(tmp_path, layout):
    attrs = write_fake_celeba(tmp_path, SIX, layout=layout)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sizes = {
            s: len(CelebA(root=tmp_path, split=s, cache=False))
            for s in ("train", "valid", "test", "all")
        }
    assert sizes == {"train": 3, "valid": 1, "test": 2, "all": 6}
    assert data_warnings(record) == []
    ds = CelebA(root=tmp_path, split="test", size=16, n_bits=3, cache=False)
    assert ds.filenames == ["000005.jpg", "000006.jpg"]
    assert ds.attr_names == ATTR_NAMES
    assert ds.images.shape == (2, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert int(ds.images.max()) <= 7
    assert ds.attributes.dtype == torch.long
    assert ds.attributes.tolist() == [[int(v > 0) for v in attrs[f]] for f in ds.filenames]
    image, attributes = ds[1]
    assert image.shape == (3, 16, 16) and attributes.shape == (40,)


def test_fake_celeba_corrupt_images_skipped_with_one_warning(tmp_path):
    write_fake_celeba(tmp_path, SIX, corrupt=("000002.jpg", "000003.jpg"))
    for attempt in ("decoded", "from cache"):  # the cache must not hide the warning
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            ds = CelebA(root=tmp_path, split="train", cache=tmp_path / "c")
        messages = data_warnings(record)
        assert len(messages) == 1, attempt
        assert "skipped 2 unreadable or corrupt image(s) of 3" in messages[0]
        assert "000002.jpg, 000003.jpg" in messages[0]
        assert ds.filenames == ["000001.jpg"] and ds.images.shape == (1, 3, 32, 32)


def test_fake_celeba_missing_annotation_rows_warn(tmp_path):
    write_fake_celeba(tmp_path, SIX, no_partition=("000001.jpg",), no_attr=("000002.jpg",))
    with pytest.warns(DataWarning) as record:
        ds = CelebA(root=tmp_path, split="train", cache=False)
    messages = [str(w.message) for w in record]
    assert any(
        "1 of 6 images on disk have no row in list_eval_partition.txt" in m for m in messages
    )
    assert any(
        "1 of 2 images of split 'train' have no row in list_attr_celeba.txt" in m for m in messages
    )
    assert ds.filenames == ["000003.jpg"]


def test_fake_celeba_empty_split_and_no_images(tmp_path):
    write_fake_celeba(tmp_path / "a", {"000001.jpg": 0, "000002.jpg": 0})
    with pytest.raises(DataNotFoundError, match="no annotated images of split 'test'"):
        CelebA(root=tmp_path / "a", split="test", cache=False)
    write_fake_celeba(tmp_path / "b", {})
    with pytest.raises(DataNotFoundError, match="No images found"):
        CelebA(root=tmp_path / "b", cache=False)
    write_fake_celeba(tmp_path / "c", {"000001.jpg": 0}, corrupt=("000001.jpg",))
    with pytest.warns(DataWarning), pytest.raises(DataNotFoundError, match="no readable images"):
        CelebA(root=tmp_path / "c", cache=False)
    write_fake_celeba(tmp_path / "d", {"000001.jpg": 0})
    (tmp_path / "d" / "celeba" / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataNotFoundError, match="missing list_attr_celeba.txt"):
        CelebA(root=tmp_path / "d", cache=False)


def test_fake_celeba_malformed_annotations(tmp_path):
    write_fake_celeba(tmp_path, SIX)
    folder = tmp_path / "celeba"
    (folder / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(ValueError, match="list_eval_partition.txt: expected rows"):
        CelebA(root=tmp_path, cache=False)
    (folder / "list_eval_partition.txt").write_text("".join(f"{f} {s}\n" for f, s in SIX.items()))
    lines = (folder / "list_attr_celeba.txt").read_text().splitlines()
    lines = [line.rsplit(None, 1)[0] if line.startswith("000002.jpg") else line for line in lines]
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match="row for '000002.jpg' has 39 values, expected 40"):
        CelebA(root=tmp_path, split="train", cache=False)


def test_celeba_argument_checks(tmp_path):
    with pytest.raises(ValueError, match=r"\['train', 'valid', 'test', 'all'\]"):
        CelebA(root=tmp_path, split="val")
    for size in (0, -32, 32.0):
        with pytest.raises(ValueError, match="size must be a positive int"):
            CelebA(root=tmp_path, size=size)


def test_celeba_cache(tmp_path, monkeypatch):
    write_fake_celeba(tmp_path, SIX)
    first = CelebA(root=tmp_path, split="all", cache=True)  # FLOWLIB_CACHE, set by the fixture
    assert len(list((tmp_path / "cache").glob("celeba-all-32px-crop148-*.npy"))) == 1
    decoded_sizes, decode = [], fd.celeba._decode_all
    monkeypatch.setattr(
        fd.celeba, "_decode_all", lambda *a: decoded_sizes.append(a[2]) or decode(*a)
    )
    second = CelebA(root=tmp_path, split="all", n_bits=8)  # n_bits does not change the cache
    assert decoded_sizes == [] and torch.equal(first.images, second.images // 8)
    CelebA(root=tmp_path, split="all", size=16)  # another size is another cache entry
    assert decoded_sizes == [16]


def test_celeba_cache_false_writes_nothing(tmp_path):
    write_fake_celeba(tmp_path, SIX)
    CelebA(root=tmp_path, split="valid", cache=False)
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- real CelebA


@pytest.fixture(scope="module")
def celeba(celeba_root, tmp_path_factory):
    """The three real splits at 32 px, 5 bits, decoded once into a per-session cache."""
    cache = tmp_path_factory.mktemp("celeba-cache")
    return {s: CelebA(root=celeba_root, split=s, cache=cache) for s in ("train", "valid", "test")}


@pytest.mark.data
def test_real_celeba_splits(celeba):
    assert {s: len(ds) for s, ds in celeba.items()} == {"train": 5533, "valid": 780, "test": 660}
    names = [set(ds.filenames) for ds in celeba.values()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    for ds in celeba.values():
        n = len(ds)
        assert ds.images.shape == (n, 3, 32, 32) and ds.images.dtype == torch.uint8
        assert int(ds.images.max()) == 31
        assert ds.attributes.shape == (n, 40) and ds.attributes.dtype == torch.long
        assert set(ds.attributes.unique().tolist()) == {0, 1}
        assert ds.attr_names == ATTR_NAMES and "Smiling" in ds.attr_names
        assert ds.filenames == sorted(ds.filenames)


@pytest.mark.data
def test_real_celeba_attributes_match_file(celeba):
    # 000001.jpg's row of list_attr_celeba.txt, -1 -> 0
    row = (
        "-1  1  1 -1 -1 -1 -1 -1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1  1  1 -1  1 -1 -1  1 -1 -1  "
        "1 -1 -1 -1  1  1 -1  1 -1  1 -1 -1  1"
    )
    train = celeba["train"]
    assert train.filenames[0] == "000001.jpg"
    assert train.attributes[0].tolist() == [int(v) > 0 for v in row.split()]
    assert train.attributes[0, ATTR_NAMES.index("Smiling")] == 1


@pytest.mark.data
def test_real_celeba_matches_torchvision_transforms(celeba, celeba_root):
    from torchvision import transforms

    image_dir = celeba_root / "celeba" / "img_align_celeba"
    for size in (32, 64):
        reference = transforms.Compose([transforms.CenterCrop(148), transforms.Resize(size)])
        for name in celeba["valid"].filenames[:3]:
            with Image.open(image_dir / name) as im:
                expected = np.asarray(reference(im.convert("RGB"))).transpose(2, 0, 1)
            assert np.array_equal(fd.celeba._decode(image_dir / name, size, 148), expected)
    valid = celeba["valid"]
    assert np.array_equal(
        valid.images[0].numpy(), fd.celeba._decode(image_dir / valid.filenames[0], 32, 148) >> 3
    )


@pytest.mark.data
def test_real_celeba_64px_on_a_few_images_with_full_annotations(celeba_root, tmp_path):
    """A folder with a few real images and the real annotation files (more rows than
    images, like the full original) loads without warnings."""
    src = celeba_root / "celeba"
    dst = tmp_path / "celeba" / "img_align_celeba"
    dst.mkdir(parents=True)
    names = ["000001.jpg", "000002.jpg", "000003.jpg"]
    for name in names:
        (dst / name).symlink_to(src / "img_align_celeba" / name)
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        (tmp_path / "celeba" / name).symlink_to(src / name)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = CelebA(root=tmp_path, split="all", size=64, n_bits=8, cache=False)
    assert data_warnings(record) == []
    assert ds.filenames == names and ds.images.shape == (3, 3, 64, 64)
    assert int(ds.images.max()) > 200  # 8 bits kept
