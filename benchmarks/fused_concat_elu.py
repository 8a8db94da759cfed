"""What ``flowlib train --compile`` (the UvA flows' ConcatELUs fused) buys a training step.

    python benchmarks/fused_concat_elu.py                   # simple flow, batch 64
    python benchmarks/fused_concat_elu.py --model vardeq --threads 1

Builds the UvA flow as ``flowlib train`` runs it (channels_last on the CPU, freed memory
kept for reuse), and times full training steps with the eager ConcatELUs and with the
fused ones (``coupling_networks(fuse=True)``) in interleaved windows. Prints the time of
the first fused step (compilation included), the median images/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics

from train_throughput import cpu_name, train_steps, tune_malloc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["simple", "vardeq", "multiscale"], default="simple")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="training steps per window")
    parser.add_argument("--no-malloc-tuning", dest="no_malloc_tuning", action="store_true")
    args = parser.parse_args(argv)
    malloc = tune_malloc(args)

    import torch

    from flowlib.layers.networks_mode import coupling_networks
    from flowlib.models import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"torch {torch.__version__} on {cpu_name()}, {torch.get_num_threads()} threads; "
          f"glibc malloc {malloc}")  # fmt: skip
    torch.manual_seed(0)
    model = build_model(args.model, image_shape=(1, 28, 28), n_bits=8)
    model = model.to(memory_format=torch.channels_last)
    model._bench_opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def loss(fuse):
        def value(x):
            with coupling_networks(fuse=fuse):
                return model.bpd(x.contiguous(memory_format=torch.channels_last)).mean()

        return value

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 1, 28, 28), generator=g)
    first = train_steps(model, loss(True), x, 1, device)
    print(f"{args.model}, batch {args.batch}: first fused step (compiling included) {first:.1f} s")
    train_steps(model, loss(False), x, 1, device)  # warm-up of the eager path
    rates = {"eager": [], "fused": []}
    for _ in range(args.windows):
        for key in rates:
            seconds = train_steps(model, loss(key == "fused"), x, args.steps, device)
            rates[key].append(args.steps * args.batch / seconds)
    med = {k: statistics.median(v) for k, v in rates.items()}
    for key, values in rates.items():
        windows = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {key:6s} {med[key]:7.2f} img/s (windows: {windows})")
    print(f"  fused / eager: x{med['fused'] / med['eager']:.2f}")
    return med


if __name__ == "__main__":
    main()
