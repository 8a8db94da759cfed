"""Peak memory and step time of a Glow training step with and without --grad-checkpoint.

    python benchmarks/grad_checkpoint_memory.py                 # CelebA-64-like, K=8 L=3 width 256
    python benchmarks/grad_checkpoint_memory.py --K 32 --hidden 512 --batch 16

Each setting runs in a fresh process (peak RSS is per process: ``ru_maxrss``), on random
5-bit 3x64x64 images (speed and memory do not depend on the pixel values): ActNorm's
init, one warm-up step, then ``--steps`` timed steps. It prints peak RSS, the median step
time and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def one_setting(args) -> dict:
    import torch

    from flowlib.layers.networks_mode import coupling_networks
    from flowlib.models import Glow

    torch.manual_seed(0)
    model = Glow((3, args.size, args.size), K=args.K, L=args.L, hidden=args.hidden, n_bits=5)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randint(0, 32, (args.batch, 3, args.size, args.size))
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model.log_prob(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for step in range(args.steps + 1):
        start = time.perf_counter()
        with coupling_networks(recompute=args.recompute):
            loss = model.bpd(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mb": peak_mb, "step_s": statistics.median(times), "loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--L", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--recompute", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_setting(args)))
        return
    results = {}
    for recompute in (False, True):
        cmd = [sys.executable, __file__, "--one", *sys.argv[1:]] + (["--recompute"] * recompute)
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[recompute] = json.loads(done.stdout.strip().splitlines()[-1])
    import torch

    print(
        f"Glow K={args.K} L={args.L} width {args.hidden}, 3x{args.size}x{args.size} 5-bit, "
        f"batch {args.batch}, channels_last, float32, {torch.get_num_threads()} threads; "
        f"median of {args.steps} steps after one warm-up"
    )
    for recompute, r in results.items():
        label = "--grad-checkpoint" if recompute else "plain"
        print(f"  {label:18s} peak RSS {r['peak_mb']:8.0f} MB   step {r['step_s']:7.2f} s")
    plain, rc = results[False], results[True]
    memory, slower = rc["peak_mb"] / plain["peak_mb"], rc["step_s"] / plain["step_s"]
    print(f"  memory x{memory:.2f}, time x{slower:.2f}")


if __name__ == "__main__":
    main()
