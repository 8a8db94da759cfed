"""Which images each training step sees: deterministic shuffled shards, random mirroring."""

from __future__ import annotations

import torch


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image of ``x`` (N, C, H, W) left-right with probability 1/2.

    Draws from torch's global RNG, which checkpoints store, so a resumed run stays exact.
    """
    flip = torch.rand(len(x)) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


class ShardedBatches:
    """Deterministic shuffled batches of indices for one rank.

    Epoch ``e`` uses ``randperm(n)`` seeded by ``(seed, e)``; rank ``r`` of ``world``
    takes every ``world``-th index; the last partial batch is dropped. Step ``s`` is
    batch ``s % per_epoch`` of epoch ``s // per_epoch``, so the step is the sampler
    position.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_epoch = (n // world) // batch_size
        if self.per_epoch == 0:
            raise ValueError(
                f"batch_size {batch_size} x {world} process(es) is larger than the "
                f"training set ({n} images)."
            )
        self._epoch, self._perm = None, None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of ``step``."""
        return divmod(step, self.per_epoch)

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = self.position(step)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)[self.rank :: self.world]
            self._epoch = epoch
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]
