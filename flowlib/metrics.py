"""Bits per dimension, plain and importance sampled."""

from __future__ import annotations

import math

import torch


def bits_per_dim(log_prob: torch.Tensor, n_dims: int) -> torch.Tensor:
    """``-log_prob / (n_dims * log 2)``: nats per image to bits per pixel-channel.

    ``log_prob`` must already include the discretisation term ``-D log(n_bins)``
    (``ImageFlow.log_prob`` does), or 8-bit images would score 8 bits too few.
    """
    if n_dims <= 0:
        raise ValueError(f"n_dims must be positive, got {n_dims}.")
    return -log_prob / (n_dims * math.log(2))


def fair_order(images: torch.Tensor) -> torch.Tensor:
    """``images`` in one fixed shuffled order (seed 0), so that any first ``n`` of them are a
    fair subset: MNIST's first 5,000 test images are easier than the rest."""
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))]


def importance_sampled_log_prob(model, x: torch.Tensor, n_samples: int = 8, y=None) -> torch.Tensor:
    """``log (1/M) sum_m p(x, u_m) / q(u_m | x)`` over M dequantization samples.

    A tighter bound on ``log p(x)`` than one sample; the UvA tutorial uses M = 8.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    samples = torch.stack([model.log_prob(x, y=y) for _ in range(n_samples)], dim=-1)
    return torch.logsumexp(samples, dim=-1) - math.log(n_samples)


@torch.no_grad()
def evaluate_bpd(
    model,
    images: torch.Tensor,
    batch_size: int = 256,
    n_samples: int = 1,
    labels: torch.Tensor | None = None,
    max_images: int | None = None,
) -> float:
    """Mean test bpd over ``images`` (N, C, H, W integers), importance sampled (``n_samples``)."""
    was_training = model.training
    model.eval()
    n = len(images) if max_images is None else min(max_images, len(images))
    total = 0.0
    try:
        for start in range(0, n, batch_size):
            xb = images[start : min(start + batch_size, n)].to(model.device)
            yb = None if labels is None else labels[start : start + len(xb)].to(model.device)
            lp = importance_sampled_log_prob(model, xb, n_samples, y=yb)
            total += bits_per_dim(lp.double(), xb[0].numel()).sum().item()
    finally:
        model.train(was_training)
    return total / n
