"""LayerNormChannels (the UvA flows' per-pixel layer norm): fused versus spelled out.

    python benchmarks/layer_norm_channels.py          # ~1 minute on 2 CPU cores

Times forward + backward of flowlib's ``LayerNormChannels`` (``F.layer_norm`` on the
channels-last view) against the formula written out with mean/var, on the activations
of the multi-scale flow's first level (batch 128, 32 channels, 28x28), in both memory
layouts, interleaving the two window by window; then a full training step of the UvA
multi-scale flow (batch 128, channels_last, as ``flowlib train`` runs on the CPU) with
each. Prints medians. Keeps freed memory for reuse as `flowlib train` does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from flowlib.layers import LayerNormChannels
from flowlib.models import build_model
from flowlib.runtime import keep_freed_memory


def spelled_out(norm: LayerNormChannels, x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.gamma + norm.beta


def seconds(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="training steps per window")
    args = parser.parse_args()
    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    norm = LayerNormChannels(32)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(128, 32, 28, 28).contiguous(memory_format=layout).requires_grad_()
        runs = {
            "fused": lambda x=x: norm(x).sum().backward(),
            "spelled out": lambda x=x: spelled_out(norm, x).sum().backward(),
        }
        times = {name: [] for name in runs}
        for fn in runs.values():
            fn()  # warm-up
        for _ in range(args.windows):
            for name, fn in runs.items():
                times[name].append(seconds(fn, 10))
        fused, spelled = (statistics.median(times[n]) * 1e3 for n in runs)
        print(
            f"layer norm forward+backward, {str(layout).split('.')[-1]}: fused {fused:.1f} ms, "
            f"spelled out {spelled:.1f} ms (x{spelled / fused:.1f})"
        )

    model = build_model("multiscale", (1, 28, 28), n_bits=8).to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (128, 1, 28, 28)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model.log_prob(images)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        loss = -model.log_prob(images).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    fused_forward = LayerNormChannels.forward
    variants = {"fused": fused_forward, "spelled out": spelled_out}
    rates = {name: [] for name in variants}
    for _ in range(args.windows + 1):  # the first window warms up
        for name, forward in variants.items():
            LayerNormChannels.forward = forward
            rates[name].append(len(images) / seconds(step, args.steps))
    LayerNormChannels.forward = fused_forward
    fused, spelled = (statistics.median(rates[n][1:]) for n in variants)
    print(
        f"UvA multi-scale flow, training step, batch 128, channels_last: {fused:.1f} images/s "
        f"with the fused "
        f"layer norm, {spelled:.1f} spelled out (x{fused / spelled:.2f})"
    )


if __name__ == "__main__":
    main()
