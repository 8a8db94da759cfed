"""flowlib.train: learning, exact resume, checkpoints, non-finite losses (tiny models, CPU)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from helpers import tiny

from flowlib import batches, models, training_run
from flowlib import checkpoints as C
from flowlib import train as T
from flowlib import train_config as TC
from flowlib.averaging import WeightAverage
from flowlib.checks import perturb_
from flowlib.viz import make_grid, save_grid


def read_metrics(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


# --------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_short_training_of_the_default_glow_gets_below_2_bpd(tmp_path, mnist_root):
    # A short run of the default `flowlib train` (Glow K=4, L=2, width 64, logit
    # preprocessing) takes MNIST test bpd below 2.0 (figures: benchmarks/README.md).
    cfg = tiny(
        tmp_path / "run",
        mnist_root,
        K=None,
        L=None,
        hidden=None,
        batch_size=64,
        max_steps=300,
        warmup_steps=200,
        eval_every=150,
        eval_images=256,
        final_eval_images=1000,
        sample_every=300,
        checkpoint_every=150,
    )
    assert (
        cfg.resolved().K,
        cfg.resolved().L,
        cfg.resolved().hidden,
        cfg.resolved().preprocess,
    ) == (4, 2, 64, "logit")
    result = T.train(cfg)
    rows = read_metrics(tmp_path / "run")
    first = float(rows[0]["test_bpd"])
    assert rows[0]["step"] == "0" and first > 2.5
    assert result.step == 300 and result.skipped_steps == 0
    assert result.test_bpd < 2.0, f"test bpd went from {first:.2f} to only {result.test_bpd:.2f}"
    assert (tmp_path / "run" / "samples" / "step_000300.png").is_file()
    assert (tmp_path / "run" / "config.json").is_file()
    model, ckpt = C.load_checkpoint(tmp_path / "run")
    assert (
        ckpt["step"] == 300
        and isinstance(model, models.Glow)
        and model.config["logit_alpha"] == 1e-5
    )


def test_centred_glow_is_an_option(tmp_path, mnist_root):
    T.train(tiny(tmp_path / "run", mnist_root, preprocess="center", max_steps=2))
    model, _ = C.load_checkpoint(tmp_path / "run")
    assert model.config["logit_alpha"] is None
    with pytest.raises(ValueError, match="preprocess must be one of"):
        tiny(tmp_path, mnist_root, preprocess="tanh").resolved()
    with pytest.raises(ValueError, match="for Glow only"):
        tiny(tmp_path, mnist_root, model="simple", preprocess="center").resolved()


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("hflip", [False, True])
def test_resume_is_exact(tmp_path, mnist_root, hflip):
    # One go, evaluating and sampling often ...
    straight = T.train(
        tiny(tmp_path / "a", mnist_root, max_steps=12, eval_every=4, sample_every=5, hflip=hflip)
    )
    # ... versus 7 steps, then a resume to 12 with other intervals: identical parameters.
    T.train(tiny(tmp_path / "b", mnist_root, max_steps=7, checkpoint_every=3, hflip=hflip))
    resumed = T.train(tiny(tmp_path / "b", mnist_root, max_steps=12, hflip=hflip), resume=True)
    assert straight.step == resumed.step == 12
    a, ckpt_a = C.load_checkpoint(tmp_path / "a")
    b, ckpt_b = C.load_checkpoint(tmp_path / "b")
    assert_same_state(a.state_dict(), b.state_dict())
    assert ckpt_a["optimizer"]["state"].keys() == ckpt_b["optimizer"]["state"].keys()
    for k, s in ckpt_a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg_sq"], ckpt_b["optimizer"]["state"][k]["exp_avg_sq"])
    assert torch.equal(ckpt_a["rng"][0]["torch"], ckpt_b["rng"][0]["torch"])
    # metrics.csv continues without duplicated steps
    steps = [int(r["step"]) for r in read_metrics(tmp_path / "b")]
    assert steps == sorted(set(steps)) and steps[-1] == 12


def test_checkpoint_rebuilds_the_model_without_other_information(tmp_path, mnist_root):
    T.train(tiny(tmp_path / "run", mnist_root, max_steps=6))
    model, ckpt = C.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    for key in (
        "model",
        "model_class",
        "model_config",
        "optimizer",
        "warmup_from",
        "step",
        "epoch",
        "batch_in_epoch",
        "rng",
        "train_config",
    ):
        assert key in ckpt, key
    assert ckpt["model_class"] == "Glow" and ckpt["model_config"]["K"] == 1
    assert set(ckpt["rng"][0]) == {"torch", "cuda", "numpy", "python"}
    assert ckpt["step"] == 6 and ckpt["train_config"]["hidden"] == 8
    x = torch.randint(0, 256, (4, 1, 28, 28))
    assert torch.isfinite(model.bpd(x)).all()
    assert all(bool(m.initialized) for m in model.modules() if hasattr(m, "initialized"))


def test_resume_refuses_another_architecture(tmp_path, mnist_root):
    T.train(tiny(tmp_path / "run", mnist_root, max_steps=3))
    with pytest.raises(C.CheckpointError, match=r"hidden=8 \(this run asks for 16\)"):
        T.train(tiny(tmp_path / "run", mnist_root, max_steps=6, hidden=16), resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        T.train(tiny(tmp_path / "run", mnist_root, max_steps=6))
    with pytest.raises(C.CheckpointError, match="no checkpoint"):
        T.train(tiny(tmp_path / "empty", mnist_root), resume=True)
    # other settings may change on resume, the learning rate included
    T.train(tiny(tmp_path / "run", mnist_root, max_steps=6, lr=5e-4), resume=True)
    assert C.read_checkpoint(tmp_path / "run")["optimizer"]["param_groups"][0][
        "lr"
    ] == pytest.approx(5e-4)


# --------------------------------------------------------------------------- weight averaging


def test_weight_average_follows_its_formula_and_gives_the_raw_weights_back():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.9)
    expected = model.weight.detach().clone()
    for n in range(30):
        with torch.no_grad():
            model.weight.add_(1.0)
        average.update()
        d = min(0.9, (1 + n) / (10 + n))  # the warm-up: early updates weigh more
        expected = d * expected + (1 - d) * model.weight.detach()
    raw = model.weight.detach().clone()
    with average.applied() as m:
        assert torch.allclose(m.weight, expected)
    assert torch.equal(model.weight, raw), "the raw weights must come back after the block"
    state = average.state_dict()
    assert torch.allclose(state["weight"], expected) and torch.equal(model.weight, raw)
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(model, decay=1.0)
    with pytest.raises(ValueError, match="lacks bias"):
        WeightAverage(model, 0.9, state={"weight": raw})


def test_averaged_glow_in_eval_mode_does_not_reuse_the_raw_weights_cached_1x1_inverse():
    glow = perturb_(models.build_model("glow", (1, 8, 8), K=2, L=2, hidden=8), seed=1).eval()
    average = WeightAverage(glow, decay=0.5)
    x = torch.randint(0, 256, (4, 1, 8, 8))

    def log_prob(model):  # the same dequantization noise every time
        torch.manual_seed(0)
        return model.log_prob(x)

    perturb_(glow, seed=2)
    average.update()
    raw_logp = log_prob(glow)  # fills the 1x1 convolutions' caches with the raw W
    twin = models.build_model("glow", (1, 8, 8), K=2, L=2, hidden=8).eval()
    twin.load_state_dict(average.state_dict())
    with average.applied():
        assert torch.allclose(log_prob(glow), log_prob(twin), atol=1e-4)
    assert not torch.allclose(raw_logp, log_prob(twin), atol=1e-3)


def test_ema_run_evaluates_stores_and_resumes_its_average(tmp_path, mnist_root):
    straight = T.train(tiny(tmp_path / "a", mnist_root, max_steps=12, ema=0.9))
    T.train(tiny(tmp_path / "b", mnist_root, max_steps=7, checkpoint_every=3, ema=0.9))
    T.train(tiny(tmp_path / "b", mnist_root, max_steps=12, ema=0.9), resume=True)
    a, b = C.read_checkpoint(tmp_path / "a"), C.read_checkpoint(tmp_path / "b")
    assert a["ema_updates"] == b["ema_updates"] == 12
    assert_same_state(a["ema_model"], b["ema_model"])
    assert_same_state(a["model"], b["model"])
    assert any(not torch.equal(a["model"][k], a["ema_model"][k]) for k in a["model"])
    # load_checkpoint gives the average, the weights the run evaluated
    model, _ = C.load_checkpoint(tmp_path / "a")
    assert_same_state(model.state_dict(), a["ema_model"])
    assert math.isfinite(straight.test_bpd)
    # an average can start on resume, from the weights reached so far
    T.train(tiny(tmp_path / "c", mnist_root, max_steps=4))
    T.train(tiny(tmp_path / "c", mnist_root, max_steps=6, ema=0.9), resume=True)
    assert C.read_checkpoint(tmp_path / "c")["ema_updates"] == 2


# ------------------------------------------------------------------- starting from a checkpoint


def test_a_new_run_starts_from_a_checkpoints_weights_step_and_average(tmp_path, mnist_root):
    first = T.train(tiny(tmp_path / "a", mnist_root, max_steps=6, ema=0.9))
    # A run folder: its raw weights and its average; a fresh optimizer; steps continue.
    more = T.train(
        tiny(
            tmp_path / "b",
            mnist_root,
            max_steps=9,
            ema=0.9,
            eval_every=100,
            init_from=str(tmp_path / "a"),
        )
    )
    start = read_metrics(tmp_path / "b")[0]
    assert int(start["step"]) == 6
    assert float(start["test_bpd"]) == pytest.approx(
        first.test_bpd, abs=1e-5
    )  # same weights, same images (csv rounds)
    ckpt = C.read_checkpoint(tmp_path / "b")
    assert more.step == ckpt["step"] == 9 and ckpt["ema_updates"] == 9
    assert {int(s["step"]) for s in ckpt["optimizer"]["state"].values()} == {3}
    assert ckpt["wall_time"] > C.read_checkpoint(tmp_path / "a")["wall_time"]
    # A shipped checkpoint: the averaged weights only, no optimizer (as pretrained.export writes).
    model, a = C.load_checkpoint(tmp_path / "a")
    shipped = C.save_checkpoint(
        tmp_path / "shipped.pt",
        model,
        train_config=TC.TrainConfig(**a["train_config"]),
        step=a["step"],
        wall_time=a["wall_time"],
    )
    T.train(tiny(tmp_path / "c", mnist_root, max_steps=8, eval_every=100, init_from=str(shipped)))
    assert float(read_metrics(tmp_path / "c")[0]["test_bpd"]) == pytest.approx(
        first.test_bpd, abs=1e-5
    )
    assert C.read_checkpoint(tmp_path / "c")["step"] == 8


def test_starting_from_a_checkpoint_errors(tmp_path, mnist_root):
    T.train(tiny(tmp_path / "a", mnist_root, max_steps=4))
    with pytest.raises(C.CheckpointError, match=r"hidden=8 \(this run asks for 16\)"):
        T.train(tiny(tmp_path / "b", mnist_root, hidden=16, init_from=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="is at step 4, and this run would stop at step 3"):
        T.train(tiny(tmp_path / "b", mnist_root, max_steps=3, init_from=str(tmp_path / "a")))
    with pytest.raises(C.CheckpointError, match="Cannot start a run from it: no checkpoint at"):
        T.train(tiny(tmp_path / "b", mnist_root, init_from=str(tmp_path / "missing.pt")))
    # batch size and seed may change: only the architecture must match
    T.train(tiny(tmp_path / "b", mnist_root, batch_size=8, seed=1, init_from=str(tmp_path / "a")))
    # a checkpoint without optimizer state cannot be resumed exactly, and the error says what to do
    model, a = C.load_checkpoint(tmp_path / "a")
    C.save_checkpoint(
        tmp_path / "c" / "checkpoints" / "last.pt",
        model,
        train_config=TC.TrainConfig(**a["train_config"]),
        step=4,
    )
    with pytest.raises(C.CheckpointError, match="no optimizer state .* --init-from"):
        T.train(tiny(tmp_path / "c", mnist_root, max_steps=6), resume=True)


# --------------------------------------------------------------------------- checkpoints


def test_load_checkpoint_errors(tmp_path):
    simple = models.build_model("simple", (1, 8, 8), n_couplings=1, hidden=4)
    path = C.save_checkpoint(tmp_path / "simple.pt", simple, step=0)
    model, _ = C.load_checkpoint(path, model="simple")
    assert isinstance(model, models.SimpleFlow)
    with pytest.raises(C.CheckpointError, match="holds a 'simple' model .*not a 'glow'"):
        C.load_checkpoint(path, model="glow")
    with pytest.raises(C.CheckpointError, match="No checkpoint at"):
        C.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(C.CheckpointError, match="not a flowlib checkpoint"):
        C.load_checkpoint(tmp_path / "text.pt")
    torch.save(simple.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(C.CheckpointError, match="bare state dict"):
        C.load_checkpoint(tmp_path / "bare.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"]["hidden"] = 6  # the stored weights no longer fit
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(C.CheckpointError, match="do not fit"):
        C.load_checkpoint(tmp_path / "mismatch.pt")


def test_a_checkpoint_written_on_a_gpu_opens_on_the_cpu():
    # written by save_checkpoint from a CUDA model on an H200 (torch 2.11)
    path = Path(__file__).parent / "checkpoint_fixtures" / "glow_saved_on_cuda.pt"
    if not torch.cuda.is_available():  # what users hit without the default map_location
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    model, ckpt = C.load_checkpoint(path)
    assert model.device.type == "cpu" and ckpt["torch_version"].endswith("cu130")
    x = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    assert torch.isfinite(model.log_prob(x)).all()


def test_save_checkpoint_refuses_nan_and_keeps_the_old_file(tmp_path):
    model = models.build_model("glow", (1, 8, 8), K=1, L=1, hidden=4)
    path = C.save_checkpoint(tmp_path / "last.pt", model, step=1)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        C.save_checkpoint(path, model, step=2)
    assert C.read_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_build_model_errors():
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        models.build_model("nope", (1, 28, 28))
    with pytest.raises(ValueError, match="takes no K"):
        models.build_model("simple", (1, 28, 28), K=2)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*L"):
        models.build_model("glow", (1, 28, 28), L=3)
    assert (
        models.model_name(models.build_model("vardeq", (1, 8, 8), n_couplings=1, hidden=4))
        == "vardeq"
    )
    assert models.build_model("multiscale", (1, 8, 8), hidden=4).config["hidden"] == (4, 6, 8)


# --------------------------------------------------------------------------- non-finite losses


def _nan_loss_at(calls):
    """A compute_loss that returns NaN (keeping the graph) on the given call numbers."""
    count = {"n": 0}
    real = T.compute_loss

    def fake(objective, x):
        count["n"] += 1
        loss = real(objective, x)
        return loss * float("nan") if calls(count["n"]) else loss

    return fake


def test_nan_loss_is_skipped_and_counted(tmp_path, mnist_root, monkeypatch, capsys):
    monkeypatch.setattr(training_run, "compute_loss", _nan_loss_at(lambda n: n == 3))
    result = T.train(tiny(tmp_path / "run", mnist_root, max_steps=8))
    assert result.step == 8 and result.skipped_steps == 1
    assert "step 3: non-finite loss nan" in capsys.readouterr().out
    assert read_metrics(tmp_path / "run")[-1]["skipped_steps"] == "1"
    model, ckpt = C.load_checkpoint(tmp_path / "run")
    assert ckpt["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_repeated_nan_losses_stop_and_keep_the_last_good_checkpoint(
    tmp_path, mnist_root, monkeypatch
):
    monkeypatch.setattr(training_run, "compute_loss", _nan_loss_at(lambda n: n > 6))
    cfg = tiny(tmp_path / "run", mnist_root, max_steps=50, checkpoint_every=3, max_bad_steps=4)
    ckpt_file = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(
        T.TrainingDiverged, match=rf"5 non-finite losses in a row.*{ckpt_file} \(step 6\)"
    ):
        T.train(cfg)
    model, ckpt = C.load_checkpoint(ckpt_file)
    assert ckpt["step"] == 6
    assert all(
        torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()
    )


# --------------------------------------------------------------------------- pieces


def test_sharded_batches_are_deterministic_and_disjoint():
    ranks = [batches.ShardedBatches(100, 8, seed=3, rank=r, world=2) for r in range(2)]
    assert ranks[0].per_epoch == 6
    a, b = ranks[0].indices(7), ranks[1].indices(7)  # epoch 1, batch 1
    assert not set(a.tolist()) & set(b.tolist())
    assert torch.equal(a, batches.ShardedBatches(100, 8, seed=3, rank=0, world=2).indices(7))
    assert not torch.equal(ranks[0].indices(1), a)
    with pytest.raises(ValueError, match="larger than the training set"):
        batches.ShardedBatches(10, 8, seed=0, world=2)


def test_random_hflip_mirrors_about_half_the_images():
    torch.manual_seed(0)
    x = torch.arange(400 * 2 * 3 * 4).reshape(400, 2, 3, 4)
    y = batches.random_hflip(x)
    mirrored = (y == x.flip(-1)).flatten(1).all(1)
    kept = (y == x).flatten(1).all(1)
    assert (mirrored ^ kept).all(), "every image is either kept or mirrored whole"
    assert 150 < mirrored.sum() < 250


def test_config_defaults_and_errors():
    cfg = TC.TrainConfig().resolved()
    assert (cfg.n_bits, cfg.size, cfg.K, cfg.L, cfg.hidden, cfg.lr, cfg.epochs) == (
        8,
        28,
        4,
        2,
        64,
        1e-3,
        2,
    )
    assert cfg.preprocess == "logit"
    assert cfg.out == "runs/mnist-glow"
    cel = TC.TrainConfig(dataset="celeba").resolved()
    assert (cel.n_bits, cel.size, cel.K, cel.L, cel.hidden, cel.preprocess) == (
        5,
        32,
        8,
        3,
        128,
        "center",
    )
    assert cel.hflip and not cfg.hflip  # faces are mirror-symmetric, digits are not
    assert TC.TrainConfig(model="simple").resolved().K is None
    with pytest.raises(ValueError, match="Unknown dataset 'cifar'"):
        TC.TrainConfig(dataset="cifar").resolved()
    with pytest.raises(ValueError, match="28 or 32"):
        TC.TrainConfig(size=64).resolved()
    with pytest.raises(ValueError, match="ema is the weight average's decay"):
        TC.TrainConfig(ema=1.0).resolved()


def test_make_grid_and_save_grid(tmp_path):
    images = torch.randint(0, 32, (10, 3, 5, 5))
    grid = make_grid(images, n_bits=5, nrow=4)
    assert grid.shape == (2 + 3 * 7, 2 + 4 * 7, 3) and grid.dtype.name == "uint8"
    assert grid[2:7, 2:7].max() <= 255 and math.isclose(
        grid[2, 2, 0], round(images[0, 0, 0, 0].item() * 255 / 31)
    )
    path = save_grid(torch.zeros(4, 1, 6, 6), tmp_path / "g" / "x.png", n_bits=8)
    assert path.is_file()


# -------------------------------------------------------------------- settings of a resumed run


def test_resuming_through_the_api_keeps_a_non_default_architecture(tmp_path, mnist_root):
    straight = T.train(tiny(tmp_path / "a", mnist_root, max_steps=8))
    T.train(tiny(tmp_path / "b", mnist_root, max_steps=4))
    # only the folder and the new length: K=1, L=1, hidden=8, batch 16 ... come from the run
    result = T.train(T.TrainConfig(out=str(tmp_path / "b"), max_steps=8), resume=True)
    assert result.step == 8
    assert_same_state(
        C.read_checkpoint(tmp_path / "a")["model"], C.read_checkpoint(tmp_path / "b")["model"]
    )
    assert straight.test_bpd == pytest.approx(result.test_bpd, abs=1e-9)


def test_a_typed_option_wins_over_the_stored_one_even_at_its_default(tmp_path, mnist_root):
    T.train(tiny(tmp_path / "run", mnist_root, max_steps=2, lr=2e-4))
    resumed = TC.run_config({"out": str(tmp_path / "run"), "lr": 1e-3}, resume=True)
    assert resumed.lr == 1e-3 and resumed.hidden == 8  # typed --lr 1e-3; stored width
    started = TC.run_config({"out": str(tmp_path / "new"), "init_from": str(tmp_path / "run")})
    assert (started.lr, started.hidden, started.out) == (2e-4, 8, str(tmp_path / "new"))
    with pytest.raises(ValueError, match="use one of them"):
        TC.run_config({"out": str(tmp_path / "run"), "init_from": "x"}, resume=True)


def test_learning_rate_warm_up_is_a_function_of_the_step():
    cfg = TC.TrainConfig(lr=1e-3, warmup_steps=4)
    assert [T.lr_at(cfg, s) for s in range(5)] == [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    assert T.lr_at(cfg, 100, warmup_from=100) == 2.5e-4  # a run started with --init-from
    assert T.lr_at(TC.TrainConfig(lr=1e-3, warmup_steps=0), 0) == 1e-3


def test_a_checkpoint_from_before_lr_at_resumes_its_warm_up(tmp_path, mnist_root):
    """Older checkpoints stored a LambdaLR whose ``last_epoch`` counted the steps since
    the warm-up began; resuming one continues the warm-up where it was."""
    T.train(tiny(tmp_path / "a", mnist_root, max_steps=8, warmup_steps=10))
    T.train(tiny(tmp_path / "b", mnist_root, max_steps=4, warmup_steps=10))
    path = tmp_path / "b" / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["warmup_from"]
    ckpt["scheduler"] = {"last_epoch": 4, "base_lrs": [1e-3]}
    torch.save(ckpt, path)
    T.train(tiny(tmp_path / "b", mnist_root, max_steps=8, warmup_steps=10), resume=True)
    assert_same_state(
        C.read_checkpoint(tmp_path / "a")["model"], C.read_checkpoint(tmp_path / "b")["model"]
    )
