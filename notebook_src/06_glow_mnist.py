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
# 3. **Exercise 6.3:** sampling, the encoder run backwards: draw the top latent from the
#    top prior, then at every split the half that was set aside from its prior given the half
#    that stayed, all at a temperature.
#
# With the trained model you will also check that reconstructions are exact, interpolate
# between digits, and see what each level's latent holds.
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
from flowlib.metrics import evaluate_bpd, fair_order
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
print(f"test bpd on {n_eval} test images: {evaluate_bpd(model, fair_order(test_images), max_images=n_eval):.3f}")

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
# ## Sampling through the learned priors
#
# `model.sample` runs the encoder of Exercise 6.2 backwards, from the top. Every latent that
# the encoder standardised is now *drawn* from its prior, and the prior at a split depends on
# what has already been decoded: the half set aside at level $\ell$ is drawn given the half
# that stayed. At temperature $T$:
#
# 1. **Top.** Draw $\varepsilon$ of shape `(n, *glow.latent_shapes[-1])`. With
#    `mean, log_sd = glow.top_prior.mean_log_sd(n)`, the top latent is
#    $h = \text{mean} + T\, e^{\text{log\_sd}}\, \varepsilon$ (just $T\varepsilon$ when
#    `glow.top_prior` is `None`). Undo the last level: `h, _ = glow.levels[-1].inverse(h)`.
# 2. **Every split $\ell$, from the last to the first.** The half that stayed is $a = h$, and
#    `mean, log_sd = glow.splits[l].mean_log_sd(a)` is the prior of the half that was set
#    aside. Draw $\varepsilon$ of shape `(n, *glow.latent_shapes[l])`, set
#    $b = \text{mean} + T\, e^{\text{log\_sd}}\, \varepsilon$, and undo level $\ell$ on both
#    halves, $a$ first: `h, _ = glow.levels[l].inverse(torch.cat([a, b], dim=1))`.
# 3. **Pixels.** `x, _ = glow.dequantize.inverse(h)` turns the flow's output back into
#    integer grey levels.
#
# The temperature scales only the noise. At $T = 0$ there is none: every latent is its
# prior's mean given the levels above it, and all $n$ samples are the same image.
#
# ### Exercise 6.3 (sample through the learned priors)
#
# Write `sample_glow(glow, n, temperature, generator)` by these three steps. Draw each
# $\varepsilon$ with `torch.randn(shape, generator=generator, dtype=glow.dtype)` in the order
# you need them (the top first, then the splits from the last to the first) and move it to
# `glow.device`. Write the walk yourself: `glow.sample`, `glow.decode` and `glow.flow_inverse`
# are what the checks compare with, so they refuse to run during the checks.

# %% [solution] nb06_sample
def sample_glow(glow, n, temperature=1.0, generator=None):
    """``n`` images, each latent drawn from its learned prior at ``temperature``, top first."""
    ### BEGIN SOLUTION
    def noise(shape):
        eps = torch.randn((n, *shape), generator=generator, dtype=glow.dtype)
        return temperature * eps.to(glow.device)

    h = noise(glow.latent_shapes[-1])
    if glow.top_prior is not None:
        mean, log_sd = glow.top_prior.mean_log_sd(n)
        h = mean + torch.exp(log_sd) * h
    h, _ = glow.levels[-1].inverse(h)
    for level in reversed(range(len(glow.splits))):
        mean, log_sd = glow.splits[level].mean_log_sd(h)
        b = mean + torch.exp(log_sd) * noise(glow.latent_shapes[level])
        h, _ = glow.levels[level].inverse(torch.cat([h, b], dim=1))
    x, _ = glow.dequantize.inverse(h)
    return x
    ### END SOLUTION

# %% [markdown]
# The check compares your samples with `glow.decode` of the same noise, on a small perturbed
# Glow in float64: first at $T = 0$, where no noise is involved, then at $T = 0.8$. When they
# differ, it looks at what your code passed to each level's `inverse` to say which step is off.

# %% [tests] nb06_sample_tests points=1
from contextlib import ExitStack
from flowlib.notebook_helpers import capturing, refusing

glow = perturb_(Glow((1, 8, 8), K=1, L=3, hidden=8).double(), seed=5)
NO_REFERENCE = ("Exercise 6.3 asks you to write the sampler from glow.top_prior, glow.splits and "
                "glow.levels: glow.sample, glow.decode and glow.flow_inverse are what the checks "
                "compare with, so they refuse to run here")
REFERENCES = [(Glow, name) for name in ("sample", "decode", "flow_inverse")]


def yours(glow, temperature, seed, n=3):
    """Your samples, and the input of each level's inverse (level 0 first)."""
    with refusing(*REFERENCES, why=NO_REFERENCE, namespace=globals()), ExitStack() as stack:
        seen = [stack.enter_context(capturing((level, "inverse"))) for level in glow.levels]
        x = sample_glow(glow, n, temperature, torch.Generator().manual_seed(seed))
    return x, [calls[0][0] if calls else None for calls in seen]


def drawn(glow, seed, n=3, top_first=True, dtype=None):
    """One eps per level (level 0 first), drawn top first (or finest first) from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    order = range(len(glow.latent_shapes))
    eps = {l: torch.randn((n, *glow.latent_shapes[l]), generator=g, dtype=dtype or glow.dtype)
           for l in (reversed(order) if top_first else order)}
    return [eps[l].to(glow.dtype) for l in order]


def told(glow, temperature, seed, n=3, top_first=True, dtype=None):
    """glow.decode of the standardised latents T * eps."""
    return glow.decode([temperature * e for e in drawn(glow, seed, n, top_first, dtype)])


def diagnose(glow, inputs, temperature, seed):
    """Which step made the levels' inputs differ from the told walk's: a hint, or None."""
    eps = [temperature * e for e in drawn(glow, seed)]
    top = glow.top_prior.inverse(eps[-1])[0]
    if inputs[-1] is None or inputs[-1].shape != top.shape:
        return f"glow.levels[-1].inverse must get the top latent, of shape {(3, *glow.latent_shapes[-1])}"
    if not torch.allclose(inputs[-1], top):
        return ("the top latent is wrong: it comes from the top prior, h = mean + T * exp(log_sd) * eps "
                "with mean, log_sd = glow.top_prior.mean_log_sd(n); at T = 0 it is the mean, not 0")
    for l in reversed(range(len(glow.splits))):
        a = glow.levels[l + 1].inverse(inputs[l + 1])[0]
        b = glow.splits[l].inverse(torch.cat([a, eps[l]], 1))[0][:, a.shape[1]:]
        got = inputs[l]
        if got is None or got.shape[1] != 2 * a.shape[1]:
            return f"glow.levels[{l}].inverse must get both halves, torch.cat([a, b], dim=1)"
        if torch.allclose(got[:, a.shape[1]:], a):
            return "the halves are swapped: a, the half that stayed, comes first: torch.cat([a, b], dim=1)"
        if not torch.allclose(got[:, :a.shape[1]], a):
            return f"the first half of glow.levels[{l}].inverse's input must be a, what the level above decoded"
        if not torch.allclose(got[:, a.shape[1]:], b):
            return (f"the half set aside at split {l} is wrong: it comes from the split's prior given a, "
                    f"b = mean + T * exp(log_sd) * eps with mean, log_sd = glow.splits[{l}].mean_log_sd(a); "
                    f"at T = 0 it is the mean, not 0")
    return None


def check_samples(temperature, seed):
    x, inputs = yours(glow, temperature, seed)
    expected = told(glow, temperature, seed)
    assert isinstance(x, torch.Tensor) and x.shape == expected.shape, (
        f"return the images, shape {tuple(expected.shape)}, got "
        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")
    assert torch.equal(x, x.round()), (
        "the samples are not whole grey levels: turn the flow's output into pixels with "
        "x, _ = glow.dequantize.inverse(h).")
    if torch.equal(x, expected):
        return
    hints = [("the noise was drawn finest level first, as glow.sample does: here draw the top "
              "level's first, then each split's from the last split to the first",
              told(glow, temperature, seed, top_first=False)),
             ("draw the noise in the latents' dtype, torch.randn(shape, generator=generator, "
              "dtype=glow.dtype)", told(glow, temperature, seed, dtype=torch.float32))]
    for hint, wrong in hints:
        assert not torch.equal(x, wrong), f"The samples at T = {temperature} are wrong. Likely cause: {hint}."
    hint = diagnose(glow, inputs, temperature, seed)
    assert hint is None, f"The samples at T = {temperature} are wrong. Likely cause: {hint}."
    raise AssertionError(
        f"The samples at T = {temperature} differ from glow.decode of the same noise in "
        f"{(x != expected).sum().item()} of {x.numel()} pixels, although every level got the "
        f"right input: undo each level with glow.levels[l].inverse and finish with "
        f"glow.dequantize.inverse.")


check_samples(0.0, 0)
again = [yours(glow, 0.8, 2)[0] for _ in range(2)]
assert torch.equal(again[0], again[1]), (
    "two calls with generators seeded alike gave different samples: draw every eps from the "
    "generator you are given, torch.randn(shape, generator=generator, ...) (torch.randn_like "
    "takes no generator)")
check_samples(0.8, 1)
no_top = perturb_(Glow((2, 4, 4), K=1, L=2, hidden=8, learn_top_prior=False).double(), seed=6)
NO_TOP = ("a Glow built with learn_top_prior=False has glow.top_prior None, and its top latent "
          "is T * eps itself")
try:
    x, _ = yours(no_top, 0.9, 3)
except AttributeError as err:
    raise AssertionError(f"{NO_TOP} ({err}).") from None
assert torch.equal(x, told(no_top, 0.9, 3)), f"{NO_TOP}."
one_level = perturb_(Glow((1, 4, 4), K=1, L=1, hidden=8), seed=7)     # float32, and no split at all
IN_DTYPE = "draw the noise in the model's dtype, torch.randn(..., dtype=glow.dtype)"
try:
    x, _ = yours(one_level, 0.7, 4)
except RuntimeError as err:
    raise AssertionError(f"a float32 Glow with one level failed: {IN_DTYPE} ({err}).") from None
assert x.dtype == torch.float32, f"a float32 Glow gave {x.dtype} samples: {IN_DTYPE}."
assert (x != told(one_level, 0.7, 4)).double().mean() <= 1e-2, (
    "the samples of a float32 Glow with one level (no split: only the top prior) differ from "
    "glow.decode of the same noise.")
passed("Exercise 6.3 (sample through the learned priors)")
### BEGIN HIDDEN TESTS
import importlib, flowlib.checks, flowlib.notebook_helpers
_checks = importlib.reload(flowlib.checks)
_helpers = importlib.reload(flowlib.notebook_helpers)
from flowlib.models import Glow as _Glow
for _seed, _shape, _K, _L, _top, _n, _T, _dtype in [
        (61, (3, 8, 8), 1, 2, True, 2, 0.6, torch.float64),
        (62, (1, 4, 4), 2, 1, True, 3, 1.0, torch.float64),
        (63, (2, 8, 4), 1, 2, False, 1, 0.0, torch.float64),
        (64, (1, 16, 16), 1, 3, True, 4, 0.7, torch.float32)]:
    _g = _checks.perturb_(_Glow(_shape, K=_K, L=_L, hidden=8, learn_top_prior=_top).to(_dtype), seed=_seed)
    with _helpers.refusing(*[(_Glow, _m) for _m in ("sample", "decode", "flow_inverse")],
                           why="hidden: the sampler of this exercise", namespace=globals()):
        _x = sample_glow(_g, _n, _T, torch.Generator().manual_seed(_seed))
    _gen = torch.Generator().manual_seed(_seed)
    _eps = {_l: torch.randn((_n, *_g.latent_shapes[_l]), generator=_gen, dtype=_dtype)
            for _l in reversed(range(_L))}
    _ref = _g.decode([_T * _eps[_l] for _l in range(_L)])
    assert isinstance(_x, torch.Tensor) and _x.shape == _ref.shape, "hidden: shape"
    _tol = 0 if _dtype == torch.float64 else 1e-2
    assert (_x != _ref).double().mean().item() <= _tol, "hidden: samples"
### END HIDDEN TESTS

# %% [markdown]
# Your sampler on the trained model: one row per temperature, every row from the same seed,
# so each column holds the same noise $\varepsilon$, only scaled by $T$.

# %%
with needs("Exercise 6.3 (sample through the learned priors)"), torch.no_grad():
    temperatures = (0.0, 0.4, 0.7, 1.0)
    rows = [sample_glow(model, 10, t, generator=torch.Generator().manual_seed(4)).cpu() for t in temperatures]
    show_grid(torch.cat(rows), n_bits=model.n_bits, nrow=10, zoom=1.5,
              title="your sampler, rows T = " + ", ".join(f"{t:g}" for t in temperatures))
    plt.show()

# %% [markdown]
# With the shipped `mnist_glow`, the $T = 0$ row is ten copies of a black square: every
# latent at its prior's mean decodes to an empty background. The single most likely latent
# is not a typical digit: most of an MNIST image is black, and the density is highest where
# no stroke has been decided yet. Along each column the same noise is scaled up: a digit
# has taken shape by $T = 0.4$, most columns keep theirs up to $T = 1$ while a few turn into
# another digit, and the strokes grow bolder and less tidy.

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
# replace *one* level's latent by fresh noise at $T = 0.7$, keep the others, and decode.

# %%
def resample_level(latents, level, temperature, generator):
    """A copy of the list ``latents`` with ``latents[level]`` replaced by N(0, temperature^2) noise."""
    new = list(latents)
    old = latents[level]
    new[level] = temperature * torch.randn(old.shape, generator=generator, dtype=old.dtype).to(old.device)
    return new


# %% [markdown]
# Each row below starts with a digit (its exact reconstruction), followed by four decodings
# in which one level's latent was resampled at $T = 0.7$ and every other level kept.

# %%
with torch.no_grad():
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
# * Sampling runs the encoder backwards: the top latent from the top prior, then at every
#   split the half set aside from its prior given the half that stayed. Temperature scales
#   only the noise: $T < 1$ trades variety for typical, clean samples, and $T = 0$ decodes
#   the prior means, which for MNIST is an empty black image, not a typical digit.
# * Reconstruction is exact when every level's latent is reused; interpolating in latent
#   space morphs one digit into another.
# * Coarse structure lives in the top latent, details in the latents factored out early.
#
# Next, in notebook 7: the same model on faces, and edits along directions in latent space.
