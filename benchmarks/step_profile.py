"""Where the time of one ``flowlib train`` step goes: convolutions, elementwise work, casts.

    python benchmarks/step_profile.py                  # MNIST Glow K=8 L=2 width 128, batch 64
    python benchmarks/step_profile.py --config celeba --bf16
    python benchmarks/step_profile.py --model simple   # the UvA simple flow, batch 64
    python benchmarks/step_profile.py --model simple --compile   # its ConcatELUs fused

Builds the model as ``flowlib train`` runs it (channels_last on the CPU, coupling networks
in bfloat16 where the CPU computes it natively, or as ``--bf16/--no-bf16`` say), profiles a
few full training steps with ``torch.profiler`` after a warm-up, and prints the self time of
the operators grouped by kind, per step, largest first, with the top operators of each kind,
and the rate of the convolutions (the profiler's FLOP count of the forward ones; the backward
is counted as twice the forward: gradients of the input and of the weights).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from train_throughput import CONFIGS, cpu_name, flowlib_glow, train_steps, tune_malloc


def kind_of(op: str) -> str:
    """The kind of an aten operator (its name without ``aten::``)."""
    if "conv" in op:
        return "convolutions"
    if op in ("copy_", "_to_copy", "to", "clone", "contiguous", "_copy_from"):
        return "casts and copies"
    if op.startswith("_foreach") or op == "linalg_vector_norm":  # Adam, gradient clipping
        return "optimizer and clipping"
    if op in ("mm", "bmm", "matmul", "addmm") or op.startswith(("linalg_", "lu", "triangular")):
        return "matrix algebra (1x1 convs' LU)"
    return "elementwise, reductions, other"


def simple_flow(cfg, device, net_dtype, fuse=False):
    """The UvA simple flow as flowlib train runs it, with the same loss as flowlib_glow."""
    import torch

    from flowlib.layers.networks_mode import coupling_networks
    from flowlib.models.realnvp import SimpleFlow

    torch.manual_seed(0)
    fmt = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model = SimpleFlow(cfg["shape"], n_bits=cfg["n_bits"]).to(device).to(memory_format=fmt)

    def loss(x):
        with coupling_networks(net_dtype, fuse=fuse):
            return model.bpd(x.contiguous(memory_format=fmt)).mean()

    return model, loss


def profile_steps(model, loss, x, steps, device):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    train_steps(model, loss, x, 3, device)  # warm-up
    with profile(activities=activities, with_flops=True) as prof:
        train_steps(model, loss, x, steps, device)
    timed = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    per_kind, top = defaultdict(float), defaultdict(list)
    conv_flops, conv_us = 0.0, {"forward": 0.0, "backward": 0.0}
    for event in prof.key_averages():
        conv_flops += event.flops if event.key == "aten::conv2d" else 0
        us = getattr(event, timed, 0.0)
        if us <= 0 or not event.key.startswith("aten::"):
            continue  # autograd and profiler wrappers: their time is in the aten ops below
        kind = kind_of(event.key.removeprefix("aten::"))
        per_kind[kind] += us / steps / 1e3
        top[kind].append((us / steps / 1e3, event.key))
        if kind == "convolutions":
            conv_us["backward" if "backward" in event.key else "forward"] += us
    rates = {  # GFLOP/s: FLOPs per microsecond / 1e3
        "forward": conv_flops / max(conv_us["forward"], 1e-9) / 1e3,
        "backward": 2 * conv_flops / max(conv_us["backward"], 1e-9) / 1e3,
    }
    return per_kind, top, rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=list(CONFIGS), default="mnist")
    parser.add_argument("--model", choices=["glow", "simple"], default="glow")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--steps", type=int, default=5, help="profiled training steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action="store_true", help="fuse the simple flow's ConcatELUs")
    parser.add_argument("--no-malloc-tuning", dest="no_malloc_tuning", action="store_true")
    args = parser.parse_args(argv)
    tune_malloc(args)

    import torch

    from flowlib.runtime import resolve_device
    from flowlib.training_run import network_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = CONFIGS[args.config]
    net_dtype = network_precision(args.bf16, device)[0]
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_name()}, {torch.get_num_threads()} threads"
    )
    if args.model == "simple":
        model, loss = simple_flow(cfg, device, net_dtype, fuse=args.compile)
        what = f"UvA simple flow, batch {cfg['batch']}" + (
            ", ConcatELUs fused" if args.compile else ""
        )
    else:
        model, loss, _ = flowlib_glow(cfg, device, device.type == "cpu", net_dtype)
        what = f"Glow K={cfg['K']} L={cfg['L']} width {cfg['hidden']}, batch {cfg['batch']}"
    model._bench_opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2 ** cfg["n_bits"], (cfg["batch"], *cfg["shape"]), generator=g)
    per_kind, top, rates = profile_steps(model, loss, x.to(device), args.steps, device)
    total = sum(per_kind.values())
    print(f"torch {torch.__version__} on {where}")
    print(
        f"{args.config}: {what}; coupling networks in {net_dtype or 'float32'}; "
        f"self time per step, {args.steps} steps profiled: {total:.1f} ms"
    )
    for kind, ms in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        names = ", ".join(
            f"{name.removeprefix('aten::')} {t:.1f}" for t, name in sorted(top[kind])[::-1][:4]
        )
        print(f"  {kind:32s} {ms:8.1f} ms {100 * ms / total:5.1f}%   ({names})")
    print(
        f"  convolutions run at {rates['forward']:.1f} GFLOP/s forward, "
        f"{rates['backward']:.1f} backward (counted as twice the forward's FLOPs)"
    )


if __name__ == "__main__":
    main()
