"""Coupling networks in bfloat16 and with gradient checkpointing: what changes, what must not."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny

from flowlib import training_run
from flowlib.checks import perturb_
from flowlib.layers import nets
from flowlib.layers.networks_mode import coupling_networks
from flowlib.models import Glow, MultiscaleFlow


def glow(dtype=torch.float32):
    return perturb_(Glow((1, 8, 8), K=2, L=2, hidden=16, logit_alpha=1e-5), scale=0.05).to(dtype)


def images(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g)


def loss_and_grads(model, x, **mode):
    model.zero_grad()
    torch.manual_seed(0)  # the same dequantization noise
    with coupling_networks(**mode):
        loss = model.bpd(x).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "make",
    [
        lambda: glow(torch.float64),
        lambda: perturb_(MultiscaleFlow((1, 8, 8), hidden=(4, 6, 8))).double(),
    ],
)
def test_gradient_checkpointing_gives_the_same_gradients(make):
    model, x = make(), images()
    loss, grads = loss_and_grads(model, x)
    loss_rc, grads_rc = loss_and_grads(model, x, recompute=True)
    assert torch.equal(loss, loss_rc)
    for name, g in grads.items():
        assert torch.allclose(grads_rc[name], g, rtol=1e-10, atol=1e-12), name


def test_fused_concat_elus_give_the_same_loss_and_gradients():
    model = perturb_(MultiscaleFlow((1, 8, 8), hidden=(4, 6, 8)))
    model = model.to(memory_format=torch.channels_last)  # as flowlib train runs on a CPU
    x = images()
    loss, grads = loss_and_grads(model, x)
    calls = nets._compiled_concat_elu.cache_info()
    loss_fused, grads_fused = loss_and_grads(model, x, fuse=True)
    assert nets._compiled_concat_elu.cache_info().hits > calls.hits  # the fused path ran
    assert torch.allclose(loss_fused, loss, rtol=1e-6), (loss_fused, loss)
    for name, g in grads.items():
        assert torch.allclose(grads_fused[name], g, rtol=1e-4, atol=1e-6), name
    # torch.utils.checkpoint cannot recompute compiled kernels' saved tensors: a clear error
    with pytest.raises(ValueError, match="--compile and --grad-checkpoint cannot be used"):
        loss_and_grads(model, x, fuse=True, recompute=True)


def test_bf16_networks_run_in_bf16_while_log_dets_stay_in_float32():
    model, x = glow(), images()
    seen = []
    net = model.levels[0][1].layers[2].net  # the first coupling's network ...
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))  # ... its first conv
    handle = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with coupling_networks(dtype=torch.bfloat16):
        latents, logdet = model.encode(x)
    assert seen == [torch.bfloat16]
    assert logdet.dtype == torch.float32 and all(z.dtype == torch.float32 for z in latents)
    seen.clear()
    latents, _ = model.encode(x)  # outside the block: full precision, exact round trip
    handle.remove()
    assert seen == [torch.float32] and torch.equal(model.decode(latents), x.float())


def test_bf16_loss_and_gradients_agree_with_float32():
    model, x = glow(), images(64)
    loss, grads = loss_and_grads(model, x)
    loss_bf16, grads_bf16 = loss_and_grads(model, x, dtype=torch.bfloat16)
    assert abs(loss_bf16.item() - loss.item()) < 0.01, (loss_bf16.item(), loss.item())
    flat = torch.cat([g.flatten() for g in grads.values()])
    flat_bf16 = torch.cat([g.flatten() for g in grads_bf16.values()])
    cosine = torch.nn.functional.cosine_similarity(flat, flat_bf16, dim=0)
    assert cosine > 0.99, f"bf16 gradients point elsewhere (cosine {cosine:.3f})"


def test_bf16_is_chosen_by_the_cpu_unless_asked(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(training_run, "cpu_has_bf16", lambda: True)
    assert training_run.network_precision(None, cpu)[0] == torch.bfloat16
    assert training_run.network_precision(False, cpu)[0] is None
    assert training_run.network_precision(None, cuda)[0] is None
    assert training_run.network_precision(True, cuda)[0] == torch.bfloat16
    monkeypatch.setattr(training_run, "cpu_has_bf16", lambda: False)
    assert training_run.network_precision(None, cpu)[0] is None
    assert training_run.network_precision(True, cpu)[0] == torch.bfloat16


def test_training_with_bf16_and_checkpointing_says_so(tmp_path, mnist_root, capsys):
    from flowlib import train as T

    result = T.train(
        tiny(tmp_path / "run", mnist_root, max_steps=4, bf16=True, grad_checkpoint=True)
    )
    out = capsys.readouterr().out
    assert result.step == 4 and result.skipped_steps == 0
    assert "coupling networks in bfloat16 (--bf16)" in out and "gradient checkpointing" in out
    T.train(tiny(tmp_path / "compiled", mnist_root, max_steps=2, compile=True))
    assert "--compile does nothing for glow (it has no ConcatELU)" in capsys.readouterr().out


def test_training_the_simple_flow_with_fused_concat_elus_says_so(tmp_path, mnist_root, capsys):
    from flowlib import train as T

    cfg = tiny(tmp_path / "run", mnist_root, model="simple", K=None, L=None, compile=True)
    result = T.train(cfg)
    assert result.step == 10 and result.skipped_steps == 0 and result.test_bpd < 8
    assert "ConcatELUs fused by torch.compile" in capsys.readouterr().out
