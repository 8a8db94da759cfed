# %% [markdown]
# # 05 · Glow's layers: ActNorm and the invertible 1x1 convolution
#
# Notebook 03 built coupling layers, where a fixed mask decides which half of the
# dimensions gets transformed, and notebook 04 stacked them into a multi-scale flow with
# squeeze and split. Glow (Kingma & Dhariwal, 2018) keeps that skeleton and changes what
# happens *between* the couplings. Each of its steps of flow is
#
# $$x \;\xrightarrow{\text{ActNorm}}\; \cdot \;\xrightarrow{\text{1x1 conv}}\; \cdot \;\xrightarrow{\text{affine coupling}}\; z ,$$
#
# and, as always, the log-determinants of the three maps add up.
#
# **What you will build**
#
# 1. **Exercise 5.1**: ActNorm, a per-channel affine layer that initialises itself from the
#    first batch it sees (zero mean, unit variance per channel), exactly once.
# 2. **Exercise 5.2**: the invertible 1x1 convolution with a dense weight $W$, its log-det
#    $h\,w\,\log\lvert\det W\rvert$ and an inverse computed in float64.
# 3. **Exercise 5.3**: the LU-parametrised weight $W = P\,L\,(U + \operatorname{diag}(s))$,
#    whose log-det costs $O(C)$ instead of $O(C^3)$.
#
# Along the way you will see what goes wrong when a loaded model re-initialises its
# ActNorm, why the inverse of $W$ is computed in float64, and a small race between
# "reverse", "shuffle" and the 1x1 convolution on MNIST.
#
# Convention (the whole course): `forward(x) -> (z, logdet)` goes from data to latent,
# `inverse(z) -> (x, logdet)` back, and `logdet` has shape `(batch,)`.

# %%
import io
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import interact, widgets
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

import flowlib.checks
import flowlib.notebook_helpers
from flowlib import layers as fl
from flowlib.data import MNIST
from flowlib.metrics import evaluate_bpd, fair_order
from flowlib.models import Glow

FAST = flowlib.notebook_helpers.fast_mode()
device = flowlib.notebook_helpers.device()
torch.manual_seed(0)

train_images = MNIST(split="train", n_bits=8).images   # (60000, 1, 28, 28) uint8
test_set = MNIST(split="test", n_bits=8)
test_images, test_labels = test_set.images, test_set.labels
print(f"MNIST: {len(train_images)} training and {len(test_images)} test images")

# %% [markdown]
# ## 1. ActNorm: a normalisation layer that is a bijection
#
# Deep flows train badly when the activations that reach a coupling network have wildly
# different scales from channel to channel. RealNVP fixed that with batch normalisation,
# but batch norm is an awkward flow layer: its output depends on the *other* images in
# the minibatch, it behaves differently in training and evaluation, and its statistics
# are noisy when the batch is small (Glow trained large images with one image per GPU).
#
# ActNorm keeps the useful part, a per-channel affine map, and drops the batch
# dependence. For a tensor of shape $(N, C, h, w)$ and each channel $c$,
#
# $$z_{n,c,i,j} = \left(x_{n,c,i,j} + b_c\right)\, e^{s_c},
# \qquad \log\left\lvert\det \frac{\partial z}{\partial x}\right\rvert = h\,w \sum_{c=1}^{C} s_c .$$
#
# The same $e^{s_c}$ multiplies all $h w$ pixels of channel $c$, so each $s_c$ appears
# $h w$ times in the log-det. The inverse is $x = z\,e^{-s_c} - b_c$.
#
# **Data-dependent initialisation.** The parameters $b$ and $s$ are learned like any
# others, but they *start* from the first batch: with the per-channel mean and standard
# deviation over batch, height and width,
#
# $$\mu_c = \frac{1}{N h w}\sum_{n,i,j} x_{n,c,i,j}, \qquad
# \sigma_c^2 = \frac{1}{N h w}\sum_{n,i,j} \left(x_{n,c,i,j}-\mu_c\right)^2, \qquad
# b_c = -\mu_c, \qquad s_c = -\log(\sigma_c + \varepsilon),$$
#
# the first batch comes out with zero mean and unit variance in every channel. After that
# ActNorm is an ordinary affine layer: the same input always gives the same output.
#
# This must happen **once**. The layer remembers it in a boolean *buffer* called
# `initialized`: a buffer is saved in the `state_dict` with the parameters, so a model
# loaded from a checkpoint knows it is already initialised. Section 2 shows what happens
# when it does not.

# %% [readonly] nb05_hints
# Helpers for the visible tests of this notebook: they turn common mistakes into hints.
# (Locked cell. The hidden tests do not use them.)

def nb05_logdet_hint(name, ours, expected, hw, why):
    """Raise an AssertionError with a hint when `ours` differs from `expected` in a known way."""
    ours = ours.detach().double()
    expected = expected.detach().double().expand_as(ours)

    def close(a, b):
        return torch.allclose(a, b, rtol=1e-6, atol=1e-8)

    if close(ours, expected):
        return
    if hw > 1 and close(ours * hw, expected):
        raise AssertionError(
            f"{name}: log-det off by a factor h*w = {hw}: {why}, so its log-det counts once "
            f"per pixel. Multiply by height * width.")
    if close(ours, -expected):
        raise AssertionError(
            f"{name}: log-det has the wrong sign: forward returns +log|det dz/dx|, "
            f"inverse its negative.")
    if hw > 1 and close(ours, hw * expected):
        raise AssertionError(
            f"{name}: log-det is h*w = {hw} times too large: multiply by height * width once.")
    raise AssertionError(
        f"{name}: log-det is {ours.flatten()[0].item():.6g}, expected {expected.flatten()[0].item():.6g} "
        f"(h*w = {hw} times the per-pixel term; {why}). Take the height and width from the input, "
        f"x.shape[2] * x.shape[3]: the images here are not square.")


def nb05_lu_hint(W, p, lower, upper, sign_s, log_s):
    """Compare W with P L (U + diag(sign_s * exp(log_s))) and name the likely mistake."""
    eye = torch.eye(len(log_s), dtype=log_s.dtype)
    L = torch.tril(lower, -1) + eye
    U = torch.triu(upper, 1) + torch.diag(sign_s * torch.exp(log_s))
    right = p @ L @ U
    if not isinstance(W, torch.Tensor) or W.shape != right.shape:
        shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise AssertionError(f"lu_weight: W should be a ({len(log_s)}, {len(log_s)}) matrix, got {shape}.")
    if torch.allclose(W, right, atol=1e-10):
        return
    wrong = [
        (p @ lower @ U, "`lower` is used whole: keep only its entries below the diagonal "
                        "(torch.tril(lower, -1)) and put ones on the diagonal"),
        (p @ (torch.tril(lower) + eye) @ U, "L's diagonal must be exactly 1: use torch.tril(lower, -1) + I"),
        (p @ torch.tril(lower) @ U, "L's diagonal must be exactly 1: use torch.tril(lower, -1) + I"),
        (p @ torch.tril(lower, -1) @ U, "L needs ones on its diagonal: torch.tril(lower, -1) + I"),
        (p @ L @ (upper + torch.diag(sign_s * torch.exp(log_s))),
         "`upper` is used whole: keep only its entries above the diagonal (torch.triu(upper, 1))"),
        (p @ L @ (torch.triu(upper) + torch.diag(sign_s * torch.exp(log_s))),
         "`upper` brings its own diagonal: keep only the entries above it (torch.triu(upper, 1))"),
        (p @ L @ (torch.triu(upper, 1) + torch.diag(torch.exp(log_s))),
         "the diagonal is sign_s * exp(log_s): the fixed signs are missing"),
        (p @ L @ (torch.triu(upper, 1) + torch.diag(sign_s * log_s)),
         "the diagonal is sign_s * exp(log_s): log_s is a log, exponentiate it"),
        (L @ U @ p, "the order is W = P @ L @ U (the permutation comes first)"),
        (p.T @ L @ U, "use P itself, not its transpose: W = P @ L @ U"),
        (U @ L @ p, "the order is W = P @ L @ U"),
    ]
    for candidate, hint in wrong:
        if torch.allclose(W, candidate, atol=1e-10):
            raise AssertionError(f"lu_weight: W is not P L (U + diag(sign_s exp(log_s))): {hint}.")
    raise AssertionError(
        f"lu_weight: W differs from P L (U + diag(sign_s * exp(log_s))) by up to "
        f"{(W - right).abs().max().item():.3g}. L = tril(lower, -1) + I, "
        f"U = triu(upper, 1) + diag(sign_s * exp(log_s)).")

# %% [markdown]
# ### Exercise 5.1: ActNorm (3 points)
#
# Complete the three methods. The constructor is given: it creates the parameters
# `bias` ($b$) and `log_scale` ($s$), both of shape `(1, C, 1, 1)` so they broadcast over
# `(N, C, h, w)` inputs, and the buffer `initialized`.
#
# * `initialize(x)`: set `bias` and `log_scale` from the batch `x` as above (use
#   `self.eps`), **in place** (`.copy_(...)`, so the optimiser keeps the same parameter
#   objects), then set the flag with `self.initialized.fill_(True)`.
# * `forward(x)`: initialise if (and only if) the layer is not initialised yet; return
#   `z` and the log-det, one value per sample.
# * `inverse(z)`: undo `forward`; never initialises; its log-det is the negative one.
#
# Inputs are 4-d, `(N, C, h, w)`. `x.mean(dim=(0, 2, 3), keepdim=True)` averages over
# everything except the channel.

# %% [solution] nb05_actnorm
class ActNorm(nn.Module):
    """z = (x + bias) * exp(log_scale) per channel, initialised from the first batch."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x):
        """Set bias and log_scale so that x comes out with zero mean and unit variance per channel."""
        ### BEGIN SOLUTION
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        if not bool(self.initialized):
            self.initialize(x)
        z = (x + self.bias) * torch.exp(self.log_scale)
        logdet = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return z, logdet.expand(x.shape[0])
        ### END SOLUTION

    def inverse(self, z):
        ### BEGIN SOLUTION
        x = z * torch.exp(-self.log_scale) - self.bias
        logdet = -z.shape[2] * z.shape[3] * self.log_scale.sum()
        return x, logdet.expand(z.shape[0])
        ### END SOLUTION

# %% [tests] nb05_actnorm_tests points=3
g = torch.Generator().manual_seed(0)
spread = torch.tensor([0.5, 2.0, 5.0], dtype=torch.float64).view(1, 3, 1, 1)
shift = torch.tensor([1.0, -3.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
x = torch.randn(16, 3, 8, 6, generator=g, dtype=torch.float64) * spread + shift   # h = 8, w = 6

layer = ActNorm(3).double()
params_before = (layer.bias, layer.log_scale)
out = layer(x)
assert isinstance(out, tuple) and len(out) == 2, "forward must return a pair (z, logdet)."
z, ld = out
assert z.shape == x.shape, f"z should have the shape of x, {tuple(x.shape)}, got {tuple(z.shape)}."
assert ld.shape == (16,), f"logdet should have shape (batch,) = (16,), got {tuple(ld.shape)}: use .expand(batch)."
assert layer.bias is params_before[0] and layer.log_scale is params_before[1], (
    "initialize replaced the parameters: change them in place with self.bias.copy_(...), "
    "or the optimiser keeps training the old ones.")
mean, var = z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False)
assert mean.abs().max() < 1e-6, (
    f"After the first batch the channel means are {[round(v, 4) for v in mean.tolist()]}, not 0: "
    f"set bias = -(mean of each channel over batch, height and width).")
assert (var - 1).abs().max() < 5e-3, (
    f"After the first batch the channel variances are {[round(v, 4) for v in var.tolist()]}, not 1: "
    f"set log_scale = -log(std + eps) of each channel (over batch, height and width).")
assert bool(layer.initialized), "After the first batch, set the flag: self.initialized.fill_(True)."
assert "initialized" in layer.state_dict(), "Keep `initialized` a registered buffer (it must be in the state dict)."

bias0, log_scale0 = layer.bias.detach().clone(), layer.log_scale.detach().clone()
layer(x * 10 + 7)
assert torch.equal(layer.bias.detach(), bias0) and torch.equal(layer.log_scale.detach(), log_scale0), (
    "ActNorm initialised itself again on the second batch: initialise only while "
    "self.initialized is False.")
x_back, _ = layer.inverse(z)
assert torch.allclose(x_back, x, atol=1e-8), (
    "inverse does not undo forward: first multiply by exp(-log_scale), then subtract bias "
    "(forward's steps in reverse order).")
layer.zero_grad()
z2, ld2 = layer(x)
(z2.square().mean() + ld2.mean()).backward()
assert layer.bias.grad is not None and layer.log_scale.grad is not None and layer.log_scale.grad.abs().sum() > 0, (
    "bias and log_scale receive no gradient, so they would never train: compute z and logdet "
    "from the parameters themselves (no .detach() or .data in forward).")

nb05_logdet_hint("ActNorm", ld, 48 * layer.log_scale.sum(), hw=48,
                 why="ActNorm scales all h*w pixels of a channel by the same exp(s_c)")
flowlib.checks.check_flow(layer, x[:2, :, :4, :3])          # round trip, Jacobian log-det, consistency
flowlib.notebook_helpers.passed("Exercise 5.1 (ActNorm)")
### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
for _seed, _shape, _dtype in [(1, (4, 5, 3, 7), torch.float32), (2, (6, 2, 2, 2), torch.float64),
                              (3, (1, 4, 6, 6), torch.float64)]:
    _g = torch.Generator().manual_seed(_seed)
    _c = _shape[1]
    _x = (torch.randn(_shape, generator=_g, dtype=_dtype)
          * (0.2 + 4 * torch.rand(_c, generator=_g, dtype=_dtype)).view(1, _c, 1, 1)
          + 3 * torch.randn(_c, generator=_g, dtype=_dtype).view(1, _c, 1, 1))
    _layer = ActNorm(_c).to(_dtype)
    _ids = (id(_layer.bias), id(_layer.log_scale))
    _z, _ld = _layer(_x)
    assert (id(_layer.bias), id(_layer.log_scale)) == _ids, "hidden: parameters kept"
    _n = _x.numel() // _c
    _tol = 1e-4 if _dtype == torch.float32 else 1e-6
    _m, _v = _z.double().mean(dim=(0, 2, 3)), _z.double().var(dim=(0, 2, 3), unbiased=False)
    assert _m.abs().max() < _tol, "hidden: first-batch means"
    assert (_v - 1).abs().max() < 1e-3 or (_v - (_n - 1) / _n).abs().max() < 1e-3, "hidden: first-batch variances"
    _hw = _shape[2] * _shape[3]
    assert _ld.shape == (_shape[0],), "hidden: logdet shape"
    assert torch.allclose(_ld.double(), (_hw * _layer.log_scale.detach().double().sum()).expand(_shape[0]),
                          rtol=1e-5, atol=1e-5), "hidden: forward logdet"
    _x_back, _ld_inv = _layer.inverse(_z)
    assert torch.allclose(_x_back, _x, atol=10 * _tol * (1 + _x.abs().max().item())), "hidden: inverse"
    assert torch.allclose(_ld_inv, -_ld, atol=1e-5), "hidden: inverse logdet"
    _b0, _s0 = _layer.bias.detach().clone(), _layer.log_scale.detach().clone()
    _layer(_x * 3 - 2)
    assert torch.equal(_layer.bias.detach(), _b0) and torch.equal(_layer.log_scale.detach(), _s0), "hidden: no re-init"
    _fresh = ActNorm(_c).to(_dtype)
    _fresh.load_state_dict(_layer.state_dict())
    _fresh(_x * 50 + 9)
    assert torch.equal(_fresh.bias.detach(), _b0) and torch.equal(_fresh.log_scale.detach(), _s0), "hidden: loaded layer"
    _z2, _ld2 = _layer(_x)
    (_z2.square().sum() + _ld2.sum()).backward()
    assert _layer.bias.grad is not None and _layer.log_scale.grad is not None, "hidden: gradients"
    assert torch.isfinite(_layer.log_scale.grad).all() and _layer.log_scale.grad.abs().sum() > 0, "hidden: gradients"
    if _dtype == torch.float64:
        _checks.check_flow(_layer, _x[:2])
### END HIDDEN TESTS

# %% [markdown]
# ### What ActNorm does to a batch
#
# Below are four channels of made-up activations, each with its own offset, spread and
# shape (as hidden activations of a deep network at initialisation tend to be), before
# and after a fresh ActNorm. Every channel comes out centred with unit variance, but the
# *shapes* of the histograms do not change: ActNorm is affine, it only shifts and scales.

# %%
g = torch.Generator().manual_seed(0)
base = torch.randn(128, 4, 8, 8, generator=g)
features = torch.stack([0.2 * base[:, 0] + 3.0,            # narrow, far from 0
                        2.0 * base[:, 1].exp() - 5.0,      # skewed
                        6.0 * base[:, 2],                  # wide
                        0.5 * base[:, 3] ** 2 + 1.0], 1)   # one-sided

with flowlib.notebook_helpers.needs("Exercise 5.1 (ActNorm)"):
    actnorm = ActNorm(4)
    with torch.no_grad():
        normalised, _ = actnorm(features)
        later, _ = actnorm(torch.stack([0.2 * base[:, 0] + 3.5, 2.0 * base[:, 1].exp() - 5.0,
                                        6.0 * base[:, 2], 0.5 * base[:, 3] ** 2 + 1.0], 1))

    fig, axes = plt.subplots(2, 4, figsize=(13, 4.6))
    for c in range(4):
        for row, (data, label) in enumerate([(features, "before"), (normalised, "after ActNorm")]):
            v = data[:, c].flatten()
            axes[row, c].hist(v.numpy(), bins=60, color=f"C{c}", alpha=0.8)
            axes[row, c].set_title(f"channel {c} {label}\nmean {v.mean().item():.2f}, "
                                   f"std {v.std().item():.2f}", fontsize=9)
    fig.tight_layout()
    plt.show()
    print("A later batch (channel 0 shifted by 0.5) is NOT re-normalised; its channel means are now",
          [round(m, 2) for m in later.mean(dim=(0, 2, 3)).tolist()])

# %% [markdown]
# ## 2. Initialise once: the `initialized` buffer
#
# Why a *buffer*? `model.state_dict()` holds parameters and buffers, nothing else. Had we
# written `self.initialized = False` as a plain Python attribute, a model rebuilt from a
# checkpoint would start with `initialized = False`, and the first batch it sees after
# loading would overwrite the trained `bias` and `log_scale` with that batch's
# statistics. (Under multi-GPU training there is a second trap: every process must end up
# with the same statistics; `flowlib.layers.ActNorm` averages them over all processes.)
#
# To see the damage, we train a small Glow for a moment, save it, and load it twice:
# once properly, and once with every ActNorm's flag lost, as if the flag were a plain
# attribute. Then the very first thing each loaded model sees is a single test image, and
# we measure both on the same test images (128 in fast mode, 512 otherwise). First, a
# short training loop that the rest of the notebook reuses.

# %%
def train_glow(model, steps, batch_size=64, lr=1e-3, seed=0, desc="training"):
    """Adam on the mean bits per dimension of random MNIST batches; returns each step's bpd."""
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    init_batch = 128 if FAST else 512
    with torch.no_grad():                      # data-dependent ActNorm initialisation
        model.log_prob(train_images[torch.randint(len(train_images), (init_batch,), generator=g)].to(device))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    history = []
    for step in tqdm(range(steps), desc=desc, leave=False):
        x = train_images[torch.randint(len(train_images), (batch_size,), generator=g)].to(device)
        loss = model.bpd(x).mean()
        if not torch.isfinite(loss):
            print(f"step {step}: non-finite loss, step skipped")
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        opt.step()
        sched.step()
        history.append(loss.item())
    return history


def test_bpd(model, n=128 if FAST else 512):
    """bpd on n test images (a fixed shuffled subset: MNIST's first test images are easier),
    with the same dequantisation noise every time."""
    torch.manual_seed(1234)
    return evaluate_bpd(model, fair_order(test_images), max_images=n)


DEMO = dict(image_shape=(1, 28, 28), K=2, L=2, hidden=32)
torch.manual_seed(0)
demo = Glow(**DEMO)
demo_history = train_glow(demo, steps=20 if FAST else 400, batch_size=32 if FAST else 64, desc="demo Glow")
print(f"demo Glow trained for {len(demo_history)} steps{' (fast mode)' if FAST else ''}: "
      f"training bpd {demo_history[0]:.2f} -> {demo_history[-1]:.2f}")

checkpoint = io.BytesIO()
torch.save(demo.state_dict(), checkpoint)
flags = [k for k in demo.state_dict() if k.endswith("initialized")]
print(f"The state dict holds {len(flags)} ActNorm flags, e.g. {flags[0]!r} = {bool(demo.state_dict()[flags[0]])}")

# %%
def load_demo(lose_flags=False):
    """A fresh Glow loaded from the checkpoint; optionally with every ActNorm flag lost."""
    checkpoint.seek(0)
    model = Glow(**DEMO)
    model.load_state_dict(torch.load(checkpoint))
    model.to(device).eval()
    if lose_flags:                             # what a plain-attribute flag would give
        for module in model.modules():
            if isinstance(module, fl.ActNorm):
                module.initialized.fill_(False)
    return model


def bpd_after_first_batch(first_batch, lose_flags):
    model = load_demo(lose_flags)
    with torch.no_grad():
        model.log_prob(first_batch.to(device))  # the first thing the loaded model sees
    return test_bpd(model)


saved_bpd = test_bpd(demo)
first_images = [test_images[test_labels == d][:1] for d in range(10)]
good = [bpd_after_first_batch(img, lose_flags=False) for img in first_images]
bad = [bpd_after_first_batch(img, lose_flags=True) for img in first_images]

fig, ax = plt.subplots(figsize=(9, 3.4))
ax.bar(np.arange(10) - 0.2, good, width=0.4, label="loaded correctly (flag in the state dict)")
ax.bar(np.arange(10) + 0.2, bad, width=0.4, color="C3", label="flag lost: re-initialised on that image")
ax.axhline(saved_bpd, color="k", lw=1, ls="--", label=f"the saved model: {saved_bpd:.3f}")
ax.set_xticks(range(10))
ax.set_xlabel("digit of the single image the loaded model saw first")
ax.set_ylabel("test bpd")
ax.set_ylim(min(good + bad) - 0.3, max(good + bad) + 0.3)
ax.legend(fontsize=8, loc="upper left")
plt.show()
print(f"loaded correctly: {min(good):.3f} .. {max(good):.3f} bpd (identical to the saved model)")
print(f"flag lost:        {min(bad):.3f} .. {max(bad):.3f} bpd, depending on the first image")

# %% [markdown]
# With the flag in the state dict, the loaded model *is* the saved model, whatever it
# sees first. Without it, the density the model defines depends on which image happened
# to come first: one image is a tiny sample, so its per-channel statistics are far from
# those of the data set, and the trained `bias` and `log_scale` are thrown away.
# (In fast mode the demo Glow has barely trained, so its ActNorm parameters are still
# close to their own initialisation and some re-initialised bars may even come out a
# little lower by chance; the point is that the model changed. The longer a model has
# trained, the more its couplings rely on the learned ActNorm parameters.)
#
# Try it: which first batch does the least damage? (The slider re-loads the model each
# time; larger first batches give statistics closer to the data set's.)

# %%
def first_batch_demo(digit=1, batch_size=1):
    first = test_images[test_labels == digit][:batch_size]
    value = bpd_after_first_batch(first, lose_flags=True)
    print(f"flag lost, first batch = {batch_size} image(s) of digit {digit}: test bpd {value:.3f} "
          f"(saved model: {saved_bpd:.3f})")


interact(first_batch_demo, digit=widgets.IntSlider(value=1, min=0, max=9),
         batch_size=widgets.SelectionSlider(options=[1, 4, 16, 64, 256], value=1));

# %% [markdown]
# ## 3. The invertible 1x1 convolution
#
# A coupling layer changes only half of the channels. Between couplings, the channels
# must be reordered so that every channel gets transformed: RealNVP alternates the halves
# (for channel masks, the same as *reversing* the channel order), others use a fixed
# random *shuffle*. A permutation of channels applied at every pixel is
# a 1x1 convolution whose $C \times C$ weight is a permutation matrix. Glow's idea is to
# **learn** that matrix: any invertible $W$ will do.
#
# At each pixel $(i, j)$ the channel vector is multiplied by the same matrix,
# $z_{:,i,j} = W x_{:,i,j}$. Ordering the coordinates pixel by pixel, the Jacobian of
# the whole map is block diagonal with $h w$ copies of $W$, so
#
# $$\log\left\lvert\det\frac{\partial z}{\partial x}\right\rvert = h\,w\,\log\lvert\det W\rvert ,
# \qquad x_{:,i,j} = W^{-1} z_{:,i,j} .$$
#
# Glow starts $W$ as a random rotation ($\log\lvert\det W\rvert = 0$, like a permutation).
# First a check that a permutation really is a 1x1 convolution:

# %%
C = 4
reverse = torch.eye(C).flip(0)                 # the permutation matrix of "reverse"
x = torch.randn(2, C, 3, 3)
as_conv = F.conv2d(x, reverse.view(C, C, 1, 1))
print("reverse as a 1x1 convolution == x.flip(1):", torch.equal(as_conv, x.flip(1)))
print("log|det| of a permutation matrix:", torch.linalg.slogdet(reverse)[1].item())

# %% [markdown]
# ### Exercise 5.2: the dense invertible 1x1 convolution (2 points)
#
# Complete `forward` and `inverse`. The weight `self.weight` is a $C \times C$ matrix.
#
# * `forward(x)`: `z = F.conv2d(x, W.view(C, C, 1, 1))` and the log-det
#   $h w \log\lvert\det W\rvert$, expanded to shape `(batch,)`. Use
#   `torch.linalg.slogdet(W)`, which returns `(sign, log|det|)`: `torch.logdet` gives NaN
#   as soon as $\det W < 0$, and a learned $W$ may well have a negative determinant.
# * `inverse(z)`: compute $W^{-1}$ **in float64** (`torch.linalg.inv(W.double())`), cast
#   it back to `z.dtype`, convolve, and return the negative log-det. Section 4 shows why.

# %% [solution] nb05_conv1x1
class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with a dense weight, started as a random rotation."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        self.channels = channels
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        self.weight = nn.Parameter(q)

    def forward(self, x):
        ### BEGIN SOLUTION
        c, (h, w) = self.channels, x.shape[2:]
        z = F.conv2d(x, self.weight.view(c, c, 1, 1))
        logdet = h * w * torch.linalg.slogdet(self.weight)[1]
        return z, logdet.expand(x.shape[0])
        ### END SOLUTION

    def inverse(self, z):
        ### BEGIN SOLUTION
        c, (h, w) = self.channels, z.shape[2:]
        w_inv = torch.linalg.inv(self.weight.double()).to(z.dtype)
        x = F.conv2d(z, w_inv.view(c, c, 1, 1))
        logdet = -h * w * torch.linalg.slogdet(self.weight)[1]
        return x, logdet.expand(z.shape[0])
        ### END SOLUTION

# %% [tests] nb05_conv1x1_tests points=2
g = torch.Generator().manual_seed(5)
conv = InvConv1x1(4, generator=g).double()
with torch.no_grad():
    conv.weight.add_(0.3 * torch.randn(4, 4, generator=g, dtype=torch.float64))
    if torch.linalg.det(conv.weight) > 0:
        conv.weight[0].neg_()                  # a negative determinant, on purpose
x = torch.randn(2, 4, 4, 5, generator=g, dtype=torch.float64)
W = conv.weight.detach()

out = conv(x)
assert isinstance(out, tuple) and len(out) == 2, "forward must return a pair (z, logdet)."
z, ld = out
assert z.shape == x.shape, f"z should have the shape of x, {tuple(x.shape)}, got {tuple(z.shape)}."
assert torch.allclose(z, torch.einsum("oc,bchw->bohw", W, x)), (
    "forward should mix the channels at every pixel, z[:, :, i, j] = W @ x[:, :, i, j]: "
    "F.conv2d(x, W.view(C, C, 1, 1)).")
assert ld.shape == (2,), f"logdet should have shape (batch,) = (2,), got {tuple(ld.shape)}: use .expand(batch)."
assert torch.isfinite(ld).all(), (
    "logdet is NaN or inf. Here det W < 0, and torch.logdet(W) is NaN for a negative "
    "determinant: use torch.linalg.slogdet(W)[1], which is log|det W|.")
assert not torch.allclose(ld, 20 * torch.linalg.det(W)), "logdet should be h*w*log|det W|, not h*w*det W."
assert z.requires_grad and ld.requires_grad, (
    "z or logdet does not depend on self.weight in autograd, so W would never train: "
    "no .detach(), .data or .item() in forward.")
nb05_logdet_hint("InvConv1x1", ld, 20 * torch.linalg.slogdet(W)[1], hw=20,
                 why="the 1x1 convolution applies W at every pixel")
flowlib.checks.check_flow(conv, x)             # round trip, Jacobian log-det, consistency

conv32 = InvConv1x1(4, generator=torch.Generator().manual_seed(1))
x32 = torch.randn(2, 4, 3, 3, generator=g)
MATRIX_INVERSES = (torch.linalg.inv, torch.inverse, torch.linalg.inv_ex, torch.linalg.solve, torch.linalg.pinv,
                   (torch.Tensor, "inverse"))
try:
    with flowlib.notebook_helpers.recording(*MATRIX_INVERSES, namespace=globals()) as inverse_calls:
        x_back, _ = conv32.inverse(conv32(x32)[0])
except RuntimeError as err:
    raise AssertionError(f"inverse of a float32 layer failed: {err}. Invert W in float64, then cast W^-1 back "
                         f"to the input's dtype with .to(z.dtype) before the convolution.") from None
assert x_back.dtype == torch.float32, (
    f"inverse of a float32 layer returned {x_back.dtype}: invert W in float64, then cast "
    f"W^-1 back with .to(z.dtype).")
assert not any(torch.float32 in call for call in inverse_calls), (
    "inverse inverted W in float32: invert it in float64 (self.weight.double()), where the inverse of a "
    "trained W stays accurate, then cast W^-1 back with .to(z.dtype).")
flowlib.notebook_helpers.passed("Exercise 5.2 (dense 1x1 convolution)")
### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
for _seed, _c, _shape, _dtype in [(11, 3, (2, 3, 4, 2), torch.float64), (12, 7, (2, 7, 3, 5), torch.float32),
                                  (13, 6, (1, 6, 1, 1), torch.float64), (14, 2, (3, 2, 4, 4), torch.float64)]:
    _g = torch.Generator().manual_seed(_seed)
    _layer = InvConv1x1(_c, generator=_g).to(_dtype)
    with torch.no_grad():
        _layer.weight.add_(0.4 * torch.randn(_c, _c, generator=_g, dtype=_dtype))
        if _seed % 2 and torch.linalg.det(_layer.weight.double()) > 0:
            _layer.weight[-1].neg_()
    _x = torch.randn(_shape, generator=_g, dtype=_dtype)
    _W = _layer.weight.detach().double()
    _z, _ld = _layer(_x)
    _tol = 1e-4 if _dtype == torch.float32 else 1e-9
    assert _z.dtype == _dtype, "hidden: dtype"
    assert torch.allclose(_z.double(), torch.einsum("oc,bchw->bohw", _W, _x.double()), atol=_tol), "hidden: forward"
    _hw = _shape[2] * _shape[3]
    _expected = (_hw * torch.linalg.slogdet(_W)[1]).expand(_shape[0])
    assert _ld.shape == (_shape[0],), "hidden: logdet shape"
    assert torch.allclose(_ld.double(), _expected, atol=_tol * max(1.0, _expected.abs().max().item())), "hidden: logdet"
    _helpers = importlib.reload(flowlib.notebook_helpers)
    with _helpers.recording(torch.linalg.inv, torch.inverse, torch.linalg.inv_ex, torch.linalg.solve,
                            torch.linalg.pinv, (torch.Tensor, "inverse"), namespace=globals()) as _calls:
        _x_back, _ld_inv = _layer.inverse(_z)
    assert not any(torch.float32 in _call for _call in _calls), "hidden: precision of the inverse"
    assert _x_back.dtype == _dtype, "hidden: inverse dtype"
    assert torch.allclose(_x_back.double(), _x.double(), atol=10 * _tol), "hidden: inverse"
    assert torch.allclose(_ld_inv.double(), -_expected, atol=_tol * max(1.0, _expected.abs().max().item())), "hidden: inverse logdet"
    _layer.zero_grad()
    _ld[0].backward()
    assert _layer.weight.grad is not None, "hidden: gradient"
    assert torch.allclose(_layer.weight.grad.double(), _hw * torch.linalg.inv(_W).T, rtol=1e-3, atol=1e-3), "hidden: gradient"
    if _dtype == torch.float64:
        _checks.check_flow(_layer, _x)
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Why the inverse is computed in float64, and cached
#
# Sampling runs every layer backwards, so a Glow with $K = 32$ steps and $L = 3$ levels
# inverts 96 matrices in a row. In float32, `torch.linalg.inv` returns $W^{-1}$ with a
# relative error of roughly $10^{-7}$ times the condition number $\kappa(W)$ (the ratio of
# its largest to its smallest singular value), and a learned $W$ is not the well-behaved
# rotation it started as. Computing $W^{-1}$ in float64 and rounding the result once to
# float32 removes the inverse's own share of the error; what is left comes from the
# float32 convolutions themselves.
#
# Two experiments with float32 data, each inverting with $W^{-1}$ from float32 and from
# float64: on the left one $48 \times 48$ layer with a growing condition number, on the
# right a stack of up to 96 random, mildly non-orthogonal $16 \times 16$ layers
# (each with $\lvert\det W\rvert = 1$).

# %%
def random_weight(C, cond, g):
    """A C x C matrix with condition number `cond` and |det| = 1."""
    q1, _ = torch.linalg.qr(torch.randn(C, C, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(C, C, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -math.log10(cond), C, dtype=torch.float64)
    return (q1 @ torch.diag(s / s.log().mean().exp()) @ q2.T).float()


def round_trip_error(x, mats, invs):
    z = x
    for m in mats:
        z = z @ m.T
    for m_inv in reversed(invs):
        z = z @ m_inv.T
    return ((z - x).abs().max() / x.abs().max()).item()


labels = ("W^-1 in float32", "W^-1 in float64, used in float32")
g = torch.Generator().manual_seed(0)
x48 = torch.randn(1024, 48, generator=g)
conds = [1, 10, 100, 1e3, 1e4, 1e5]
by_cond = {label: [] for label in labels}
for cond in conds:
    W = random_weight(48, cond, g)
    by_cond[labels[0]].append(round_trip_error(x48, [W], [torch.linalg.inv(W)]))
    by_cond[labels[1]].append(round_trip_error(x48, [W], [torch.linalg.inv(W.double()).float()]))

mats = []
for _ in range(96):
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    m = q + 0.05 * torch.randn(16, 16, generator=g)
    mats.append(m / torch.linalg.slogdet(m)[1].div(16).exp())       # |det| = 1
x16 = torch.randn(512, 16, generator=g)
depths = [1, 2, 4, 8, 16, 32, 64, 96]
by_depth = {label: [] for label in labels}
for n in depths:
    by_depth[labels[0]].append(round_trip_error(x16, mats[:n], [torch.linalg.inv(m) for m in mats[:n]]))
    by_depth[labels[1]].append(round_trip_error(x16, mats[:n], [torch.linalg.inv(m.double()).float() for m in mats[:n]]))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
for label in labels:
    ax1.loglog(conds, by_cond[label], "o-", label=label)
    ax2.loglog(depths, by_depth[label], "o-", label=label)
ax1.set_xlabel("condition number of W (one layer)")
ax2.set_xlabel("number of 1x1 convolutions")
for ax in (ax1, ax2):
    ax.set_ylabel("max |x - inverse(forward(x))| / max |x|")
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
ratios = [a / b for a, b in zip(by_cond[labels[0]] + by_depth[labels[0]], by_cond[labels[1]] + by_depth[labels[1]])]
print(f"the float64 inverse gives a {min(ratios):.1f} to {max(ratios):.1f} times smaller round-trip error here")

# %% [markdown]
# The printed range says what the float64 inverse gains in this experiment: at some points
# nothing (a ratio near 1, where both errors are float32's own rounding in the products), at
# others several times smaller errors, and it is not monotone in the condition number or the
# depth. That is not dramatic, but it costs little (one $C \times C$ matrix per layer), and both
# curves climb with $\kappa(W)$ and with depth, so a trained Glow with dozens of ill-conditioned
# layers can use every factor it gets.
#
# Little is not nothing: a float64 inverse of a $512 \times 512$ matrix takes milliseconds,
# and sampling would pay it at every layer for every batch. But $W$ only changes when the
# optimiser steps. So in evaluation mode (sampling,
# interpolation) `flowlib.layers.InvConv1x1` computes $W$ and $W^{-1}$ once and reuses them
# until a parameter changes. (It notices the change through the parameters' version
# counters, which every in-place update increments.) Below, 10 inverses of a 256-channel
# layer in training mode (recomputed every call) and in eval mode (cached):

# %%
layer = fl.InvConv1x1(256)
zs = torch.randn(4, 256, 4, 4)
timings = {}
for mode in ("train", "eval"):
    layer.train(mode == "train")
    with torch.no_grad():
        layer.inverse(zs)                      # warm-up (fills the cache in eval mode)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            layer.inverse(zs)
            times.append(time.perf_counter() - t0)
    timings[mode] = 1e3 * float(np.median(times))
print(f"inverse, 256 channels: train mode {timings['train']:.2f} ms per call, "
      f"eval mode (cached W^-1) {timings['eval']:.2f} ms per call")

# %% [markdown]
# ## 5. The LU parametrisation: a log-det in $O(C)$
#
# `slogdet` factorises $W$ every time it is called: $O(C^3)$ operations, and the gradient
# of $\log\lvert\det W\rvert$ is $W^{-\top}$, another $O(C^3)$ inverse. Glow avoids both by
# learning $W$ in factored form,
#
# $$W = P\,L\,\bigl(U + \operatorname{diag}(s)\bigr), \qquad s_c = \operatorname{sign}_c \, e^{\log s_c},$$
#
# where $P$ is a fixed permutation matrix, $L$ is lower triangular with ones on its
# diagonal, $U$ is strictly upper triangular, and only $L$, $U$ and $\log s$ are learned.
# The determinant of a triangular matrix is the product of its diagonal, and
# $\lvert\det P\rvert = 1$, so
#
# $$\log\lvert\det W\rvert = \log\lvert\det P\rvert + \log\lvert\det L\rvert
# + \log\bigl\lvert\det(U + \operatorname{diag}(s))\bigr\rvert = 0 + 0 + \sum_{c} \log s_c .$$
#
# That is a sum of $C$ numbers, and its gradient is a vector of ones. (Building $W$ still
# takes two matrix products, but matrix products are the fastest $O(C^3)$ there is,
# especially on a GPU.) Fixing the signs has a second benefit: $s_c = \pm e^{\log s_c}$
# can never reach zero, so $W$ stays invertible however training moves the parameters.
#
# The starting values come from `torch.linalg.lu` of a random rotation. In the layer,
# `lower` and `upper` are stored as full $C \times C$ parameters; the masks
# (`torch.tril(lower, -1)`, `torch.triu(upper, 1)`) make sure only the right triangle is
# ever used, and that the entries outside it receive zero gradient.

# %% [markdown]
# ### Exercise 5.3: the LU-parametrised weight and its log-det (2 points)
#
# Write `lu_weight`, which returns the pair `(W, log_abs_det)`:
#
# * $L$ = `lower` below the diagonal, ones on the diagonal;
# * $U$ = `upper` above the diagonal, `sign_s * exp(log_s)` on the diagonal;
# * `W = p @ L @ U`;
# * `log_abs_det` = $\log\lvert\det W\rvert$ as a 0-dimensional tensor, computed in $O(C)$
#   from `log_s` alone (no `slogdet`).
#
# The layer `InvConv1x1LU` in the next (locked) cell uses your function, and then it works
# just like the dense layer of Exercise 5.2.

# %% [solution] nb05_lu_weight
def lu_weight(p, lower, upper, sign_s, log_s):
    """W = P L (U + diag(sign_s * exp(log_s))) and log|det W|.

    p:      (C, C) fixed permutation matrix
    lower:  (C, C) parameter; only its entries below the diagonal are used
    upper:  (C, C) parameter; only its entries above the diagonal are used
    sign_s: (C,) fixed signs, +1 or -1
    log_s:  (C,) parameter, log|s|
    Returns (W, log_abs_det): a (C, C) matrix and a 0-dimensional tensor.
    """
    ### BEGIN SOLUTION
    eye = torch.eye(len(log_s), dtype=lower.dtype, device=lower.device)
    L = torch.tril(lower, -1) + eye
    U = torch.triu(upper, 1) + torch.diag(sign_s * torch.exp(log_s))
    return p @ L @ U, log_s.sum()
    ### END SOLUTION

# %% [readonly] nb05_lu_layer
class InvConv1x1LU(nn.Module):
    """Invertible 1x1 convolution with W = P L (U + diag(sign_s * exp(log_s))), built by lu_weight."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        self.channels = channels
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        p, lower, upper = torch.linalg.lu(q)               # q = p @ lower @ upper
        s = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.lower = nn.Parameter(lower)                   # only the part below the diagonal is used
        self.upper = nn.Parameter(upper)                   # only the part above the diagonal is used
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight_and_log_abs_det(self):
        return lu_weight(self.p, self.lower, self.upper, self.sign_s, self.log_s)

    def forward(self, x):
        w, log_abs_det = self.weight_and_log_abs_det()
        c, hw = self.channels, x.shape[2] * x.shape[3]
        z = F.conv2d(x, w.to(x.dtype).view(c, c, 1, 1))
        return z, (hw * log_abs_det).to(x.dtype).expand(x.shape[0])

    def inverse(self, z):
        w, log_abs_det = self.weight_and_log_abs_det()
        c, hw = self.channels, z.shape[2] * z.shape[3]
        w_inv = torch.linalg.inv(w.double()).to(z.dtype)  # float64, as in Exercise 5.2
        x = F.conv2d(z, w_inv.view(c, c, 1, 1))
        return x, (-hw * log_abs_det).to(z.dtype).expand(z.shape[0])

# %% [tests] nb05_lu_weight_tests points=2
g = torch.Generator().manual_seed(7)
C = 5
p = torch.eye(C, dtype=torch.float64)[torch.randperm(C, generator=g)]
lower = torch.randn(C, C, generator=g, dtype=torch.float64).requires_grad_()  # full matrices on purpose:
upper = torch.randn(C, C, generator=g, dtype=torch.float64).requires_grad_()  # one triangle of each counts
sign_s = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
log_s = (0.3 * torch.randn(C, generator=g, dtype=torch.float64)).requires_grad_()

NO_SLOGDET = ("Exercise 5.3 asks for log|det W| in O(C) from log_s alone, without slogdet or det: P and L "
              "have |det| = 1, so only the diagonal of U counts, and log|det W| = sum(log_s)")
DETERMINANTS = (torch.linalg.slogdet, torch.slogdet, torch.logdet, torch.det, torch.linalg.det,
                (torch.Tensor, "slogdet"), (torch.Tensor, "logdet"), (torch.Tensor, "det"))
with flowlib.notebook_helpers.refusing(*DETERMINANTS, why=NO_SLOGDET, namespace=globals()):
    out = lu_weight(p, lower, upper, sign_s, log_s)
assert isinstance(out, tuple) and len(out) == 2, "lu_weight must return a pair (W, log_abs_det)."
W, log_abs_det = out
nb05_lu_hint(W, p, lower, upper, sign_s, log_s)
assert isinstance(log_abs_det, torch.Tensor) and log_abs_det.dim() == 0, (
    "log_abs_det should be a 0-dimensional tensor (one number): sum over the channels.")
true = torch.linalg.slogdet(W)[1]
if not torch.allclose(log_abs_det, true):
    if torch.allclose(log_abs_det, -true):
        raise AssertionError("log_abs_det has the wrong sign: it is +sum(log_s).")
    if torch.allclose(log_abs_det, torch.exp(log_s).sum()):
        raise AssertionError("log_abs_det sums exp(log_s): log|det W| is the sum of log|s_c| = log_s.")
    raise AssertionError(f"log_abs_det = {log_abs_det.item():.6g}, but log|det W| = {true.item():.6g}: "
                         f"P and L have |det| = 1, so only the diagonal of U counts.")
assert W.requires_grad and log_abs_det.requires_grad, (
    "W or log_abs_det does not depend on the parameters in autograd, so they would never "
    "train: build them from lower, upper and log_s directly (no .data or .detach()).")
(W.sum() + log_abs_det).backward()
assert lower.grad is not None and upper.grad is not None and log_s.grad is not None, (
    "lower, upper and log_s must all receive gradients: build W from them directly.")

layer = InvConv1x1LU(4, generator=g).double()
with torch.no_grad():
    for param in layer.parameters():
        param.add_(0.2 * torch.randn(param.shape, generator=g, dtype=torch.float64))
flowlib.checks.check_flow(layer, torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64))
flowlib.notebook_helpers.passed("Exercise 5.3 (LU 1x1 convolution)")
### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
for _seed, _c, _dtype in [(21, 3, torch.float64), (22, 8, torch.float32), (23, 1, torch.float64), (24, 6, torch.float64)]:
    _g = torch.Generator().manual_seed(_seed)
    _p = torch.eye(_c, dtype=_dtype)[torch.randperm(_c, generator=_g)]
    _lower = torch.randn(_c, _c, generator=_g, dtype=_dtype).requires_grad_()
    _upper = torch.randn(_c, _c, generator=_g, dtype=_dtype).requires_grad_()
    _sign = torch.where(torch.rand(_c, generator=_g) < 0.5, -1.0, 1.0).to(_dtype)
    _log_s = (0.5 * torch.randn(_c, generator=_g, dtype=_dtype)).requires_grad_()
    with importlib.reload(flowlib.notebook_helpers).refusing(
            torch.linalg.slogdet, torch.slogdet, torch.logdet, torch.det, torch.linalg.det, (torch.Tensor, "slogdet"),
            (torch.Tensor, "logdet"), (torch.Tensor, "det"), why="hidden: cost of log_abs_det", namespace=globals()):
        _W, _lad = lu_weight(_p, _lower, _upper, _sign, _log_s)
    _eye = torch.eye(_c, dtype=_dtype)
    _ref = _p @ (torch.tril(_lower, -1) + _eye) @ (torch.triu(_upper, 1) + torch.diag(_sign * torch.exp(_log_s)))
    _tol = 1e-5 if _dtype == torch.float32 else 1e-10
    assert _W.shape == (_c, _c) and _W.dtype == _dtype, "hidden: W shape and dtype"
    assert torch.allclose(_W, _ref, atol=_tol), "hidden: W"
    assert _lad.dim() == 0, "hidden: log_abs_det is a number"
    assert torch.allclose(_lad.double(), torch.linalg.slogdet(_ref.detach().double())[1], atol=10 * _tol), "hidden: log_abs_det"
    (_W.sum() + _lad).backward()
    assert torch.equal(torch.triu(_lower.grad), torch.zeros_like(_lower)), "hidden: gradient of lower"
    assert torch.equal(torch.tril(_upper.grad), torch.zeros_like(_upper)), "hidden: gradient of upper"
    if _dtype == torch.float64:
        def _fwd(x, _a=(_p, _lower, _upper, _sign, _log_s)):
            w, lad = lu_weight(*_a)
            return torch.einsum("oc,bchw->bohw", w, x), (x.shape[2] * x.shape[3] * lad).expand(x.shape[0])

        def _inv(z, _a=(_p, _lower, _upper, _sign, _log_s)):
            w, lad = lu_weight(*_a)
            return torch.einsum("oc,bchw->bohw", torch.linalg.inv(w), z), (-z.shape[2] * z.shape[3] * lad).expand(z.shape[0])
        _checks.check_flow((_fwd, _inv), torch.randn(2, _c, 2, 3, generator=_g, dtype=_dtype))
### END HIDDEN TESTS

# %% [markdown]
# How much does the LU form save? Below, the time of `slogdet` against the sum of $C$
# numbers, for growing channel counts (medians of a few runs; Glow on 256x256 images has
# up to 384 channels at its coarsest level).

# %%
print(f"{'C':>5} {'slogdet(W)':>14} {'sum(log_s)':>12}")
for Cc in (16, 64, 256, 512):
    Wc, ls = torch.randn(Cc, Cc), torch.randn(Cc)
    row = []
    for fn in (lambda: torch.linalg.slogdet(Wc), lambda: ls.sum()):
        fn()
        times = []
        for _ in range(5 if FAST else 20):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        row.append(1e6 * float(np.median(times)))
    print(f"{Cc:>5} {row[0]:>11.0f} us {row[1]:>9.0f} us")

# %% [markdown]
# ### Your layers inside a Glow
#
# Your ActNorm and your LU convolution are drop-in replacements for flowlib's: below, every
# step of a small Glow gets them, the whole model is checked for invertibility and
# consistent log-dets, and it trains for a few steps. Every one of your ActNorms
# initialises itself on the first batch and stores its flag in the state dict.

# %%
probe = torch.randn(2, 4, 2, 2)
with flowlib.notebook_helpers.needs("Exercise 5.1 (ActNorm)"):
    ActNorm(4)(probe)
with flowlib.notebook_helpers.needs("Exercise 5.3 (LU 1x1 convolution)"):
    InvConv1x1LU(4)(probe)

with flowlib.notebook_helpers.needs("Exercise 5.1 (ActNorm) or Exercise 5.3 (LU 1x1 convolution)"):
    torch.manual_seed(0)
    mine = Glow(**DEMO)
    for level in mine.levels:
        for step in level.layers[1:]:          # layers[0] is the squeeze
            c = step.layers[0].channels
            step.layers[0] = ActNorm(c)
            step.layers[1] = InvConv1x1LU(c)
    history = train_glow(mine, steps=8 if FAST else 200, batch_size=32, desc="Glow with your layers")
    print(f"training bpd with your layers: {history[0]:.3f} -> {history[-1]:.3f}")
    flags = [k for k in mine.state_dict() if k.endswith("initialized")]
    print(f"{len(flags)} ActNorm flags in the state dict, all set: {all(bool(mine.state_dict()[k]) for k in flags)}")
    flat = flowlib.checks.flat_model_flow(mine.double().eval())
    v = torch.rand(2, 1, 28, 28, dtype=torch.float64, device=device) - 0.5
    errors = flowlib.checks.check_flow(flat, v, jacobian=False)
    print("whole-model checks passed:", {k: f"{e:.1e}" for k, e in errors.items()})

# %% [markdown]
# ## 6. Does learning the permutation help? A small ablation
#
# Now the question Glow's paper asked: is a learned 1x1 convolution better than reversing
# or shuffling the channels? We train the same small Glow four times, changing only the
# permutation: `reverse`, `shuffle`, `conv1x1` (dense) and `conv1x1_lu`. Same batches,
# same optimiser, same seed (though each permutation draws its own random numbers, so the
# coupling networks do not start from identical weights). A fifth run is the paper's other
# ablation: the `conv1x1_lu` Glow with an **additive** coupling, $z_b = h_b + t(h_a)$, which
# has no scale and so a log-det of 0, against the affine coupling
# $z_b = (h_b + t(h_a)) \odot \sigma(r(h_a) + 2)$ of all the others.
#
# Outside fast mode each run is a Glow with $K = 4$, $L = 2$, width 64 for 1,500 steps of
# 64 images (about 5 minutes for the first four on a 2-core CPU, and a little more for the
# fifth; well under a minute each on a GPU).
# In fast mode (CI, autograding) each run is a few steps of a smaller Glow.

# %%
if FAST:
    ABLATION = dict(K=2, L=2, hidden=32, steps=12, batch_size=32, eval_images=128)
else:
    ABLATION = dict(K=4, L=2, hidden=64, steps=1500, batch_size=64, eval_images=2000)
cfg = ABLATION


def conv_weights(model):
    """The C x C weight of every 1x1 convolution in the model, level by level."""
    return [step.layers[1].weight().detach().cpu().clone()
            for level in model.levels for step in level.layers[1:]
            if isinstance(step.layers[1], (fl.InvConv1x1, fl.InvConv1x1LU))]


runs = {}
VARIANTS = {"reverse": {}, "shuffle": {}, "conv1x1": {}, "conv1x1_lu": {},
            "conv1x1_lu, additive": dict(coupling="additive")}
for perm, extra in VARIANTS.items():
    torch.manual_seed(0)
    model = Glow((1, 28, 28), K=cfg["K"], L=cfg["L"], hidden=cfg["hidden"], permutation=perm.split(",")[0], **extra)
    w_init = conv_weights(model)
    t0 = time.perf_counter()
    curve = train_glow(model, cfg["steps"], cfg["batch_size"], seed=1, desc=perm)
    seconds = time.perf_counter() - t0
    runs[perm] = dict(curve=curve, model=model, w_init=w_init, seconds=seconds,
                      test=test_bpd(model, cfg["eval_images"]))
    print(f"{perm:>20}: {seconds:5.1f} s, last training bpd {curve[-1]:.3f}, "
          f"test bpd {runs[perm]['test']:.3f} ({cfg['eval_images']} images)")

# %%
def smooth(values, width):
    if width <= 1 or len(values) < width:
        return np.asarray(values)
    return np.convolve(values, np.ones(width) / width, mode="valid")


width = 1 if FAST else 50
fig, ax = plt.subplots(figsize=(8, 4))
for perm, run in runs.items():
    ys = smooth(run["curve"], width)
    ax.plot(np.arange(len(ys)) + width, ys, "o-" if FAST else "-", ms=3,
            label=f"{perm} (test {run['test']:.3f})")
ax.set_xlabel("training step")
ax.set_ylabel("training bpd" + ("" if width == 1 else f" (mean of {width} steps)"))
ax.set_title(f"Glow K={cfg['K']}, L={cfg['L']}, width {cfg['hidden']}" + (": fast mode, far too short to rank" if FAST else ""))
if not FAST:
    ax.set_ylim(None, float(np.percentile(np.concatenate([r["curve"] for r in runs.values()]), 90)))
ax.legend(fontsize=8)
plt.show()
if FAST:
    print(f"Fast mode: {cfg['steps']} steps per run. These curves show the first drop of the loss "
          "and the noise of single batches; they are too short to rank the permutations.")

# %% [markdown]
# **How to read this plot.** In fast mode, each curve is a handful of steps of a tiny
# model: it shows the first drop of the loss and the noise of single minibatches, and
# differences of a few hundredths of a bit mean nothing. The 1x1 variants also *start*
# lower, before they have learned anything, so that gap says nothing about learning.
# (At the start every coupling is the identity, because its last convolution is zero.
# The likely reason for the head start: the squeeze stacks four neighbouring, strongly
# correlated pixels as channels; a random rotation mixes them into channels of unequal
# variance, and the per-channel scalings of ActNorm and the priors fit that better.)
# Do not rank anything from the fast-mode plot.
#
# Outside fast mode, look at the end of the curves and at the test bpd: does the paper's
# ranking show up on this small model? One seed on a small model is weak evidence either
# way; train again with another seed (`seed=` of `train_glow`) before you believe a gap of a
# few hundredths of a bit. The Glow paper (Kingma & Dhariwal, 2018, Figure 3)
# ran the comparison properly, on CIFAR-10 with both additive and affine couplings: the
# learned 1x1 convolution reached a lower negative log-likelihood than a fixed random
# shuffle, the shuffle did better than reversing, and the 1x1 convolution also got there
# in fewer epochs, for little extra computation; and with every permutation the affine
# coupling reached a lower negative log-likelihood than the additive one. Compare the last
# two curves for that question on this model (one seed again).
#
# Finally, what did the dense 1x1 convolutions learn? Each panel is one $W$ of the first
# level (4 channels: the four pixels of each 2x2 patch that the squeeze stacked). Top: the
# random rotation it started from; middle: after training; bottom: the change (each row
# has its own colour scale). In fast mode the change is tiny. After the longer run, compare
# the log-determinants: a rotation has $\log\lvert\det W\rvert = 0$, a learned $W$ need not.

# %%
run = runs["conv1x1"]
after = conv_weights(run["model"])
n_first = cfg["K"]                             # the first K convolutions belong to level 1
fig, axes = plt.subplots(3, n_first, figsize=(2.3 * n_first, 6.6), squeeze=False)
for k in range(n_first):
    w0, w1 = run["w_init"][k], after[k]
    for row, (mat, title) in enumerate([(w0, "start"), (w1, "trained"), (w1 - w0, "change")]):
        lim = float(mat.abs().max()) or 1.0
        axes[row, k].imshow(mat.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[row, k].set_xticks([])
        axes[row, k].set_yticks([])
        extra = (f"\nlog|det| {torch.linalg.slogdet(mat.double())[1].item() + 0.0:.3f}" if row < 2
                 else f"\nmax {lim:.2g}")
        axes[row, k].set_title(f"step {k + 1} {title}{extra}", fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What we saw
#
# * **ActNorm** is a per-channel affine bijection, $z = (x + b)\,e^{s}$, with log-det
#   $h w \sum_c s_c$. It starts from the statistics of the first batch (zero mean, unit
#   variance per channel) and is an ordinary learned layer afterwards: unlike batch norm,
#   one image's output does not depend on the rest of the batch.
# * That initialisation must happen **once**. The `initialized` flag is a buffer, so it
#   travels in the state dict; a model that loses it re-initialises on whatever it sees
#   first after loading, and its density changes with that accident.
# * The **invertible 1x1 convolution** generalises a channel permutation to any invertible
#   $W$ applied at every pixel; its log-det is $h w \log\lvert\det W\rvert$ (use
#   `slogdet`: determinants can be negative).
# * Its inverse is computed in **float64** and cached in eval mode: in float32 the error of
#   $W^{-1}$ compounds over dozens of layers.
# * The **LU parametrisation** $W = P L (U + \operatorname{diag}(s))$ makes the log-det
#   $\sum_c \log s_c$, $O(C)$ instead of $O(C^3)$, and keeps $W$ invertible by
#   construction.
# * A short **ablation** cannot rank reverse, shuffle and 1x1 convolution; the Glow paper's
#   longer runs found the learned 1x1 convolution best, then shuffle, then reverse.
#
# Next, notebook 06 assembles these layers, the coupling of notebook 03 and the multi-scale
# architecture of notebook 04 into a full Glow on MNIST.
