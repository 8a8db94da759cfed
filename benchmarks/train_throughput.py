"""Training and sampling throughput of flowlib's Glow against normflows' Glow.

    python benchmarks/train_throughput.py        # MNIST and CelebA-32, ~4 minutes on 2 CPU cores
    python benchmarks/train_throughput.py --quick    # fewer, shorter windows (~1 minute)
    python benchmarks/train_throughput.py --config mnist --device cuda --batch 1024

For each architecture it builds flowlib's Glow as ``flowlib train`` runs it (channels_last
on the CPU, coupling networks in bfloat16 where the CPU computes it natively), the same
in float32, and normflows' Glow with the same K, L and width in its default layout and in
channels_last (its best CPU setting), and times full training steps (dequantization,
forward, backward, Adam) on random integer images:
warm-up, then several timed windows, interleaving the models window by window so
that load from other processes hits all of them alike. It prints the median
images/s, the ratios of flowlib's default to each normflows variant, and sampling
throughput (64 samples at temperature 0.7, full precision). Speed does not depend on
the pixel values, so no data is needed.

normflows' model follows its Glow example (GlowBlock, Squeeze, Merge, one
DiagGaussian per level, LU 1x1 convs, sigmoid scale); it has no learned split
priors, which flowlib's Glow has (a zero-initialised 3x3 conv per split), so
flowlib does a little more work per step.

glibc's malloc returns big freed buffers to the OS after every step, which makes CPU
steps slower and noisy; unless ``--no-malloc-tuning`` is given the script keeps freed
memory for reuse as ``flowlib train`` does (``flowlib.runtime.keep_freed_memory``), for
every model of the run alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

CONFIGS = {
    "mnist": dict(shape=(1, 28, 28), n_bits=8, K=8, L=2, hidden=128, batch=64),
    "celeba": dict(shape=(3, 32, 32), n_bits=5, K=8, L=3, hidden=128, batch=64),
}


def cpu_name() -> str:
    """The CPU's model name, as lscpu prints it, and whether it computes bf16 natively."""
    from flowlib.layers.networks_mode import cpu_has_bf16

    try:
        with open("/proc/cpuinfo") as f:
            name = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        import platform

        name = platform.processor() or platform.machine()
    return f"{name} ({'with' if cpu_has_bf16() else 'without'} native bf16)"


def tune_malloc(args) -> str:
    """Keep freed memory as ``flowlib train`` does, unless ``--no-malloc-tuning``."""
    from flowlib.runtime import keep_freed_memory

    return "tuned" if not args.no_malloc_tuning and keep_freed_memory() else "default"


# --------------------------------------------------------------------------- models


def flowlib_glow(cfg, device, channels_last, net_dtype=None):
    import torch

    from flowlib import Glow
    from flowlib.layers.networks_mode import coupling_networks

    torch.manual_seed(0)
    model = Glow(
        cfg["shape"], K=cfg["K"], L=cfg["L"], hidden=cfg["hidden"], n_bits=cfg["n_bits"]
    ).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    n_bins = 2 ** cfg["n_bits"]

    def loss(x):
        with coupling_networks(net_dtype):
            return model.bpd(x.contiguous(memory_format=fmt)).mean()

    def sample(n, t):
        return model.sample(n, t)

    with torch.no_grad():  # ActNorm's data-dependent init
        model.log_prob(torch.randint(0, n_bins, (cfg["batch"], *cfg["shape"]), device=device))
    return model, loss, sample


def normflows_glow(cfg, device, channels_last=False):
    """Glow as in normflows' examples/glow.ipynb (without class conditioning)."""
    import math

    import normflows as nf
    import torch

    torch.manual_seed(0)
    c, h, w = cfg["shape"]
    L, K = cfg["L"], cfg["K"]
    q0, merges, flows = [], [], []
    for i in range(L):
        flows.append(
            [
                nf.flows.GlowBlock(
                    c * 2 ** (L + 1 - i), cfg["hidden"], split_mode="channel", scale=True
                )
                for _ in range(K)
            ]
            + [nf.flows.Squeeze()]
        )
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (L - i), h // 2 ** (L - i), w // 2 ** (L - i))
        else:
            latent = (c * 2 ** (L + 1), h // 2**L, w // 2**L)
        q0.append(nf.distributions.DiagGaussian(latent))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    n_bins = 2 ** cfg["n_bits"]
    d = c * h * w

    def loss(x):  # dequantize to [0, 1) like nf.utils.Jitter, then bits per dim incl. the bin width
        v = (x.float() + torch.rand_like(x, dtype=torch.float)) / n_bins
        v = v.contiguous(memory_format=fmt)
        return (model.forward_kld(v, None) + d * math.log(n_bins)) / (d * math.log(2))

    def sample(n, t):
        return model.sample(n, temperature=t)

    with torch.no_grad():
        model.log_prob(torch.rand(cfg["batch"], c, h, w, device=device), None)
    return model, loss, sample


# --------------------------------------------------------------------------- timing


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(model, loss, x, steps, device):
    """Seconds for ``steps`` Adam steps on batch ``x``."""
    import torch

    opt = model._bench_opt
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        value = loss(x)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        opt.step()
    _sync(device)
    if not torch.isfinite(value):
        raise RuntimeError("non-finite loss in the benchmark")
    return time.perf_counter() - t


def sample_time(model, sample, n, device):
    import torch

    model.eval()
    _sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        sample(n, 0.7)
    _sync(device)
    model.train()
    return time.perf_counter() - t


def bench_config(name, cfg, args, device):
    import torch

    from flowlib.training_run import network_precision

    net_dtype = network_precision(args.bf16, device)[0]
    default = "flowlib train" + (" (bf16 nets)" if net_dtype else "")
    cl = device.type == "cpu"  # flowlib train's layout on each device
    variants = {
        default: lambda: flowlib_glow(cfg, device, cl, net_dtype),
        "flowlib float32": lambda: flowlib_glow(cfg, device, cl),
        "normflows": lambda: normflows_glow(cfg, device),
        "normflows channels_last": lambda: normflows_glow(cfg, device, True),
    }
    if net_dtype is None:
        variants.pop("flowlib float32")
    built = {}
    for key, make in variants.items():
        model, loss, sample = make()
        model._bench_opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        built[key] = (model, loss, sample)
    n_bins = 2 ** cfg["n_bits"]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, n_bins, (cfg["batch"], *cfg["shape"]), generator=g).to(device)
    params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _, _) in built.items()}

    for model, loss, _ in built.values():  # warm-up
        train_steps(model, loss, x, args.warmup, device)
    train = {k: [] for k in built}
    for _ in range(args.windows):  # interleaved windows
        for key, (model, loss, _) in built.items():
            train[key].append(
                args.steps * cfg["batch"] / train_steps(model, loss, x, args.steps, device)
            )
    samples = {k: [] for k in built}
    for model, _, sample in built.values():
        sample_time(model, sample, args.n_samples, device)  # warm-up (and W^-1 caches)
    for _ in range(args.sample_windows):
        for key, (model, _, sample) in built.items():
            samples[key].append(args.n_samples / sample_time(model, sample, args.n_samples, device))

    print(
        f"\n{name}: {cfg['shape']} {cfg['n_bits']}-bit, Glow K={cfg['K']} L={cfg['L']} "
        f"width {cfg['hidden']}, "
        f"batch {cfg['batch']}; median of {args.windows} windows of {args.steps} steps"
    )
    print(
        f"  {'model':28s} {'params':>10s} {'train img/s':>12s} {'(min-max)':>14s} "
        f"{'sample img/s':>13s}"
    )
    med = {k: statistics.median(v) for k, v in train.items()}
    smed = {k: statistics.median(v) for k, v in samples.items()}
    for key in built:
        lo, hi = min(train[key]), max(train[key])
        print(
            f"  {key:28s} {params[key]:>10,d} {med[key]:>12.0f} "
            f"{f'({lo:.0f}-{hi:.0f})':>14s} {smed[key]:>13.0f}"
        )
    for peer in ("normflows", "normflows channels_last"):
        print(
            f"  {default} / {peer}: training x{med[default] / med[peer]:.2f}, "
            f"sampling x{smed[default] / smed[peer]:.2f}"
        )
    return med, smed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter windows")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per model")
    parser.add_argument("--windows", type=int, default=None, help="timed windows per model")
    parser.add_argument("--steps", type=int, default=None, help="training steps per window")
    parser.add_argument(
        "--batch", type=int, default=None, help="training batch size (default: the config's, 64)"
    )
    parser.add_argument("--n-samples", dest="n_samples", type=int, default=64)
    parser.add_argument("--sample-windows", dest="sample_windows", type=int, default=None)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flowlib's coupling networks in bf16 (default: as flowlib train)",
    )
    parser.add_argument(
        "--no-malloc-tuning",
        dest="no_malloc_tuning",
        action="store_true",
        help="leave glibc malloc at its defaults",
    )
    args = parser.parse_args(argv)
    malloc = tune_malloc(args)
    args.warmup = args.warmup or (3 if args.quick else 5)
    args.windows = args.windows or (3 if args.quick else 5)
    args.steps = args.steps or (5 if args.quick else 10)
    args.sample_windows = args.sample_windows or (2 if args.quick else 3)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from flowlib.runtime import resolve_device

    device = resolve_device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_name()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores"
    )
    print(f"torch {torch.__version__} on {where}; glibc malloc {malloc}")
    for name in CONFIGS if args.config == "all" else [args.config]:
        cfg = dict(CONFIGS[name], batch=args.batch or CONFIGS[name]["batch"])
        bench_config(name, cfg, args, device)


if __name__ == "__main__":
    main()
