"""The ``flowlib`` command: train, sample, eval, interpolate.

    flowlib train --model glow --dataset mnist --out runs/mnist-glow
    flowlib train --out runs/mnist-glow --resume --max-steps 5000
    torchrun --nproc_per_node=2 -m flowlib train --model glow --dataset celeba
    flowlib sample --checkpoint runs/mnist-glow --n 64 --temperature 0.7 --out samples.png
    flowlib eval --checkpoint runs/mnist-glow --importance-samples 8
    flowlib interpolate --checkpoint runs/mnist-glow --steps 8 --out interp.png
    flowlib pretrained [--check | --full]          # the shipped checkpoints, re-evaluated
    flowlib export runs/mnist-glow mnist_glow --command "flowlib train ..." --data "MNIST, 60,000"

``--checkpoint`` takes a checkpoint file or a run folder (its checkpoints/last.pt).

Exit codes: 0 done; 2 bad input (unknown model or dataset, missing data, a checkpoint
that does not fit, sizes the model cannot handle), reported as one line on stderr;
1 training diverged (the message names the last good checkpoint); 130 interrupted
by Ctrl-C or SIGTERM after saving a checkpoint (``--resume`` continues). Set
``FLOWLIB_DEBUG=1`` to see full tracebacks instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from .data import DATASETS
from .models import MODELS
from .train_config import PREPROCESS

EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 1, 130


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a flow (resumable; works under torchrun)",
        argument_default=argparse.SUPPRESS,
        description="Train a flow. Options left out take the dataset's defaults "
        "(or, with --resume, the run's stored settings).",
    )
    _run_options(p)
    _architecture_options(p)
    _optimisation_options(p)
    _periodic_options(p)
    p.set_defaults(func=cmd_train)


def _run_options(p) -> None:
    p.add_argument("--model", metavar="{" + ",".join(MODELS) + "}", help="default: glow")
    p.add_argument("--dataset", metavar="{" + ",".join(DATASETS) + "}", help="default: mnist")
    p.add_argument("--out", help="run folder (default: runs/DATASET-MODEL)")
    p.add_argument(
        "--resume",
        action="store_true",
        default=False,
        help="continue the run in --out from its last checkpoint",
    )
    p.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start a new run from this checkpoint's weights (a run folder or a "
        "shipped .pt), continuing its step count, with a fresh optimizer; its "
        "settings are the defaults",
    )
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--data-root", help="folder holding MNIST/raw/ or celeba/")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _architecture_options(p) -> None:
    p.add_argument("--K", type=int, help="Glow: flow steps per level")
    p.add_argument("--L", type=int, help="Glow: levels")
    p.add_argument("--hidden", type=int, help="coupling network width")
    p.add_argument(
        "--preprocess",
        choices=sorted(PREPROCESS),
        help="Glow: logit transform (mnist default) or centring to [-0.5, 0.5) (celeba)",
    )
    p.add_argument("--n-bits", type=int, help="bits per pixel (mnist 8, celeba 5)")
    p.add_argument("--size", type=int, help="image size (mnist 28, or 32 zero-padded; celeba 32)")
    p.add_argument(
        "--hflip",
        action=argparse.BooleanOptionalAction,
        help="mirror training images at random (default: on for celeba, off for mnist)",
    )


def _optimisation_options(p) -> None:
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int, help="overrides --epochs")
    p.add_argument("--batch-size", type=int, help="per process (default 64)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--warmup-steps", type=int, help="linear lr warm-up (default 200)")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (default 50)")
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="evaluate, sample and export with a Polyak average of the weights, "
        "e.g. 0.999 (default 0: off)",
    )
    p.add_argument(
        "--max-bad-steps", type=int, help="non-finite losses in a row before stopping (default 20)"
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="coupling networks in bfloat16 (default: on for CPUs with AMX or "
        "AVX512-BF16, off otherwise)",
    )
    p.add_argument(
        "--grad-checkpoint",
        action="store_true",
        help="recompute the coupling networks in the backward pass (less memory)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="fuse the ConcatELUs of the UvA flows (simple, vardeq, multiscale) with "
        "torch.compile: faster steps after a few seconds of compiling; needs a C++ "
        "compiler on the CPU; not with --grad-checkpoint; Glow has none (default: off)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="channels_last memory layout (default: on for the CPU, off for CUDA)",
    )


def _periodic_options(p) -> None:
    p.add_argument("--eval-every", type=int, help="steps; 0: only at the end")
    p.add_argument("--eval-images", type=int, help="test images per periodic evaluation")
    p.add_argument("--final-eval-images", type=int, help="default: the whole test set")
    p.add_argument("--sample-every", type=int, help="steps; 0: never")
    p.add_argument("--checkpoint-every", type=int, help="steps; 0: only at the end")
    p.add_argument("--log-every", type=int, help="steps between metrics.csv rows")
    p.add_argument("--temperature", type=float, help="of the sample grids (default 0.7)")


def _checkpoint_args(p, device=True) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    if device:
        p.add_argument("--device", default=None, help="default: cuda when available")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlib",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _checkpoint_parsers(sub)
    _shipping_parsers(sub)
    return parser


def _checkpoint_parsers(sub) -> None:
    """``sample``, ``eval`` and ``interpolate``: what a checkpoint draws and scores."""
    p = sub.add_parser("sample", help="write a grid of samples")
    _checkpoint_args(p)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--out", default="samples.png")
    p.add_argument("--nrow", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="print the test bpd (importance sampled)")
    _checkpoint_args(p)
    p.add_argument("--importance-samples", dest="importance_samples", type=int, default=8)
    p.add_argument(
        "--max-images",
        dest="max_images",
        type=int,
        default=None,
        help="evaluate this many, drawn as training's periodic evaluations draw them "
        "(a fixed shuffle: MNIST's first test images are easier than the rest)",
    )
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    p.add_argument("--data-root", dest="data_root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("interpolate", help="grid of latent interpolations between test images")
    _checkpoint_args(p)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--pairs", type=int, default=4, help="rows, one pair of test images each")
    p.add_argument("--out", default="interp.png")
    p.add_argument("--data-root", dest="data_root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_interpolate)


def _shipping_parsers(sub) -> None:
    """``pretrained`` and ``export``: the checkpoints shipped in data/pretrained/."""
    p = sub.add_parser(
        "pretrained", help="the shipped checkpoints in data/pretrained/ and their test bpd"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="re-evaluate each on its recorded test subset; exit 1 if off by more than --tolerance",
    )
    p.add_argument("--full", action="store_true", help="re-evaluate each on the whole test set")
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--data-root", dest="data_root", default=None)
    p.set_defaults(func=cmd_pretrained)

    p = sub.add_parser("export", help="evaluate a run and ship it as data/pretrained/NAME.pt")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("name", help="one of: " + ", ".join(_catalogue()))
    p.add_argument("--command", required=True, help="the exact training command(s) that made it")
    p.add_argument("--data", required=True, help="the data it was trained on")
    p.add_argument(
        "--hardware", default=None, help="default: as recorded by the run, else this machine"
    )
    p.add_argument(
        "--commit",
        default=None,
        help="the code's git commit (default: this checkout's HEAD; give it where there is "
        "no .git)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="evaluate the whole test set here, e.g. cuda (default: cpu; the regression "
        "subset is always evaluated on the CPU)",
    )
    p.add_argument(
        "--to", dest="out_dir", default=None, help="write NAME.pt here (default: data/pretrained)"
    )
    p.add_argument("--data-root", dest="data_root", default=None)
    p.set_defaults(func=cmd_export)


def _catalogue():
    from .pretrained import CATALOGUE

    return CATALOGUE


# --------------------------------------------------------------------------- commands


def cmd_train(args) -> int:
    from .runtime import keep_freed_memory, log
    from .train import run_training
    from .train_config import run_config

    if keep_freed_memory() and os.environ.get("RANK", "0") == "0":
        log("glibc malloc keeps freed memory for reuse (fewer page faults per step)")
    given = {k: v for k, v in vars(args).items() if k not in ("command", "func", "resume")}
    result = run_training(run_config(given, resume=args.resume), resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        bpd = f"{result.test_bpd:.4f}" if result.test_bpd is not None else "-"
        print(
            f"{'interrupted' if result.interrupted else 'done'}: step {result.step}, "
            f"last test bpd {bpd} on {result.data}, checkpoint {result.checkpoint}"
        )
    return EXIT_INTERRUPTED if result.interrupted else 0


def _load(args):
    from .checkpoints import load_checkpoint
    from .runtime import resolve_device

    model, ckpt = load_checkpoint(args.checkpoint, map_location=resolve_device(args.device))
    model.eval()
    return model, ckpt


def _test_set(ckpt, data_root):
    """The test split of the dataset the model was trained on."""
    from .pretrained import test_set

    return test_set(ckpt, data_root or (ckpt.get("train_config") or {}).get("data_root"))


def cmd_sample(args) -> int:
    import torch

    from .viz import save_grid

    model, _ = _load(args)
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}.")
    images = model.sample(
        args.n, args.temperature, generator=torch.Generator().manual_seed(args.seed)
    )
    path = save_grid(images, args.out, model.n_bits, args.nrow)
    print(f"wrote {args.n} samples at temperature {args.temperature} to {path}")
    return 0


def cmd_eval(args) -> int:
    import torch

    from .data.embedded import test_label
    from .metrics import evaluate_bpd, fair_order

    model, ckpt = _load(args)
    test = _test_set(ckpt, args.data_root)
    images = test.images
    torch.manual_seed(args.seed)
    n = len(images) if args.max_images is None else min(args.max_images, len(images))
    label = test_label(test.source)
    if n < len(images):  # the same subset as training's periodic evaluations
        images, label = fair_order(images), f"of {len(images)} {label}, a fixed shuffled subset"
    bpd = evaluate_bpd(model, images, args.batch_size, args.importance_samples, max_images=n)
    print(
        f"test bpd {bpd:.4f} ({n} {label}, {args.importance_samples} "
        f"importance samples, step {ckpt.get('step')})"
    )
    return 0


def cmd_interpolate(args) -> int:
    import torch

    from .viz import save_grid

    model, ckpt = _load(args)
    if args.steps < 2 or args.pairs < 1:
        raise ValueError(
            f"--steps must be >= 2 and --pairs >= 1, got {args.steps} and {args.pairs}."
        )
    images = _test_set(ckpt, args.data_root).images
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(images), generator=g)[: 2 * args.pairs].tolist()
    if len(idx) < 2 * args.pairs:
        raise ValueError(
            f"--pairs {args.pairs} needs {2 * args.pairs} test images, there are {len(images)}."
        )
    torch.manual_seed(args.seed)
    rows = [
        model.interpolate(images[a], images[b], steps=args.steps)
        for a, b in zip(idx[::2], idx[1::2])
    ]
    path = save_grid(torch.cat(rows), args.out, model.n_bits, nrow=args.steps)
    print(f"wrote {args.pairs} interpolation(s) of {args.steps} steps to {path}")
    return 0


def cmd_pretrained(args) -> int:
    from . import pretrained as P

    names = P.available()
    if not names:
        print(f"No pretrained checkpoints in {P.pretrained_dir()}.")
        return 0
    print(f"{'name':18} {'test bpd':>8} {'images':>6} {'IS':>3} {'steps':>7}  hardware")
    for name in names:
        r = P.load_pretrained(name)[1]
        print(
            f"{name:18} {r['test_bpd']:8.4f} {r['test_images']:6d} {r['importance_samples']:3d} "
            f"{r['steps']:7d}  {r['hardware']}"
        )
    if not (args.check or args.full):
        return 0
    rows = P.check(names, data_root=args.data_root, full=args.full)
    bad = [r for r in rows if abs(r["difference"]) > args.tolerance]
    for r in bad:
        print(
            f"{r['name']}: measured {r['measured']:.4f}, recorded {r['recorded']:.4f}: "
            f"off by more than "
            f"{args.tolerance}",
            file=sys.stderr,
        )
    return 1 if bad else 0


def cmd_export(args) -> int:
    from .pretrained import export

    export(
        args.run,
        args.name,
        command=args.command,
        data=args.data,
        hardware=args.hardware,
        commit=args.commit,
        data_root=args.data_root,
        device=args.device,
        out_dir=args.out_dir,
    )
    return 0


# --------------------------------------------------------------------------- main


def _one_line(err: BaseException) -> str:
    return (
        " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        or type(err).__name__
    )


def main(argv=None) -> int:
    """Entry point of ``flowlib`` and ``python -m flowlib``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if os.environ.get("FLOWLIB_DEBUG") not in (None, "", "0"):
        return args.func(args)
    from .layers.nets import FusionUnavailable
    from .train import TrainingDiverged

    try:
        return args.func(args)
    except TrainingDiverged as err:
        print(f"flowlib {args.command}: {_one_line(err)}", file=sys.stderr)
        return EXIT_DIVERGED
    # CheckpointError, DataNotFoundError, bad sizes, --compile without a C++ compiler
    except (ValueError, FileNotFoundError, FusionUnavailable) as err:
        print(f"flowlib {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"flowlib {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
