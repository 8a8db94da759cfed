"""What ``torch.compile`` buys flowlib's training step, against what it costs to compile.

    python benchmarks/compile_gain.py                  # MNIST Glow K=8 L=2 width 128, batch 64
    python benchmarks/compile_gain.py --config celeba --device cuda

Builds flowlib's Glow as ``flowlib train`` runs it (channels_last on the CPU, coupling
networks in bfloat16 where the device computes it natively, see train_throughput.py),
compiles its loss with inductor, and prints the time to the end of the first compiled step
(compilation included), then the median images/s of eager and compiled training steps in
interleaved windows, and their ratio. The input check's ``.item()`` calls break the graph
in two; the flow itself compiles as one graph.
"""

from __future__ import annotations

import argparse
import statistics

from train_throughput import CONFIGS, cpu_name, flowlib_glow, train_steps, tune_malloc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=list(CONFIGS), default="mnist")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="training steps per window")
    parser.add_argument("--no-malloc-tuning", dest="no_malloc_tuning", action="store_true")
    args = parser.parse_args(argv)
    tune_malloc(args)

    import torch

    from flowlib.runtime import resolve_device
    from flowlib.training_run import network_precision

    device = resolve_device(args.device)
    cfg = CONFIGS[args.config]
    net_dtype = network_precision(None, device)[0]
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_name()}, {torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__} on {where}; coupling networks in {net_dtype or 'float32'}")
    model, loss, _ = flowlib_glow(cfg, device, device.type == "cpu", net_dtype)
    model._bench_opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    compiled = torch.compile(loss, mode=args.mode)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2 ** cfg["n_bits"], (cfg["batch"], *cfg["shape"]), generator=g)
    x = x.to(device)

    first = train_steps(model, compiled, x, 1, device)
    print(f"first compiled step (compilation included): {first:.1f} s")
    train_steps(model, compiled, x, 2, device)  # warm-up of both
    train_steps(model, loss, x, 2, device)
    rates = {"eager": [], "compiled": []}
    for _ in range(args.windows):
        for key, fn in (("eager", loss), ("compiled", compiled)):
            seconds = train_steps(model, fn, x, args.steps, device)
            rates[key].append(args.steps * cfg["batch"] / seconds)
    med = {k: statistics.median(v) for k, v in rates.items()}
    for key, values in rates.items():
        print(
            f"  {key:9s} {med[key]:7.1f} img/s (windows: {', '.join(f'{v:.0f}' for v in values)})"
        )
    gain = med["compiled"] / med["eager"]
    saved = cfg["batch"] * (1 / med["eager"] - 1 / med["compiled"])  # seconds per step
    even = f"{first / saved:,.0f} steps" if saved > 0 else "never"
    print(f"  compiled / eager: x{gain:.2f}; compilation pays for itself after {even}")
    return med


if __name__ == "__main__":
    main()
