"""Two processes under torchrun (gloo backend, CPU) train one tiny Glow in step.

The test hook FLOWLIB_DEBUG_PARAM_DUMP=1 makes every rank save its state dict right
after ActNorm's data-dependent init (``debug/rank<r>_init.pt``, before the model is
wrapped in DDP, whose broadcast would hide differences) and at the end
(``debug/rank<r>.pt``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from flowlib import checkpoints as C


@pytest.mark.slow
def test_torchrun_two_cpu_processes_stay_identical_and_learn(tmp_path, mnist_root):
    out = tmp_path / "run"
    env = {**os.environ, "FLOWLIB_DEBUG_PARAM_DUMP": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "flowlib",
        "train",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--data-root",
        str(mnist_root),
        "--K",
        "1",
        "--L",
        "2",
        "--hidden",
        "16",
        "--preprocess",
        "center",
        "--batch-size",
        "32",
        "--max-steps",
        "60",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "10",
        "--eval-every",
        "30",
        "--eval-images",
        "300",
        "--final-eval-images",
        "300",
        "--sample-every",
        "0",
        "--checkpoint-every",
        "30",
        "--log-every",
        "10",
        "--no-progress",
    ]
    # centred (not the MNIST default logit): from ~8 bpd, where a drop of 1 bpd is quick
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    assert proc.stdout.count("flowlib train: glow") == 1  # only rank 0 logs

    debug = out / "debug"
    init = [torch.load(debug / f"rank{r}_init.pt") for r in range(2)]
    final = [torch.load(debug / f"rank{r}.pt") for r in range(2)]
    actnorm = [
        k
        for k in init[0]
        if k.endswith((".bias", ".log_scale")) and ".net." not in k and "prior" not in k
    ]
    assert actnorm and all(init[0][k.rsplit(".", 1)[0] + ".initialized"] for k in actnorm)
    for k in actnorm:  # ranks saw different batches, yet all-reduced statistics agree
        assert torch.equal(init[0][k], init[1][k]), k
    for k in final[0]:
        assert torch.equal(final[0][k], final[1][k]), f"{k} differs between the ranks"

    model, ckpt = C.load_checkpoint(out)
    assert ckpt["step"] == 60 and len(ckpt["rng"]) == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, final[0][k]), k

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first_test, last_test = float(rows[0]["test_bpd"]), float(rows[-1]["test_bpd"])
    train_bpd = [float(r["train_bpd"]) for r in rows if r["train_bpd"]]
    assert train_bpd[-1] < train_bpd[0] - 1.0, train_bpd
    assert last_test < first_test - 1.0, (first_test, last_test)
