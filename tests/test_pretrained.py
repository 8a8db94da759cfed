"""flowlib.pretrained: export, one-call loading, and the regression check of shipped checkpoints."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny

from flowlib import checkpoints as C
from flowlib import models
from flowlib import pretrained as P
from flowlib import train as T
from flowlib.cli import main


@pytest.fixture
def exported(tmp_path, mnist_root, monkeypatch):
    """A tiny trained Glow exported as "mnist_glow" into a temporary data/pretrained."""
    monkeypatch.setattr(P, "pretrained_dir", lambda: tmp_path / "pretrained")
    monkeypatch.setattr(P, "SUBSET_IMAGES", 64)
    T.train(tiny(tmp_path / "run", mnist_root, max_steps=5))
    path = P.export(
        tmp_path / "run",
        "mnist_glow",
        command="flowlib train --max-steps 5",
        data="MNIST train",
        importance_samples=2,
        data_root=mnist_root,
        log=lambda *a: None,
    )
    return path


@pytest.mark.data
def test_export_records_how_it_was_made_and_loads_in_one_call(exported, tmp_path):
    assert exported == tmp_path / "pretrained" / "mnist_glow.pt" and P.available() == ["mnist_glow"]
    model, record = P.load_pretrained("mnist_glow")
    assert not model.training and isinstance(model, models.Glow)
    for key in (
        "command",
        "commit",
        "data",
        "steps",
        "wall_time_s",
        "hardware",
        "test_bpd",
        "subset_bpd",
    ):
        assert record[key] not in (None, ""), key
    assert len(record["commit"]) == 40 or record["commit"] == "unknown"
    assert (
        record["steps"] == 5 and record["test_images"] == 10_000 and record["subset_images"] == 64
    )
    assert record["evaluated_on"] == "cpu"  # the default; --device cuda evaluates on a GPU
    ckpt = C.read_checkpoint(exported)
    assert (
        ckpt["optimizer"] is None and ckpt["train_config"]["data_root"] is None
    )  # slim, no local paths
    trained, _ = C.load_checkpoint(tmp_path / "run")
    for (k, a), b in zip(model.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.data
def test_export_takes_the_commit_where_there_is_no_git(exported, tmp_path, mnist_root):
    # e.g. on a lent GPU machine that receives the work tree without .git
    P.export(
        tmp_path / "run",
        "mnist_glow",
        command="c",
        data="d",
        commit="f" * 40,
        importance_samples=1,
        data_root=mnist_root,
        log=lambda *a: None,
    )
    assert P.load_pretrained("mnist_glow")[1]["commit"] == "f" * 40


@pytest.mark.data
def test_export_to_another_folder_leaves_the_shipped_file_alone(exported, tmp_path, mnist_root):
    before = exported.read_bytes()
    argv = ["export", str(tmp_path / "run"), "mnist_glow", "--command", "c", "--data", "d"]
    assert main([*argv, "--to", str(tmp_path / "look"), "--data-root", str(mnist_root)]) == 0
    assert exported.read_bytes() == before
    model, ckpt = C.load_checkpoint(tmp_path / "look" / "mnist_glow.pt")
    assert ckpt["pretrained"]["command"] == "c" and isinstance(model, models.Glow)


@pytest.mark.data
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")
def test_export_on_a_missing_gpu_says_so_and_writes_nothing(exported, tmp_path, capsys):
    before = exported.read_bytes()
    argv = ["export", str(tmp_path / "run"), "mnist_glow", "--command", "c", "--data", "d"]
    assert main([*argv, "--device", "cuda"]) == 2
    assert "CUDA is not available here (use --device cpu)" in capsys.readouterr().err
    assert exported.read_bytes() == before


@pytest.mark.data
def test_export_of_an_averaged_run_ships_the_average(tmp_path, mnist_root, monkeypatch):
    monkeypatch.setattr(P, "pretrained_dir", lambda: tmp_path / "pretrained")
    monkeypatch.setattr(P, "SUBSET_IMAGES", 16)
    T.train(tiny(tmp_path / "run", mnist_root, max_steps=6, ema=0.9))
    path = P.export(
        tmp_path / "run",
        "mnist_glow",
        command="c",
        data="d",
        importance_samples=1,
        data_root=mnist_root,
        log=lambda *a: None,
    )
    shipped, run = C.read_checkpoint(path), C.read_checkpoint(tmp_path / "run")
    assert shipped.get("ema_model") is None and shipped["train_config"]["ema"] == 0.9
    for k, v in shipped["model"].items():
        assert torch.equal(v, run["ema_model"][k]), k


@pytest.mark.data
def test_check_reproduces_the_recorded_bpd_and_catches_a_change(exported, mnist_root, capsys):
    (row,) = P.check(data_root=mnist_root, log=lambda *a: None)
    assert row["difference"] == 0.0 and row["images"] == 64
    assert main(["pretrained", "--check", "--data-root", str(mnist_root)]) == 0
    assert "mnist_glow" in capsys.readouterr().out

    ckpt = torch.load(exported, weights_only=True)  # a "code change" that breaks the log-likelihood
    ckpt["model"] = {k: v + 0.5 if k.endswith("log_scale") else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, exported)
    assert main(["pretrained", "--check", "--data-root", str(mnist_root)]) == 1
    assert "off by more than 0.01" in capsys.readouterr().err


def test_unknown_or_missing_pretrained_models_say_what_there_is(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "pretrained_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="the course's are: mnist_simple"):
        P.load_pretrained("cifar_glow")
    with pytest.raises(
        FileNotFoundError, match=r"No pretrained checkpoint .*mnist_glow.pt \(present: none\)"
    ):
        P.load_pretrained("mnist_glow")
    assert main(["pretrained"]) == 0


@pytest.mark.data
@pytest.mark.parametrize("name", P.available())
def test_shipped_checkpoint_matches_its_recorded_bpd(name, data_root):
    """The CI regression check: loading and log-likelihoods of every shipped checkpoint."""
    (row,) = P.check([name], data_root=data_root, log=lambda *a: None)
    assert abs(row["difference"]) <= 0.01, row
