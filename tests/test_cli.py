"""The ``flowlib`` command: clear one-line errors, the sample/eval/interpolate commands,
and runs that survive ``kill -9`` and Ctrl-C."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY_ARGS
from PIL import Image

from flowlib import checkpoints as C
from flowlib import cli


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def spawn(*argv, env=None, **kw) -> subprocess.Popen:
    """``python -m flowlib ...`` in a fresh process (one torch thread: the machine is shared),
    with ``env`` added to the environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "flowlib", *map(str, argv)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def wait_for_checkpoint(
    path: Path, min_step: int, proc: subprocess.Popen, timeout: float = 300
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training ended early: {proc.communicate()}"
        if path.exists():
            step = C.read_checkpoint(path)["step"]
            if step >= min_step:
                return step
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(
        f"no checkpoint at step >= {min_step} after {timeout} s: {proc.communicate()}"
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_root) -> Path:
    """A tiny trained MNIST Glow run folder."""
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", "--out", out, "--data-root", mnist_root, "--max-steps", 8, *TINY_ARGS]
    assert cli.main([str(a) for a in argv]) == 0
    return out


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "cifar"], "Unknown dataset 'cifar'; choose one of mnist, celeba."),
        (["--model", "realnvp"], "Unknown model 'realnvp'"),
        (["--data-root", "/nonexistent"], "No MNIST data found"),
        (["--L", "3"], "cannot be squeezed L=3 times"),
        (["--model", "simple", "--K", "4"], "Model 'simple' takes no K"),
        (["--size", "64"], "28 or 32"),
        (["--ema", "1.5"], "ema is the weight average's decay, between 0 (off) and 1"),
        (["--compile", "--grad-checkpoint"], "--compile and --grad-checkpoint cannot be used"),
    ],
)
def test_train_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", *argv)
    assert code == 2
    assert err.startswith("flowlib train: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_resume_with_another_model_is_a_clear_error(capsys, run_dir):
    code, _, err = run_cli(capsys, "train", "--out", run_dir, "--resume", "--model", "simple")
    assert code == 2 and "was trained with model='glow' (this run asks for 'simple')" in err
    assert err.count("\n") == 1


def test_init_from_takes_the_checkpoints_settings(capsys, tmp_path, run_dir, mnist_root):
    code, out, _ = run_cli(
        capsys,
        "train",
        "--out",
        tmp_path / "more",
        "--init-from",
        run_dir,
        "--max-steps",
        10,
        "--data-root",
        mnist_root,
    )
    assert code == 0 and "done: step 10" in out
    config = C.read_checkpoint(tmp_path / "more")["train_config"]
    assert (config["K"], config["hidden"], config["batch_size"]) == (1, 8, 16)
    assert config["init_from"] == str(run_dir) and config["out"] == str(tmp_path / "more")
    code, _, err = run_cli(
        capsys, "train", "--out", tmp_path / "more", "--resume", "--init-from", run_dir
    )
    assert code == 2 and "use one of them" in err and err.count("\n") == 1
    code, _, err = run_cli(
        capsys, "train", "--out", tmp_path / "x", "--init-from", tmp_path / "missing.pt"
    )
    assert code == 2 and "Cannot start a run from it: no checkpoint at" in err


def test_checkpoint_errors_in_other_commands(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sample", "--checkpoint", tmp_path / "missing.pt")
    assert code == 2 and "No checkpoint at" in err
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    code, _, err = run_cli(capsys, "eval", "--checkpoint", tmp_path / "junk.pt")
    assert code == 2 and "is not a flowlib checkpoint" in err and err.count("\n") == 1


def test_missing_data_in_a_real_process_prints_no_traceback(tmp_path):
    proc = spawn("train", "--data-root", "/nonexistent", "--out", tmp_path / "run")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert err.startswith("flowlib train: error: No MNIST data found") and err.count("\n") == 1
    assert "Traceback" not in err + out


# --------------------------------------------------------------------------- commands


def test_sample_eval_interpolate(capsys, run_dir, tmp_path):
    code, out, _ = run_cli(
        capsys,
        "sample",
        "--checkpoint",
        run_dir,
        "--n",
        12,
        "--nrow",
        4,
        "--out",
        tmp_path / "s.png",
        "--device",
        "cpu",
    )
    assert code == 0 and "wrote 12 samples" in out
    assert Image.open(tmp_path / "s.png").size == (2 + 4 * 30, 2 + 3 * 30)

    code, out, _ = run_cli(
        capsys,
        "eval",
        "--checkpoint",
        run_dir / "checkpoints" / "last.pt",
        "--importance-samples",
        2,
        "--max-images",
        32,
    )
    assert code == 0 and out.startswith("test bpd ")
    assert 0 < float(out.split()[2]) < 9
    assert "32 of 10000 test images, a fixed shuffled subset, 2 importance samples" in out

    code, out, _ = run_cli(
        capsys,
        "interpolate",
        "--checkpoint",
        run_dir,
        "--steps",
        5,
        "--pairs",
        3,
        "--out",
        tmp_path / "i.png",
    )
    assert code == 0
    assert Image.open(tmp_path / "i.png").size == (2 + 5 * 30, 2 + 3 * 30)


def test_eval_subset_is_the_one_training_evaluates(capsys, run_dir):
    """``eval --max-images`` scores training's fixed shuffled subset, not the first test
    images (MNIST's first 5,000 are easier: they would flatter the model)."""
    from flowlib.metrics import evaluate_bpd, fair_order
    from flowlib.pretrained import test_set

    path = run_dir / "checkpoints" / "last.pt"
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", path, "--importance-samples", 1,
                           "--max-images", 32)  # fmt: skip
    assert code == 0
    model, ckpt = C.load_checkpoint(path)
    images = test_set(ckpt, ckpt["train_config"]["data_root"]).images

    def bpd(images):
        torch.manual_seed(0)
        return f"{evaluate_bpd(model.eval(), images, 256, 1, max_images=32):.4f}"

    assert out.split()[2] == bpd(fair_order(images)) != bpd(images)


# --------------------------------------------------------------------------- malloc

HEAP_AFTER_FREE = """
import ctypes, sys
import torch
from flowlib.runtime import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(50_000_000)  # 200 MB
mapped = libc.mallinfo2().hblkhd
del x
print(mapped, libc.mallinfo2().fordblks)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
@pytest.mark.parametrize("mode", ["default", "keep"])
def test_keep_freed_memory_serves_big_tensors_from_the_heap_and_keeps_them(mode):
    out = subprocess.run(
        [sys.executable, "-c", HEAP_AFTER_FREE, mode], capture_output=True, text=True, check=True
    ).stdout
    mapped, free_in_heap = map(int, out.split())
    if mode == "keep":  # from the heap, and still there after the free: no page faults next time
        assert mapped < 200_000_000 <= free_in_heap
    else:  # glibc's default: a fresh mapping, handed back to the OS at the free
        assert mapped >= 200_000_000 > free_in_heap


def test_compile_without_a_cxx_compiler_is_a_one_line_error(tmp_path, mnist_root):
    proc = spawn(
        "train", "--model", "simple", "--compile", "--hidden", "4", "--batch-size", "8",
        "--max-steps", "2", "--eval-every", "0", "--sample-every", "0", "--no-progress",
        "--out", tmp_path / "run", "--data-root", mnist_root,
        env={"CXX": "/bin/false", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")},
    )  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert "flowlib train: error: torch.compile could not build the fused ConcatELU" in err
    assert "needs a working C++ compiler" in err and "train without --compile" in err
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


# --------------------------------------------------------------------------- kill -9 and Ctrl-C


@pytest.mark.slow
def test_kill_9_then_resume_continues_from_the_last_checkpoint(tmp_path, mnist_root):
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "last.pt"
    proc = spawn(
        "train",
        "--out",
        out,
        "--data-root",
        mnist_root,
        "--max-steps",
        100000,
        "--checkpoint-every",
        5,
        "--log-every",
        1,
        *TINY_ARGS,
    )
    wait_for_checkpoint(ckpt, 5, proc)
    time.sleep(0.3)  # let it run on, maybe into the next checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    model, stored = C.load_checkpoint(ckpt)  # whatever moment the kill hit, the file is whole
    step = stored["step"]
    assert step >= 5 and step % 5 == 0

    proc = spawn("train", "--out", out, "--resume", "--max-steps", step + 7)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"resuming at step {step} of {step + 7}" in stdout
    assert "glibc malloc keeps freed memory for reuse" in stdout  # as the benchmarks time it
    assert C.read_checkpoint(ckpt)["step"] == step + 7
    assert [p.name for p in ckpt.parent.iterdir()] == [
        "last.pt"
    ]  # temp files of the killed run removed
    steps = [int(line.split(",")[0]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == step + 7  # rows after the kill were dropped


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path, mnist_root):
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "last.pt"
    proc = spawn(
        "train",
        "--out",
        out,
        "--data-root",
        mnist_root,
        "--max-steps",
        100000,
        "--checkpoint-every",
        5,
        *TINY_ARGS,
    )
    wait_for_checkpoint(ckpt, 5, proc)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = next(s for s in stdout.splitlines() if s.startswith("Interrupted at step"))
    step = int(line.split()[3].rstrip(":"))
    model, stored = C.load_checkpoint(ckpt)
    assert stored["step"] == step and step >= 5
    assert all(torch.isfinite(p).all() for p in model.parameters())
