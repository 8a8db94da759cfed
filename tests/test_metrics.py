"""Bits per dimension and importance sampling against closed forms."""

import math

import pytest
import torch

from flowlib import metrics


def test_uniform_over_256_levels_is_eight_bits():
    d = 784
    assert metrics.bits_per_dim(torch.tensor([-d * math.log(256)]), d).item() == pytest.approx(8.0)


class FixedLogProbs(torch.nn.Module):
    """A stand-in model whose successive log_prob calls return given values."""

    def __init__(self, values):
        super().__init__()
        self.values = iter(values)

    def log_prob(self, x, y=None):
        return torch.tensor([next(self.values)], dtype=torch.float64)


def test_importance_sampling_is_the_log_mean_exp():
    a, b, c = -700.0, -702.5, -701.0
    got = metrics.importance_sampled_log_prob(FixedLogProbs([a, b, c]), torch.zeros(1), 3)
    expected = math.log((math.exp(a - a) + math.exp(b - a) + math.exp(c - a)) / 3) + a
    assert got.item() == pytest.approx(expected, abs=1e-10)
    assert expected > (a + b + c) / 3  # tighter than the average of single-sample bounds


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        metrics.importance_sampled_log_prob(FixedLogProbs([]), torch.zeros(1), 0)
    with pytest.raises(ValueError, match="n_dims must be positive"):
        metrics.bits_per_dim(torch.zeros(1), 0)
