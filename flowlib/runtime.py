"""Where and how a run executes: the device, torchrun's process group, signals, seeds."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import sys

import torch
import torch.distributed as dist


def resolve_device(name: str | None = None) -> torch.device:
    """``name`` ("cuda", "cuda:1", "cpu") as a device; None: CUDA when available, else the CPU."""
    if name:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here (use --device cpu).")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# glibc's mallopt parameters, and the value (1e9 bytes) given to each of them
_MALLOPT = {"M_TRIM_THRESHOLD": -1, "M_TOP_PAD": -2, "M_MMAP_THRESHOLD": -3}
MALLOC_KEEP = 1_000_000_000


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse; returns whether it could.

    By default glibc serves big tensors with fresh mappings and hands them back to the OS
    when they are freed, so every CPU training step faults its activations in again. With
    the thresholds at 1e9 bytes they come from the heap and stay there. Process-wide: only
    ``flowlib train`` and the benchmarks call it, never a notebook.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all([mallopt(param, MALLOC_KEEP) == 1 for param in _MALLOPT.values()])


def seed_for(seed: int, rank: int, step: int) -> int:
    """The torch seed of ``rank`` at ``step``: distinct per rank and per restart point."""
    return seed * 1_000_003 + 7919 * rank + step


def describe_device(device: torch.device, world: int = 1) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}), {world} process(es)"
    return f"cpu ({torch.get_num_threads()} threads), {world} process(es)"


class Distributed:
    """Rank, world size and device; initialises torch.distributed under torchrun."""

    def __init__(self, device: str | None):
        self.enabled = "WORLD_SIZE" in os.environ and "RANK" in os.environ
        self.rank = int(os.environ.get("RANK", 0)) if self.enabled else 0
        self.world = int(os.environ.get("WORLD_SIZE", 1)) if self.enabled else 1
        local_rank = int(os.environ.get("LOCAL_RANK", 0)) if self.enabled else 0
        dev = resolve_device(device)
        if dev.type == "cuda":
            index = (
                local_rank
                if self.enabled
                else (dev.index if dev.index is not None else torch.cuda.current_device())
            )
            dev = torch.device("cuda", index)
            torch.cuda.set_device(dev)
        self.device = dev
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class StopFlag:
    """SIGINT/SIGTERM set a flag checked between steps; a second SIGINT aborts at once."""

    def __init__(self):
        self.stop, self._old = False, {}

    def _handle(self, signum, frame):
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave the handlers alone
            pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def fixed_rng(device: torch.device, seed: int):
    """Run a block with a fixed seed, leaving the global RNG streams as they were."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def log(msg: str) -> None:
    """One line to stdout, without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stdout)
    sys.stdout.flush()
