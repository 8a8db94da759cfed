# %% [markdown]
# # 6. Glow on MNIST
#
# Glow (Kingma & Dhariwal, 2018) is the model the last five notebooks have been building
# towards. It is a multi-scale flow like the one of notebook 4, and every one of its flow
# steps is the triple of notebook 5:
#
# $$\text{ActNorm} \;\rightarrow\; \text{invertible } 1\times 1 \text{ convolution} \;\rightarrow\; \text{affine coupling}.$$
#
# Here you put the pieces together, train the model on MNIST (or load a trained one), and
# then look at what it learned.
#
# **What you will build**
#
# 1. **Exercise 6.1:** one Glow flow step, forward and inverse, from flowlib's layers.
#    Then we train a Glow made of such steps (or load a trained one) and sample from it by
#    temperature, with a slider.
# 2. **Exercise 6.2:** the multi-scale encoder: level by level, squeeze and flow, factor out
#    half of the channels under a learned prior, and standardise the top latent under the
#    learned top prior. You check it against `flowlib.models.Glow` with the same weights.
# 3. **Exercise 6.3:** resample one latent level while keeping the others, to see what each
#    level holds.
#
# With the trained model you will also check that reconstructions are exact and
# interpolate between digits.
#
# Conventions, as everywhere in this course: `forward(x) -> (z, logdet)` goes from data to
# latent, `inverse(z) -> (x, logdet)` back, and `logdet` has one value per sample.
#
# Three helpers come from flowlib: `show_grid` draws a grid of integer images with matplotlib,
# `temperature_widget` puts a temperature slider on a grid of samples (both in `flowlib.viz`),
# and `perturb_` (in `flowlib.checks`) adds small noise to every parameter of a freshly built flow.
# The last one matters for testing: a new Glow starts close to the identity (its coupling
# networks and priors are zero-initialised), and a check on an identity map cannot tell a
# right answer from a wrong one.

# %%
import copy
import math
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn

import flowlib
from flowlib import checks
from flowlib.checks import perturb_
from flowlib.notebook_helpers import fast_mode, needs, passed
from flowlib.data import MNIST, repo_data_dir, default_cache_dir
from flowlib.layers import (ActNorm, ChannelAffineCoupling, FlowSequential, GlowCouplingNet,
                            InvConv1x1LU, net_out_channels)
from flowlib.metrics import evaluate_bpd
from flowlib.models import Glow, standard_normal_log_prob
from flowlib.viz import show_grid, temperature_widget

FAST = fast_mode()
device = flowlib.notebook_helpers.device()
torch.manual_seed(0)

# %% [markdown]
# ## The data
#
# MNIST at 8 bits: 28x28 grey levels 0..255. Like every flowlib model, Glow takes the
# integer images and dequantizes them itself, so the log-likelihood includes the
# discretisation term $-D\log 256$ of notebook 2. After the uniform noise, the Glow paper
# centres the values to $[-0.5, 0.5)$; flowlib's MNIST Glow (the command line's default and
# the pretrained model) applies the logit transform of notebook 2 instead, whose own
# Jacobian stretches the dark bins of MNIST's black background, so it learns in minutes
# what the centred Glow needs hours for. `Glow(logit_alpha=...)` chooses.

# %%
mnist_test = MNIST(split="test", n_bits=8)
print(f"{len(mnist_test):,} test images of shape {tuple(mnist_test.images.shape[1:])}, "
      f"values {mnist_test.images.min()}..{mnist_test.images.max()}")
show_grid(mnist_test.images[:32], nrow=16, title="MNIST test images", zoom=1.5)
plt.show()

# %% [markdown]
# ## One flow step
#
# A Glow step chains three bijections you met in notebook 5. For an input $x$ with $C$
# channels and $H \times W$ pixels:
#
# * **ActNorm**, a per-channel affine map with data-dependent initialisation:
#   $h_1 = (x + b) \odot e^{s}$, with $\log|\det| = HW \sum_c s_c$.
# * **Invertible $1\times1$ convolution**, a learned mixing of the channels at every pixel:
#   $h_2 = W h_1$, with $\log|\det| = HW \log|\det W|$ (flowlib's `InvConv1x1LU` keeps $W$
#   in LU form, so this costs $O(C)$).
# * **Affine coupling**: the first half of the channels $h_a$ passes unchanged and sets a
#   shift and a scale for the second half,
#   $z_b = \big(h_b + t(h_a)\big) \odot \sigma\big(r(h_a) + 2\big)$, with
#   $\log|\det| = \sum \log \sigma(r(h_a) + 2)$.
#
# For a composition $f = f_3 \circ f_2 \circ f_1$ the chain rule multiplies the Jacobians,
# so the log-determinants add:
#
# $$\log\left|\det \frac{\partial f}{\partial x}\right| = \sum_{i=1}^{3} \log\left|\det \frac{\partial f_i}{\partial h_{i-1}}\right|,
# \qquad f^{-1} = f_1^{-1} \circ f_2^{-1} \circ f_3^{-1}.$$
#
# The inverse undoes the layers in reverse order, and its log-det is the negative sum.
#
# ### Exercise 6.1 (flow step)
#
# Write `forward` and `inverse` of `FlowStep`. The three layers are built for you, and
# each one already follows the course convention (`layer(h)` returns `(output, logdet)`,
# `layer.inverse(h)` as well). Four lines per method are enough.

# %% [solution] nb06_flow_step
class FlowStep(nn.Module):
    """One Glow step: ActNorm -> invertible 1x1 convolution -> affine coupling."""

    def __init__(self, channels, hidden=64):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.conv = InvConv1x1LU(channels)
        half = channels // 2
        net = GlowCouplingNet(half, net_out_channels(channels - half, "sigmoid"), hidden)
        self.coupling = ChannelAffineCoupling(net, channels, scale="sigmoid")

    def forward(self, x):
        """x -> (z, logdet): the three layers in order, their log-dets summed."""
        ### BEGIN SOLUTION
        h, logdet_actnorm = self.actnorm(x)
        h, logdet_conv = self.conv(h)
        z, logdet_coupling = self.coupling(h)
        return z, logdet_actnorm + logdet_conv + logdet_coupling
        ### END SOLUTION

    def inverse(self, z):
        """z -> (x, logdet): the three inverses in reverse order, their log-dets summed."""
        ### BEGIN SOLUTION
        h, logdet_coupling = self.coupling.inverse(z)
        h, logdet_conv = self.conv.inverse(h)
        x, logdet_actnorm = self.actnorm.inverse(h)
        return x, logdet_coupling + logdet_conv + logdet_actnorm
        ### END SOLUTION

# %% [markdown]
# The check below builds a small step in float64, perturbs its weights, and runs the shared
# checks of `flowlib.checks`: `inverse(forward(x))` gives back `x`, your log-det equals
# $\log|\det J|$ of the autograd Jacobian, and the two directions' log-dets cancel. Then it
# compares your step with flowlib's `FlowSequential` of the same three layers.

# %% [tests] nb06_flow_step_tests points=2
step = perturb_(FlowStep(4, hidden=8).double(), seed=1)
x = torch.randn(2, 4, 2, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
STEP_INVERSE = ("inverse must undo the three layers in reverse order, each with its own inverse: "
                "self.coupling.inverse, then self.conv.inverse, then self.actnorm.inverse")
checks.check_flow(step, x, hint=STEP_INVERSE)
reference = FlowSequential(step.actnorm, step.conv, step.coupling)
z, logdet = step(x)
z_ref, logdet_ref = reference(x)
assert torch.allclose(z, z_ref, atol=1e-10), (
    "forward is invertible but it is not Glow's step: apply ActNorm first, then the 1x1 "
    "convolution, then the coupling.")
assert torch.allclose(logdet, logdet_ref, atol=1e-8), "forward's log-det must be the sum of the three layers' log-dets."
passed("Exercise 6.1 (flow step)")
### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
from flowlib.layers import FlowSequential as _FlowSequential
for _seed, _c, _hw, _n, _dtype in [(11, 6, 2, 2, torch.float64), (12, 3, 4, 1, torch.float64),
                                   (13, 8, 4, 5, torch.float32)]:
    torch.manual_seed(_seed)
    _step = _checks.perturb_(FlowStep(_c, hidden=6).to(_dtype), seed=_seed)
    _x = torch.randn(_n, _c, _hw, _hw, generator=torch.Generator().manual_seed(_seed)).to(_dtype)
    _checks.check_flow(_step, _x, jacobian=_dtype == torch.float64)
    _ref = _FlowSequential(_step.actnorm, _step.conv, _step.coupling)
    _tol = 1e-10 if _dtype == torch.float64 else 1e-5
    _z, _ld = _step(_x)
    _zr, _ldr = _ref(_x)
    assert _z.shape == _x.shape and _ld.shape == (_n,), "hidden: shapes"
    assert torch.allclose(_z, _zr, atol=_tol) and torch.allclose(_ld, _ldr, atol=100 * _tol), "hidden: forward"
    _xi, _ldi = _step.inverse(_zr)
    _xr, _ldir = _ref.inverse(_zr)
    assert torch.allclose(_xi, _xr, atol=_tol) and torch.allclose(_ldi, _ldir, atol=100 * _tol), "hidden: inverse"
### END HIDDEN TESTS

# %% [markdown]
# Your step is a drop-in replacement for flowlib's. The cell below takes a small
# `flowlib.models.Glow`, puts a `FlowStep` holding the very same three layers in place of
# each of its steps, and compares the log-likelihood of a few digits under both models
# (with the same dequantization noise).

# %%
with needs("Exercise 6.1 (flow step)"):
    tiny = perturb_(Glow((1, 28, 28), K=2, L=2, hidden=16).double(), seed=3)
    yours = copy.deepcopy(tiny)
    for level in yours.levels:
        for j in range(1, len(level.layers)):      # layers[0] is the squeeze
            flowlib_step = level.layers[j]
            your_step = FlowStep(flowlib_step[0].channels, hidden=16).double()
            your_step.actnorm, your_step.conv, your_step.coupling = flowlib_step[0], flowlib_step[1], flowlib_step[2]
            level.layers[j] = your_step
    digits = mnist_test.images[:8]
    torch.manual_seed(0)
    log_p_flowlib = tiny.log_prob(digits)
    torch.manual_seed(0)
    log_p_yours = yours.log_prob(digits)
    print("log p(x), flowlib's steps:", [f"{v:.2f}" for v in log_p_flowlib[:4].tolist()])
    print("log p(x), your steps:     ", [f"{v:.2f}" for v in log_p_yours[:4].tolist()])
    print("largest difference:", (log_p_flowlib - log_p_yours).abs().max().item())

# %% [markdown]
# ## The multi-scale architecture
#
# Glow keeps the multi-scale structure of RealNVP (notebook 4). With $L$ levels of $K$
# steps each, on a 28x28 MNIST digit with $L = 2$:
#
# ```
# x (1, 28, 28)  --dequantize-->  v
# level 0:  squeeze -> (4, 14, 14) -> K flow steps -> split: keep (2, 14, 14), set aside z_0 (2, 14, 14)
# level 1:  squeeze -> (8, 7, 7)   -> K flow steps -> top prior            ->  z_1 (8, 7, 7)
# ```
#
# Two things are *learned priors* rather than a fixed $\mathcal N(0, I)$:
#
# * **At a split**, the half $b$ that leaves the flow gets a Gaussian prior whose mean and
#   scale are computed from the half $a$ that stays: $p(b \mid a) = \mathcal N\big(b;\,
#   \mu(a), \sigma(a)^2\big)$. flowlib writes this as a bijection that *standardises* $b$,
#   $$b' = \frac{b - \mu(a)}{\sigma(a)}, \qquad \log|\det| = -\sum \log \sigma(a),$$
#   so the latent set aside, $b'$, is standard normal. `glow.splits[i](h)` returns
#   `(h', logdet)` where `h'` has all the channels of `h`: its first half is $a$
#   (unchanged, it goes on to the next level), its second half is $b'$.
# * **At the top**, a learned mean and scale per channel, `glow.top_prior`, standardised in
#   the same way. (A Glow built with `learn_top_prior=False` has `top_prior = None`.)
#
# Because every latent comes out standard normal, the log-likelihood is
#
# $$\log p(x) = \sum_{\ell} \log \mathcal N(z_\ell;\, 0, I) + \log\left|\det \frac{\partial (z_0, \dots, z_{L-1})}{\partial x}\right|,$$
#
# where the log-det collects every layer: the dequantization, the flow steps, the splits
# and the top prior. In flowlib the parts of level $\ell$ are `glow.levels[l]` (a
# `FlowSequential` of a `Squeeze` and the $K$ steps, built exactly like your `FlowStep`)
# and, for every level but the last, `glow.splits[l]`. We train this model first, look at
# its samples, and then, in Exercise 6.2, write its encoder ourselves.

# %%
demo = Glow((1, 28, 28), K=2, L=2, hidden=16)
print("levels:", [type(layer).__name__ for layer in demo.levels[0].layers])
print("splits:", [type(s).__name__ for s in demo.splits], "  top prior:", type(demo.top_prior).__name__)
print("latent shapes, finest first:", demo.latent_shapes)
print("dimensions:", [math.prod(s) for s in demo.latent_shapes], "sum =",
      sum(math.prod(s) for s in demo.latent_shapes), "= 28 * 28")

# %% [markdown]
# ## Training, or loading a trained Glow
#
# The objective is the one of the whole course: minimise the bits per dimension
#
# $$\text{bpd}(x) = -\frac{\log p(x)}{D \log 2}, \qquad D = 784,$$
#
# with Adam, a linear warm-up of the learning rate, gradient clipping, and ActNorm
# initialised once from a batch of 256 images. `flowlib.train.train` runs that loop (with
# a progress bar); it is what the command line runs:
#
# ```
# flowlib train --model glow --dataset mnist --out runs/mnist-glow        # K=4, L=2, width 64, 2 epochs
# flowlib train --model glow --dataset mnist --K 16 --hidden 256 --epochs 10 --out runs/mnist-glow-big
# flowlib sample --checkpoint runs/mnist-glow --temperature 0.7 --out samples.png
# ```
#
# What the next cell does:
#
# * if the pretrained checkpoint `data/pretrained/mnist_glow.pt` is in the repository, it
#   loads it (set `TRAIN_MY_OWN = True` to train anyway);
# * in fast mode (CI and autograding) it trains a small Glow for 20 steps only: that model
#   has learned next to nothing, and **its samples will look like noise**;
# * otherwise it trains: on a GPU a Glow with $K=16$, width 256, for 10 epochs (our estimate:
#   15 to 30 minutes on one recent GPU; not timed on every card); on a CPU the
#   command line's defaults ($K=4$, width 64, 2 epochs: 7 minutes and 1.42 test bpd on the
#   course's 2-core CPU), which gives rough digits. The run is
#   kept under `~/.cache/flowlib/runs/` (`$FLOWLIB_CACHE/runs/`), so running the cell again
#   loads it instead of training again, and an interrupted run continues where it stopped.

# %%
from flowlib.train import TrainConfig, load_checkpoint, train

TRAIN_MY_OWN = False
PRETRAINED = repo_data_dir() / "pretrained" / "mnist_glow.pt"

if PRETRAINED.is_file() and not TRAIN_MY_OWN:
    model, checkpoint = load_checkpoint(PRETRAINED, map_location=device)
    print(f"Loaded the pretrained checkpoint {PRETRAINED.name} ({checkpoint.get('step')} training steps).")
else:
    if FAST:
        config = TrainConfig(model="glow", dataset="mnist", K=4, L=2, hidden=32, max_steps=20,
                             batch_size=32, init_batch_size=64, warmup_steps=10, eval_every=0,
                             final_eval_images=0, sample_every=0, checkpoint_every=0,
                             out=tempfile.mkdtemp(prefix="nb06-"))
    elif device.type == "cuda":
        config = TrainConfig(model="glow", dataset="mnist", K=16, L=2, hidden=256, epochs=10)
    else:
        config = TrainConfig(model="glow", dataset="mnist", epochs=2)
    if not FAST:
        arch = config.resolved()
        config.out = str(default_cache_dir() / "runs" / f"nb06-mnist-glow-K{arch.K}-L{arch.L}-h{arch.hidden}")
    last = Path(config.out) / "checkpoints" / "last.pt"
    print(("Continuing (or reloading) the run in " if last.is_file() else "Training; run folder: ") + config.out)
    result = train(config, resume=last.is_file())
    model, checkpoint = load_checkpoint(result.checkpoint, map_location=device)
    if FAST:
        shutil.rmtree(config.out, ignore_errors=True)
model.eval()
steps = checkpoint.get("step") or 0
print(f"Glow with K={model.config['K']}, L={model.config['L']}, width {model.config['hidden']}: "
      f"{sum(p.numel() for p in model.parameters()):,} parameters, trained for {steps} steps.")
if steps < 2000:
    print(f"Only {steps} training steps: the samples below will look like noise. For real digits "
          f"train longer (FLOWLIB_FAST unset) or use the pretrained checkpoint.")

# %% [markdown]
# The test bpd on a part of the test set. For comparison: Glow reaches about 1.05 bits per
# dimension on MNIST after long training, RealNVP 1.06. An untrained Glow with the logit
# transform scores about 2.9 right after ActNorm's initialisation (the README's `make train`
# starts at 2.89), far below 8: the logit's Jacobian and ActNorm's data-dependent scales
# already fit the scale of the pixels before any training step.

# %%
test_images = MNIST(split="test", n_bits=model.n_bits, pad_to_32=model.image_shape[-1] == 32).images
torch.manual_seed(0)
n_eval = 256 if FAST else 2000
print(f"test bpd on {n_eval} test images: {evaluate_bpd(model, test_images, max_images=n_eval):.3f}")

# %% [markdown]
# ## Samples and temperature
#
# To sample, draw every latent from the standard normal and decode. Glow's authors found
# that samples look better at a *temperature* $T < 1$: draw $z \sim \mathcal N(0, T^2 I)$
# instead, which concentrates the samples where the density is high. Since flowlib's
# latents are standardised by the learned priors, this is the same as scaling the prior's
# standard deviation by $T$: $z_{\text{top}} = \mu + T\,\sigma\,\varepsilon$.
#
# Low temperatures give smooth, typical, similar digits; $T = 1$ gives the full variety of
# the model, artefacts included. The Glow paper uses $T = 0.7$.

# %% [readonly] nb06_samples
fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
for ax, temperature in zip(axes, (0.5, 0.7, 1.0)):
    samples = model.sample(36, temperature=temperature, generator=torch.Generator().manual_seed(1))
    show_grid(samples, n_bits=model.n_bits, nrow=6, ax=ax, title=f"temperature {temperature}")
plt.show()

# %% [markdown]
# Move the slider: the grid is decoded again from the **same** latents $\varepsilon$,
# scaled by the temperature, $z = T\varepsilon$. Each digit keeps its place and changes
# smoothly; at $T = 0$ all latents are zero and every cell shows the same image, the
# decoded mean of the priors.

# %% [readonly] nb06_temperature
display(temperature_widget(model, n=25, nrow=5, seed=2, max_temperature=1.5))

# %% [markdown]
# ## Inside the model: the multi-scale encoder
#
# So far `flowlib.models.Glow` did the encoding for us. Now you write it yourself, with the
# parts described in "The multi-scale architecture" above.
#
# ### Exercise 6.2 (multi-scale encode)
#
# Write `glow_encode(glow, v)`: from dequantized images `v` to the list of latents (finest
# level first, the top latent last) and the total log-det of the continuous flow. It must
# do exactly what `glow.flow_forward(v)` does, using `glow.levels`, `glow.splits` and
# `glow.top_prior`:
#
# 1. for each level: run `glow.levels[l]`; if the level has a split, run it, keep the first
#    half of the channels for the next level and append the second half to the latents;
# 2. at the top: apply `glow.top_prior` (when it is not `None`) and append the result;
# 3. add up every log-det on the way.
#
# `h.chunk(2, dim=1)` cuts a tensor into its two channel halves.

# %% [solution] nb06_encode
def glow_encode(glow, v):
    """Dequantized images v (batch, C, H, W) -> (latents, logdet), like glow.flow_forward(v)."""
    latents, logdet, h = [], 0.0, v
    ### BEGIN SOLUTION
    for level, flow in enumerate(glow.levels):
        h, ld = flow(h)
        logdet = logdet + ld
        if level < len(glow.splits):
            h, ld = glow.splits[level](h)
            logdet = logdet + ld
            h, z = h.chunk(2, dim=1)
            latents.append(z)
    if glow.top_prior is not None:
        h, ld = glow.top_prior(h)
        logdet = logdet + ld
    latents.append(h)
    ### END SOLUTION
    return latents, logdet

# %% [markdown]
# The check uses a small Glow with three levels on 8x8 images, in float64, with perturbed
# weights. It compares your latents and log-det with `glow.flow_forward`, and runs the
# shared checks on the whole encoder (all latents concatenated, so the Jacobian is square).

# %% [tests] nb06_encode_tests points=3
glow = perturb_(Glow((1, 8, 8), K=2, L=3, hidden=8).double(), seed=2)
v = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5
ref_latents, ref_logdet = glow.flow_forward(v)
WRITE_IT = ("Exercise 6.2 asks you to write the encoder from glow.levels, glow.splits and glow.top_prior: "
            "glow.flow_forward (and encode, forward, log_prob, which use it) is the reference the checks "
            "compare with, so it refuses to run here")
REFERENCES = [(Glow, name) for name in ("flow_forward", "encode", "forward", "log_prob")]
with flowlib.notebook_helpers.refusing(*REFERENCES, why=WRITE_IT, namespace=globals()):
    latents, logdet = glow_encode(glow, v)
assert isinstance(latents, (list, tuple)) and len(latents) == len(ref_latents), (
    f"glow_encode must return one latent per level ({len(ref_latents)} for L=3), got "
    f"{len(latents) if isinstance(latents, (list, tuple)) else type(latents).__name__}.")
for i, (mine, ref) in enumerate(zip(latents, ref_latents)):
    assert mine.shape == ref.shape, (
        f"latent {i} has shape {tuple(mine.shape)}, expected {tuple(ref.shape)} "
        f"(glow.latent_shapes[{i}] = {glow.latent_shapes[i]}). At each split set aside the "
        f"second half of the channels and go on with the first half.")
for i, (mine, ref) in enumerate(zip(latents, ref_latents)):
    where = ("the split: run glow.splits[l] on the level's output first (its second half is the standardised "
             "latent), then set that second half aside" if i < len(ref_latents) - 1
             else "the top prior: apply glow.top_prior to the last level's output")
    assert torch.allclose(mine, ref, atol=1e-10), (
        f"latent {i} differs from glow.flow_forward's by up to {(mine - ref).abs().max():.3g}; "
        f"check {where}.")
assert torch.allclose(torch.as_tensor(logdet), ref_logdet, atol=1e-8), (
    "the log-det differs from glow.flow_forward's: add the log-det of every level's flow, "
    "every split and the top prior.")
flat_inverse = checks.flat_model_flow(glow)[1]


def flat_encode(v):
    latents, logdet = glow_encode(glow, v)
    return torch.cat([z.flatten(1) for z in latents], dim=1), logdet


checks.check_invertibility((flat_encode, flat_inverse), v)
checks.check_flow((flat_encode, flat_inverse), v[:1])      # the Jacobian check is the slow one: one sample
passed("Exercise 6.2 (multi-scale encode)")
### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
from flowlib.models import Glow as _Glow
for _seed, _shape, _K, _L, _top, _n, _dtype in [
        (21, (3, 8, 8), 1, 2, True, 1, torch.float64),
        (22, (1, 4, 4), 2, 1, True, 3, torch.float64),
        (23, (2, 8, 4), 1, 2, False, 2, torch.float64),
        (24, (1, 16, 16), 2, 3, True, 4, torch.float32)]:
    _g = _checks.perturb_(_Glow(_shape, K=_K, L=_L, hidden=8, learn_top_prior=_top).to(_dtype), seed=_seed)
    _v = (torch.rand(_n, *_shape, generator=torch.Generator().manual_seed(_seed)) - 0.5).to(_dtype)
    _ref, _ldr = _g.flow_forward(_v)
    with importlib.reload(flowlib.notebook_helpers).refusing(
            *[(_Glow, _name) for _name in ("flow_forward", "encode", "forward", "log_prob")],
            why="hidden: the encoder of this exercise", namespace=globals()):
        _lat, _ld = glow_encode(_g, _v)
    _tol = 1e-10 if _dtype == torch.float64 else 1e-5
    assert len(_lat) == len(_ref), "hidden: number of latents"
    for _a, _b in zip(_lat, _ref):
        assert _a.shape == _b.shape and torch.allclose(_a, _b, atol=_tol), "hidden: latents"
    assert torch.allclose(torch.as_tensor(_ld), _ldr, atol=1e3 * _tol), "hidden: logdet"
    if _dtype == torch.float64 and math.prod(_shape) <= 64:
        def _fwd(v, g=_g):
            _out, _l = glow_encode(g, v)
            return torch.cat([z.flatten(1) for z in _out], 1), _l
        _checks.check_flow((_fwd, _checks.flat_model_flow(_g)[1]), _v[:1])
### END HIDDEN TESTS

# %% [markdown]
# Your encoder from Exercise 6.2 works on the trained model too: with the same
# dequantization noise it gives the same bits per dimension as flowlib's.

# %%
with needs("Exercise 6.2 (multi-scale encode)"), torch.no_grad():
    x = test_images[:64].to(device)
    torch.manual_seed(0)
    v, logdet_dequant = model.dequantize(x.float())
    latents, logdet = glow_encode(model, v)
    log_p = sum(standard_normal_log_prob(z) for z in latents) + logdet + logdet_dequant
    yours = (-log_p / (math.prod(model.image_shape) * math.log(2))).mean().item()
    torch.manual_seed(0)
    print(f"bpd with your encoder: {yours:.4f}; with model.bpd: {model.bpd(x).mean().item():.4f}")

# %% [markdown]
# ## Reconstructions are exact
#
# A flow has no decoder to train: `decode` is the exact inverse of `encode`. The only
# information `encode` adds is the dequantization noise, which `decode` removes again by
# rounding down. So $\text{decode}(\text{encode}(x)) = x$ pixel for pixel, provided every
# level's latent is kept. (Most "not invertible" reports about Glow implementations come
# from decoding with freshly sampled latents at the lower levels.)

# %%
x = test_images[:16]
with torch.no_grad():
    latents, _ = model.encode(x)
    x_rec = model.decode(latents).cpu()
    model64 = copy.deepcopy(model).double()
    x_rec64 = model64.decode(model64.encode(x)[0]).cpu()
print(f"float32: {(x_rec != x).sum().item()} of {x.numel()} pixels differ")
print(f"float64: {(x_rec64 != x).sum().item()} of {x.numel()} pixels differ")
assert torch.equal(x_rec64, x.double()), "decode(encode(x)) should give back x exactly"
fig, axes = plt.subplots(1, 2, figsize=(10, 2.2))
show_grid(x, n_bits=model.n_bits, nrow=8, ax=axes[0], title="x")
show_grid(x_rec, n_bits=model.n_bits, nrow=8, ax=axes[1], title="decode(encode(x))")
plt.show()

# %% [markdown]
# In float32 a value that lands within rounding error of a bin edge can, very rarely, come
# back one grey level off; in float64 that does not happen in practice.
#
# ## Interpolations
#
# Encode two digits, walk along the straight line between their latents (every level at
# once), and decode each point: $x(w) = \text{decode}\big((1-w)\,z^{(0)} + w\,z^{(1)}\big)$.
# The ends are the two digits themselves.

# %%
labels = mnist_test.labels
pairs = [(int((labels == a).nonzero()[0]), int((labels == b).nonzero()[0])) for a, b in ((1, 7), (3, 8), (0, 6), (4, 9))]
with torch.no_grad():
    rows = [model.interpolate(test_images[i], test_images[j], steps=9) for i, j in pairs]
show_grid(torch.cat(rows), n_bits=model.n_bits, nrow=9, title="interpolations: 1-7, 3-8, 0-6, 4-9", zoom=2)
plt.show()

# %% [markdown]
# ## What each level holds
#
# The multi-scale structure splits an image's information across the levels: the latent
# set aside at the first split (high resolution, $14 \times 14$ for MNIST) and the top
# latent (low resolution, $7 \times 7$). To see what each holds, encode some digits,
# replace *one* level's latent by fresh noise, keep the others, and decode.
#
# ### Exercise 6.3 (resample one level)
#
# Write `resample_level(latents, level, temperature, generator)`. It returns a **new** list
# in which `latents[level]` is replaced by noise from $\mathcal N(0, T^2)$ of the same shape,
# dtype and device, and every other entry is the same tensor as before. Do not change the
# list or the tensors you are given. Draw the noise with `torch.randn(..., generator=generator)`
# (a generator lives on the CPU: draw there, then move the noise with `.to(...)`).

# %% [solution] nb06_resample
def resample_level(latents, level, temperature=1.0, generator=None):
    """A copy of the list ``latents`` with ``latents[level]`` replaced by N(0, temperature^2) noise."""
    ### BEGIN SOLUTION
    new = list(latents)
    old = latents[level]
    noise = torch.randn(old.shape, generator=generator, dtype=old.dtype)
    new[level] = temperature * noise.to(old.device)
    return new
    ### END SOLUTION

# %% [tests] nb06_resample_tests points=1
original = [torch.full((2, 2, 4, 4), 3.0), torch.ones(2, 8, 2, 2)]
kept = list(original)
new = resample_level(original, 0, temperature=0.5, generator=torch.Generator().manual_seed(0))
assert isinstance(new, list) and len(new) == 2, "return a list with one latent per level"
assert len(original) == 2 and original[0] is kept[0] and original[1] is kept[1], "do not change the list you are given: copy it"
assert torch.equal(original[0], torch.full((2, 2, 4, 4), 3.0)), "do not change the latents you are given in place"
assert new[1] is original[1], "every level except `level` must stay as it was"
assert new[0].shape == original[0].shape and new[0].dtype == original[0].dtype, "the new latent must have the old one's shape and dtype"
assert not torch.equal(new[0], original[0]), "latents[level] should be replaced by fresh noise"
big = resample_level([torch.full((20000,), 5.0)], 0, temperature=0.5, generator=torch.Generator().manual_seed(1))[0]
assert abs(big.mean().item() - 5.0) > 0.5, (
    f"the new latent has mean {big.mean().item():.3f}, the old latent's value (5): replace latents[level] by "
    f"temperature * noise, do not add the noise to it")
assert abs(big.std().item() - 0.5) < 0.02 and abs(big.mean().item()) < 0.02, (
    f"the noise should have mean 0 and standard deviation = temperature (0.5), got mean "
    f"{big.mean().item():.3f}, std {big.std().item():.3f}")
again = [resample_level([torch.zeros(100)], 0, generator=torch.Generator().manual_seed(3))[0] for _ in range(2)]
assert torch.equal(again[0], again[1]), (
    "two calls with generators seeded alike gave different noise: draw it from the generator you are given, "
    "torch.randn(shape, generator=generator, ...) (torch.randn_like takes no generator)")
wide = resample_level([torch.zeros(3, 2, dtype=torch.float64)], 0, generator=torch.Generator().manual_seed(4))[0]
assert wide.dtype == torch.float64, (
    f"for float64 latents the new latent is {wide.dtype}: draw the noise in the old latent's dtype (dtype=old.dtype)")
passed("Exercise 6.3 (resample one level)")
### BEGIN HIDDEN TESTS
_orig = [torch.randn(3, 4, 2, 2, dtype=torch.float64), torch.randn(3, 2, 4, 4, dtype=torch.float64),
         torch.randn(3, 16, 1, 1, dtype=torch.float64)]
_copy = [t.clone() for t in _orig]
for _lvl in (1, -1, 2):
    _new = resample_level(_orig, _lvl, temperature=1.3, generator=torch.Generator().manual_seed(5))
    assert len(_new) == 3 and all(torch.equal(a, b) for a, b in zip(_orig, _copy)), "hidden: inputs unchanged"
    for _i in range(3):
        if _i == _lvl % 3:
            assert _new[_i].shape == _orig[_i].shape and _new[_i].dtype == torch.float64, "hidden: shape and dtype"
            assert not torch.equal(_new[_i], _orig[_i]), "hidden: resampled level"
        else:
            assert torch.equal(_new[_i], _orig[_i]), "hidden: other levels"
_zero = resample_level(_orig, 0, temperature=0.0, generator=torch.Generator().manual_seed(6))
assert torch.equal(_zero[0], torch.zeros_like(_orig[0])), "hidden: temperature 0"
_a = resample_level(_orig, 2, 1.0, generator=torch.Generator().manual_seed(7))[2]
_b = resample_level(_orig, 2, 1.0, generator=torch.Generator().manual_seed(7))[2]
assert torch.equal(_a, _b), "hidden: generator"
_big = resample_level([torch.full((40000,), -7.0, dtype=torch.float64)], 0, 2.0,
                      generator=torch.Generator().manual_seed(8))[0]
assert abs(_big.std().item() - 2.0) < 0.05 and abs(_big.mean().item()) < 0.05, "hidden: distribution"
### END HIDDEN TESTS

# %% [markdown]
# Each row below starts with a digit (its exact reconstruction), followed by four decodings
# in which one level's latent was resampled at $T = 0.7$ and every other level kept.

# %%
with needs("Exercise 6.3 (resample one level)"), torch.no_grad():
    x = test_images[[int((labels == d).nonzero()[0]) for d in (2, 3, 5, 8)]]
    latents, _ = model.encode(x)
    g = torch.Generator().manual_seed(3)
    fig, axes = plt.subplots(1, len(latents), figsize=(5 * len(latents), 4), squeeze=False)
    for level, ax in enumerate(axes[0]):
        columns = [model.decode(latents).cpu()]
        columns += [model.decode(resample_level(latents, level, 0.7, generator=g)).cpu() for _ in range(4)]
        grid = torch.stack(columns, dim=1).flatten(0, 1)     # one row per digit
        what = "top latent" if level == len(latents) - 1 else f"level {level} latent"
        show_grid(grid, n_bits=model.n_bits, nrow=5, ax=ax,
             title=f"new {what} {tuple(model.latent_shapes[level])},\nother levels kept")
    plt.show()

# %% [markdown]
# With a trained model, resampling the high-resolution latent of the first split changes
# only details: the thickness and texture of the strokes, small wiggles, the same digit in
# the same pose. Resampling the top latent changes what the digit is, or its shape and
# slant, while the fine structure follows along. Coarse content sits at the top, detail at
# the lower levels. (A barely trained model is little more than a fixed rearrangement of
# the pixels: resampling a level then mostly adds noise to the pixels that level holds.)
#
# ## Conditioning on the class: what it would take
#
# flowlib's Glow takes `n_classes=10`. The top prior's mean and log-scale then also depend
# on the label `y` (a zero-initialised linear map of the one-hot label), `encode`,
# `log_prob`, `decode` and `sample` take `y=...`, and `class_logits(x)` reads a class off
# the mean of the top latent, as in openai/glow. Sampling `y = 3` would then draw threes.
# This notebook does not train one, because three things are missing for it to work:
#
# * training that feeds the labels: `flowlib.train` passes none yet, so the prior would
#   never learn to tell the classes apart;
# * Glow's classification term, the cross-entropy of `class_logits` added to the bits per
#   dimension, which pushes the top latent to carry the class;
# * far more training than fast mode or a laptop CPU allows: the class only shows in the
#   samples once the unconditional model draws clean digits.
#
# ## What we saw
#
# * A Glow step is a composition of three bijections: apply ActNorm, the $1\times1$
#   convolution and the coupling in order, undo them in reverse order, and add the
#   log-determinants.
# * The multi-scale encoder squeezes, flows and factors out half of the channels at every
#   level. Learned priors (conditional at the splits, per channel at the top) are written as
#   standardising bijections, so every latent is standard normal and their log-dets join
#   the others.
# * Temperature scales the latents: $T < 1$ trades variety for typical, clean samples.
# * Reconstruction is exact when every level's latent is reused; interpolating in latent
#   space morphs one digit into another.
# * Coarse structure lives in the top latent, details in the latents factored out early.
#
# Next, in notebook 7: the same model on faces, and edits along directions in latent space.
