"""The embedded MNIST and CelebA subsets (data/embedded/): when they stand in, how they say
so, and that the build script rebuilds them byte for byte."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_data import write_tiny_mnist

import flowlib.data as fd
from flowlib.data import MNIST, CelebA, DataNotFoundError
from flowlib.data.embedded import CELEBA_FILE, MNIST_FILE

REPO = Path(__file__).resolve().parent.parent
EMBEDDED = REPO / "data" / "embedded"


@pytest.fixture(autouse=True)
def _nothing_named(monkeypatch, tmp_path):
    """No FLOWLIB_DATA, no network, and each test's own cache and 'once' memory."""
    monkeypatch.delenv("FLOWLIB_DATA", raising=False)
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    monkeypatch.setenv("FLOWLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fd.embedded, "_SAID", set())


@pytest.fixture
def bare_repo(tmp_path, monkeypatch) -> Path:
    """A data/ folder holding only the embedded subsets, as in a fresh clone."""
    data = tmp_path / "data"
    shutil.copytree(EMBEDDED, data / "embedded")
    monkeypatch.setattr(fd.locate, "repo_data_dir", lambda: data)
    return data


def test_mnist_falls_back_on_the_subset_and_says_so_once(bare_repo, capsys):
    test = MNIST(split="test", n_bits=5, pad_to_32=True)
    train = MNIST(split="train")
    assert test.images.shape == (1000, 1, 32, 32) and int(test.images.max()) <= 31
    assert train.images.shape == (5000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    assert test.source == "embedded MNIST subset (5,000 train / 1,000 test images)"
    assert test.root == bare_repo / "embedded" / MNIST_FILE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "using the embedded MNIST subset" in lines[0]
    assert "data/README.md" in lines[0]


def test_a_named_place_without_data_is_an_error_not_a_fallback(bare_repo, tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match="No MNIST data found"):
        MNIST(root=tmp_path / "typo")
    monkeypatch.setenv("FLOWLIB_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match="No MNIST data found"):
        MNIST()
    with pytest.raises(DataNotFoundError, match="No CelebA data found"):
        CelebA()


def test_full_data_wins_over_the_subset(bare_repo):
    write_tiny_mnist(bare_repo)
    ds = MNIST(split="test")
    assert len(ds) == 3 and ds.source.startswith("MNIST (") and ds.root == bare_repo


def test_without_a_name_mnist_is_downloaded_first_where_the_mirror_answers(
    bare_repo, monkeypatch, capsys
):
    import torchvision.datasets

    monkeypatch.setattr(fd.mnist, "_mirror_reachable", lambda: True)

    def refused(root, train, download):
        raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", refused)
    assert MNIST(split="test").source.startswith("embedded")  # the download failed: subset
    err = capsys.readouterr().err
    assert f"downloading MNIST with torchvision into {bare_repo / 'MNIST' / 'raw'}" in err
    assert "Error downloading" in err and "using the embedded MNIST subset" in err

    def fetched(root, train, download):  # writes what torchvision would
        write_tiny_mnist(Path(root))

    monkeypatch.setattr(torchvision.datasets, "MNIST", fetched)
    ds = MNIST(split="test")
    assert len(ds) == 3 and ds.root == bare_repo and not ds.source.startswith("embedded")


def test_celeba_falls_back_on_the_32px_subset_only(bare_repo, capsys):
    faces = CelebA(split="train", size=32, n_bits=5)
    assert faces.images.shape == (1000, 3, 32, 32) and int(faces.images.max()) <= 31
    assert faces.attributes.shape == (1000, 40) and len(faces.filenames) == 1000
    assert "Smiling" in faces.attr_names and faces.source.startswith("embedded CelebA subset")
    assert len(CelebA(split="all")) == 1300
    assert "using the embedded CelebA subset" in capsys.readouterr().err
    with pytest.raises(DataNotFoundError, match="holds 32x32 faces .* only, not size=64"):
        CelebA(split="test", size=64)


def test_training_on_the_subset_labels_its_bpd(bare_repo, tmp_path, capsys):
    from helpers import TINY_ARGS

    from flowlib import cli

    code = cli.main(["train", "--out", str(tmp_path / "run"), "--max-steps", "2", *TINY_ARGS])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "test images of the embedded MNIST subset (5,000 train / 1,000 test images), "
        "not the full test set" in out
    )
    assert "on embedded MNIST subset" in out.splitlines()[-1]
    with pytest.raises(ValueError, match="needs the full test set"):
        _export(tmp_path / "run")


def _export(run):
    from flowlib import pretrained

    pretrained.export(run, "mnist_glow", command="x", data="y", log=lambda m: None)


@pytest.mark.data
@pytest.mark.slow
def test_the_build_script_rebuilds_the_shipped_files_byte_for_byte(
    mnist_root, celeba_root, tmp_path
):
    assert mnist_root == celeba_root  # one root holds both, as ../shared/data does
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "build_embedded_data.py"),
            "--root",
            str(mnist_root),
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    for name in (MNIST_FILE, CELEBA_FILE):
        assert (tmp_path / name).read_bytes() == (EMBEDDED / name).read_bytes(), name
