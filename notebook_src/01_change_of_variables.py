# %% [markdown]
# # 01 · Change of variables
#
# A normalizing flow builds a complicated probability density out of a simple one. Draw
# $z$ from a standard normal, push it through an invertible function, and you get a
# sample $x$ from a new distribution. The point of a flow is that you can also go
# back: for any data point $x$ you can compute its exact density, and so train the
# model by maximum likelihood. The rule that makes this possible is the
# **change-of-variables formula**, and this notebook is about that one formula.
#
# **What you will build**
#
# | Exercise | What | Points |
# |---|---|---|
# | 1.1 | `pushforward_log_prob`: the log-density of a transformed variable, in 1D | 2 |
# | 1.2 | `ElementwiseAffine`: a flow layer $z = x \cdot e^{s} + t$ with its log-determinant | 3 |
# | 1.3 | `Sigmoid`: a nonlinear flow layer whose log-determinant depends on $x$ | 3 |
#
# Each one is checked against automatic differentiation and by integrating the density
# numerically: a density has to integrate to 1, and the log-determinant is what makes
# that happen.
#
# **The convention of this course.** Every flow layer has two methods:
#
# * `forward(x) -> (z, logdet)` goes from **data to latent**; `logdet` is
#   $\log\left|\det \partial z / \partial x\right|$, one number per sample, shape `(batch,)`;
# * `inverse(z) -> (x, logdet)` goes from **latent to data**; its `logdet` is the negative
#   of the forward one at the same point.
#
# Training evaluates `forward` (the likelihood of data), sampling evaluates `inverse`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import FloatSlider, interact
from torch import nn

import flowlib
import flowlib.notebook_helpers
from flowlib import checks
from flowlib.checks import check_close
from flowlib.notebook_helpers import needs, passed

FAST = flowlib.notebook_helpers.fast_mode()
device = flowlib.notebook_helpers.device()  # everything in this notebook is tiny: the CPU is plenty
torch.manual_seed(0)
normal = torch.distributions.Normal(0.0, 1.0)  # the base distribution p_Z

# %% [markdown]
# ## 1. The formula in one dimension
#
# Let $Z$ have density $p_Z$ and let $x = g(z)$ with $g$ smooth and strictly monotone.
# Call its inverse $f = g^{-1}$, so $z = f(x)$: $f$ is the flow's `forward` direction
# (data to latent), $g$ its `inverse`.
#
# Probability is conserved: the mass that $Z$ puts on a small interval $[z, z + dz]$
# is the mass that $X$ puts on the image interval $[x, x + dx]$,
#
# $$p_X(x)\,|dx| = p_Z(z)\,|dz| \quad\Longrightarrow\quad
#   p_X(x) = p_Z\big(f(x)\big)\,\left|f'(x)\right| .$$
#
# Where $g$ stretches an interval ($|f'| < 1$) the same mass is spread over more room and
# the density drops; where $g$ compresses, the density rises. In logs, which is how every
# flow computes it,
#
# $$\log p_X(x) = \log p_Z\big(f(x)\big) + \log\left|f'(x)\right| .$$
#
# The absolute value matters: a decreasing map has $f' < 0$ but still a positive density.
#
# **Look at it.** Below, $Z \sim \mathcal N(0, 1)$ and $g(z) = z + a \tanh(2z)$, which
# is increasing for every $a \ge 0$ and stretches the region around $0$. The coloured
# bands each hold 10% of the probability. They hold 10% on both sides, so where a
# band gets wider it must get lower. Move the slider: as $a$ grows the stretching near
# $0$ splits one bump into two. The density on the right is computed with the formula
# (parametrically: the point $z$ goes to $\big(g(z),\; p_Z(z) / g'(z)\big)$); the grey
# histogram is made of samples $g(z)$, and the two agree.

# %%
def g_tanh(z, a, k=2.0):
    """A latent-to-data map: increasing for a >= 0, it stretches the region near 0."""
    return z + a * torch.tanh(k * z)


def dg_tanh(z, a, k=2.0):
    """Its derivative g'(z) = 1 + a k / cosh(k z)^2 (positive for a >= 0)."""
    return 1 + a * k / torch.cosh(k * z) ** 2


Z_SAMPLES = torch.randn(20_000)
BAND_EDGES = normal.icdf(torch.linspace(0.1, 0.9, 9))  # deciles: 10 bands of 10% each
BAND_COLOURS = plt.cm.viridis(np.linspace(0.1, 0.9, 10))


def show_pushforward_1d(a=2.0):
    z = torch.linspace(-4, 4, 1601)
    x, p_z = g_tanh(z, a), normal.log_prob(z).exp()
    p_x = p_z / dg_tanh(z, a)  # the change-of-variables formula, written in z
    edges = torch.cat([z[:1], BAND_EDGES, z[-1:]])

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), gridspec_kw={"width_ratios": [1, 0.8, 1.2]})
    for i in range(10):
        inside = (z >= edges[i]) & (z <= edges[i + 1])
        axes[0].fill_between(z[inside], p_z[inside], color=BAND_COLOURS[i])
        axes[2].fill_between(x[inside], p_x[inside], color=BAND_COLOURS[i], alpha=0.85)
        axes[1].plot(z[inside], x[inside], color=BAND_COLOURS[i], lw=3)
    axes[0].set(title="base $p_Z(z)$, standard normal", xlabel="z", ylim=(0, 0.75))
    axes[1].set(title=f"the map $x = g(z) = z + {a:.2f}\\,\\tanh(2z)$", xlabel="z", ylabel="x")
    axes[1].axhline(0, color="0.8", lw=0.8)
    axes[1].axvline(0, color="0.8", lw=0.8)
    axes[2].hist(g_tanh(Z_SAMPLES, a), bins=120, range=(-8, 8), density=True,
                 histtype="step", color="0.3", label="samples $g(z)$")
    integral = torch.trapezoid(p_x, x).item()
    axes[2].set(title=f"pushed forward $p_X(x)$; $\\int p_X\\,dx \\approx$ {integral:.4f}",
                xlabel="x", xlim=(-8, 8), ylim=(0, 0.75))
    axes[2].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    plt.show()


interact(show_pushforward_1d, a=FloatSlider(value=2.0, min=0.0, max=4.0, step=0.25,
                                            description="stretch a"));

# %% [markdown]
# The integral in the right-hand title stays at 1 for every $a$: the $|f'|$ factor
# (here $1/g'$) exactly pays for the stretching. Drop it and the "density" would
# integrate to something else.
#
# ### Exercise 1.1: the log-density of a transformed variable (2 points)
#
# Write `pushforward_log_prob(x, f, df_dx, base_log_prob)`: the log-density of $X$ at the
# points `x`, where $f$ maps data to latent ($z = f(x)$, elementwise), `df_dx` is its
# derivative and `base_log_prob` is $\log p_Z$. One line of the formula above; work in
# logs (use `torch.log`, `torch.abs`), and do not assume that $f$ is increasing.

# %% [readonly] nb01_check_helpers
def integrate_1d(log_density, lo, hi, n=200_001):
    """The trapezoid rule for the integral of exp(log_density) over [lo, hi], in float64."""
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    return torch.trapezoid(log_density(x).exp(), x).item()


# %% [solution] nb01_pushforward
def pushforward_log_prob(x, f, df_dx, base_log_prob):
    """log p_X(x) for z = f(x) with Z ~ p_Z, by the change-of-variables formula.

    x: tensor of points (any shape; everything is elementwise).
    f: data-to-latent map, elementwise and invertible; df_dx: its derivative.
    base_log_prob: log p_Z, elementwise.
    Returns a tensor of the same shape as x.
    """
    ### BEGIN SOLUTION
    return base_log_prob(f(x)) + torch.log(torch.abs(df_dx(x)))
    ### END SOLUTION


# %% [tests] nb01_pushforward_tests points=2
# Visible checks for Exercise 1.1
x = torch.linspace(-6, 6, 101, dtype=torch.float64)

# (a) An affine map: X = 1 + 2 Z is N(1, 2^2), so with f(x) = (x - 1) / 2 the result is known.
f, df = (lambda x: (x - 1) / 2), (lambda x: torch.full_like(x, 0.5))
with needs("Exercise 1.1 (pushforward_log_prob)"):
    ours = pushforward_log_prob(x, f, df, normal.log_prob)
check_close(ours, torch.distributions.Normal(1.0, 2.0).log_prob(x), "log p_X for X = 1 + 2Z", [
    ("the log|f'(x)| term is missing", normal.log_prob(f(x))),
    ("the log|f'(x)| term has the wrong sign: add it, do not subtract it", normal.log_prob(f(x)) + math.log(2)),
    ("log p_Z is evaluated at x instead of at z = f(x)", normal.log_prob(x) + math.log(0.5)),
    ("f'(x) is used without the log: add log|f'(x)|", normal.log_prob(f(x)) + 0.5),
    ("it is the density p_X(x), not its log: work in logs, log p_Z(f(x)) + log|f'(x)|",
     torch.distributions.Normal(1.0, 2.0).log_prob(x).exp()),
])

# (b) A decreasing, nonlinear map f(x) = -x^3 - x: the density must still integrate to 1.
f, df = (lambda x: -x ** 3 - x), (lambda x: -3 * x ** 2 - 1)
with needs("Exercise 1.1 (pushforward_log_prob)"):
    ours = pushforward_log_prob(x, f, df, normal.log_prob)
check_close(ours, normal.log_prob(f(x)) + torch.log(3 * x ** 2 + 1), "log p_X for f(x) = -x^3 - x",
            nan_hint="log of a negative number: this f is decreasing, so f'(x) < 0; "
                     "the formula uses |f'(x)|")
total = integrate_1d(lambda t: pushforward_log_prob(t, f, df, normal.log_prob), -4, 4)
assert abs(total - 1) < 1e-6, f"The density integrates to {total:.6f}, not 1."
passed("Exercise 1.1 (pushforward_log_prob)")

### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
_torch = torch
# log-normal: X = exp(Z), f = log on x > 0; closed form from torch.distributions, float32 and 2D input
_x = _torch.linspace(0.05, 8, 60).reshape(3, 20)
_ours = pushforward_log_prob(_x, _torch.log, lambda t: 1 / t, normal.log_prob)
assert _ours.shape == (3, 20), "shape must follow x"
assert _torch.allclose(_ours, _torch.distributions.LogNormal(0.0, 1.0).log_prob(_x), atol=1e-5), "log-normal case"
# decreasing affine map with another base: X = (2 - Z) / 3 with Z ~ Laplace(0, 1)
_x = _torch.linspace(-3, 3, 41, dtype=_torch.float64)
_lap = _torch.distributions.Laplace(_torch.tensor(0.0, dtype=_torch.float64), _torch.tensor(1.0, dtype=_torch.float64))
_ours = pushforward_log_prob(_x, lambda t: 2 - 3 * t, lambda t: _torch.full_like(t, -3.0), _lap.log_prob)
_true = _torch.distributions.Laplace(_torch.tensor(2 / 3, dtype=_torch.float64),
                                     _torch.tensor(1 / 3, dtype=_torch.float64)).log_prob(_x)
assert _torch.allclose(_ours, _true, atol=1e-10), "decreasing affine map"
# integrates to 1 for a decreasing nonlinear map, another base
_f, _df = (lambda t: -_torch.sinh(t)), (lambda t: -_torch.cosh(t))
_tot = integrate_1d(lambda t: pushforward_log_prob(t, _f, _df, _lap.log_prob), -12, 12)
assert abs(_tot - 1) < 1e-5, "density must integrate to 1"
### END HIDDEN TESTS

# %% [markdown]
# **Use it.** Two classic transformed variables. With $f = \log$ (so $X = e^Z$) you get
# the log-normal distribution; with $f = \sinh$ (so $X = \operatorname{asinh} Z$) the
# tails of the normal get pulled in. Your function draws the curves; the histograms are
# samples pushed through $g = f^{-1}$.

# %%
z = torch.randn(50_000)
# (title, f, f', g = f^-1, plotted range, integrated range)
cases = [("log-normal: $X = e^Z$, $f = \\log$", torch.log, lambda t: 1 / t, torch.exp, (1e-3, 8), (1e-6, 500)),
         ("$X = \\operatorname{asinh} Z$, $f = \\sinh$", torch.sinh, torch.cosh, torch.asinh, (-3, 3), (-4, 4))]
with needs("Exercise 1.1 (pushforward_log_prob)"):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, (title, f, df, g, (lo, hi), (ilo, ihi)) in zip(axes, cases):
        xs = torch.linspace(lo, hi, 600)
        ax.hist(g(z), bins=150, range=(lo, hi), density=True, color="0.85", label="samples $g(z)$")
        ax.plot(xs, pushforward_log_prob(xs, f, df, normal.log_prob).exp(), lw=2, label="your $p_X(x)$")
        total = integrate_1d(lambda t: pushforward_log_prob(t, f, df, normal.log_prob), ilo, ihi)
        ax.set(title=f"{title};  $\\int p_X \\approx$ {total:.4f}", xlabel="x")
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 2. The formula in several dimensions
#
# For $x \in \mathbb R^D$ and an invertible, differentiable $f:\mathbb R^D \to \mathbb R^D$,
# the derivative becomes the Jacobian matrix $J_f(x) = \partial f / \partial x$ and the
# stretch factor becomes its determinant:
#
# $$\log p_X(x) = \log p_Z\big(f(x)\big) + \log\left|\det J_f(x)\right| .$$
#
# $|\det J_f(x)|$ is the factor by which $f$ scales a tiny volume around $x$. A square of
# area $\epsilon^2$ near $x$ becomes (nearly) a parallelogram of area
# $|\det J_f(x)|\,\epsilon^2$, and it carries the same probability.
#
# For a general $D \times D$ matrix the determinant costs $O(D^3)$: $10^{11}$ operations for
# a $64\times 64\times 3$ image. Flows are designed so that it is cheap. The simplest
# trick is a **triangular** Jacobian, whose determinant is the product of its diagonal.
# Here is such a map in 2D. It is a toy version of the coupling layers you will build in
# notebook 03:
#
# $$x_1 = z_1, \qquad x_2 = z_2\, e^{a \tanh z_1} + b\, z_1^2 .$$
#
# The first coordinate passes unchanged. The second is scaled and shifted by amounts
# that depend only on the first. Inverting it is easy, $z_1 = x_1$ and
# $z_2 = (x_2 - b x_1^2)\, e^{-a \tanh x_1}$, and the Jacobian of this inverse $f$ is
# lower triangular with diagonal $(1, e^{-a\tanh x_1})$, so
# $\log|\det J_f(x)| = -a \tanh x_1$.
#
# **Look at it.** On the left, the standard normal in $z$ with a grid; on the right, the
# density of $x$ and the same grid lines carried over by the map. $a$ squeezes or
# stretches the $x_2$ direction differently on the left and right of the picture, which
# changes areas, so the density changes with it. $b$ bends the picture but keeps
# every area ($\det = 1$), so it moves the density without changing its height.

# %%
def g_2d(z, a, b):
    """Latent to data: x1 = z1, x2 = z2 exp(a tanh z1) + b z1^2."""
    z1, z2 = z[..., 0], z[..., 1]
    return torch.stack([z1, z2 * torch.exp(a * torch.tanh(z1)) + b * z1 ** 2], dim=-1)


def f_2d(x, a, b):
    """Data to latent, the inverse of g_2d; returns (z, log|det df/dx|)."""
    x1, x2 = x[..., 0], x[..., 1]
    s = a * torch.tanh(x1)
    return torch.stack([x1, (x2 - b * x1 ** 2) * torch.exp(-s)], dim=-1), -s


def log_prob_2d(x, a, b):
    z, logdet = f_2d(x, a, b)
    return normal.log_prob(z).sum(-1) + logdet


GRID = torch.stack(torch.meshgrid(torch.linspace(-4.5, 4.5, 181), torch.linspace(-5, 7, 241),
                                  indexing="ij"), dim=-1)                       # for the pictures
BIG_GRID = torch.stack(torch.meshgrid(torch.linspace(-6, 6, 481), torch.linspace(-25, 35, 2401),
                                      indexing="ij"), dim=-1)                   # for the integral
BIG_CELL_AREA = (12 / 480) * (60 / 2400)
Z2D = torch.randn(300, 2)


def show_pushforward_2d(a=1.0, b=0.5):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    p_z = normal.log_prob(GRID).sum(-1).exp()
    p_x = log_prob_2d(GRID, a, b).exp()
    vmax = max(p_z.max().item(), p_x.max().item())
    for ax, p in ((left, p_z), (right, p_x)):
        ax.pcolormesh(GRID[..., 0], GRID[..., 1], p, cmap="Blues", shading="auto", vmin=0, vmax=vmax)
    t = torch.linspace(-3, 3, 200)
    for i, c in enumerate(torch.linspace(-2, 2, 5)):
        colour = plt.cm.autumn(i / 4)
        for line in (torch.stack([torch.full_like(t, c), t], -1), torch.stack([t, torch.full_like(t, c)], -1)):
            left.plot(line[:, 0], line[:, 1], color=colour, lw=1)
            mapped = g_2d(line, a, b)
            right.plot(mapped[:, 0], mapped[:, 1], color=colour, lw=1)
    left.scatter(Z2D[:, 0], Z2D[:, 1], s=2, color="k")
    xs = g_2d(Z2D, a, b)
    right.scatter(xs[:, 0], xs[:, 1], s=2, color="k")
    total = log_prob_2d(BIG_GRID, a, b).exp().sum().item() * BIG_CELL_AREA
    left.set(title="$z \\sim \\mathcal{N}(0, I)$", xlabel="$z_1$", ylabel="$z_2$", xlim=(-4.5, 4.5), ylim=(-5, 7))
    right.set(title=f"$x = g(z)$, density $p_X$;  $\\iint p_X \\approx$ {total:.4f}",
              xlabel="$x_1$", ylabel="$x_2$", xlim=(-4.5, 4.5), ylim=(-5, 7))
    fig.tight_layout()
    plt.show()


interact(show_pushforward_2d,
         a=FloatSlider(value=1.0, min=-1.5, max=1.5, step=0.1, description="scale a"),
         b=FloatSlider(value=0.5, min=-1.0, max=1.0, step=0.1, description="bend b"));

# %% [markdown]
# ### Checking a log-determinant with autograd
#
# A hand-derived log-determinant is easy to get wrong, and a wrong one does not crash
# anything: the model trains happily on a "density" that does not integrate to 1. So in
# this course every layer is checked against brute force. `flowlib.checks` computes the
# full Jacobian with `torch.autograd.functional.jacobian`, takes `slogdet`, and compares.
# It also checks that `inverse(forward(x))` gives back `x` and that the two directions'
# log-dets cancel. Use float64 for these checks: the tolerances are then tight.
#
# A flow can be given to the checks as a layer or as a pair `(forward, inverse)` of
# functions. Here is our 2D map, and then the same map with a sign mistake in the
# log-det. Read the message: the checks try to say what went wrong.

# %%
a, b = 1.0, 0.5
forward_2d = lambda x: f_2d(x, a, b)                                     # noqa: E731
inverse_2d = lambda z: (g_2d(z, a, b), a * torch.tanh(z[..., 0]))       # noqa: E731
x_check = torch.randn(8, 2, dtype=torch.float64)
print("errors of the correct map:", checks.check_flow((forward_2d, inverse_2d), x_check))

buggy_forward = lambda x: (f_2d(x, a, b)[0], -f_2d(x, a, b)[1])        # noqa: E731
try:
    checks.check_logdet((buggy_forward, inverse_2d), x_check)
except checks.FlowCheckError as err:
    print("\nthe buggy map:", err)

# %% [markdown]
# ## 3. Flow layers
#
# In code, a flow layer is an `nn.Module` with `forward` and `inverse`, each returning the
# transformed tensor and the log-determinant of that direction, one value per sample.
# Everything after this notebook is built from such layers. They stack, and their
# log-dets add, because the determinant of a product of Jacobians is the product of
# the determinants:
#
# $$z = f_K \circ \dots \circ f_1(x) \quad\Rightarrow\quad
#   \log p_X(x) = \log p_Z(z) + \sum_{k=1}^{K} \log\left|\det J_{f_k}\right| .$$
#
# An **elementwise** layer transforms each entry on its own, $z_i = h(x_i)$. Its Jacobian
# is diagonal, so $\log|\det J| = \sum_i \log|h'(x_i)|$, a sum over every dimension of
# the sample (for images: channels, height and width). That is the shape `(batch,)`.
#
# ### Exercise 1.2: an elementwise affine layer (3 points)
#
# $$z = x \odot e^{s} + t, \qquad s, t \text{ learnable, of the shape of one sample.}$$
#
# Writing the scale as $e^{s}$ keeps it positive, so the layer is always invertible, and
# its log is simply $s$. Complete `forward` (data to latent) and `inverse` (latent to
# data). Both return `(output, logdet)` with `logdet` of shape `(batch,)`, and the two
# log-dets are negatives of each other. Keep `logdet` connected to `self.log_scale`
# (no `.item()`, no `torch.tensor(...)` around it) so that training can learn $s$.

# %% [solution] nb01_affine
class ElementwiseAffine(nn.Module):
    """z = x * exp(log_scale) + shift, entry by entry."""

    def __init__(self, shape):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.shift = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        """x: (batch, *shape) -> (z, logdet), logdet of shape (batch,)."""
        ### BEGIN SOLUTION
        z = x * torch.exp(self.log_scale) + self.shift
        logdet = self.log_scale.sum().expand(x.shape[0])
        return z, logdet
        ### END SOLUTION

    def inverse(self, z):
        """z: (batch, *shape) -> (x, logdet), logdet of shape (batch,)."""
        ### BEGIN SOLUTION
        x = (z - self.shift) * torch.exp(-self.log_scale)
        logdet = -self.log_scale.sum().expand(z.shape[0])
        return x, logdet
        ### END SOLUTION


# %% [tests] nb01_affine_tests points=3
# Visible checks for Exercise 1.2
torch.manual_seed(0)
layer = ElementwiseAffine((3,)).double()
with torch.no_grad():
    layer.log_scale.copy_(torch.tensor([0.5, -1.0, 0.2]))
    layer.shift.copy_(torch.tensor([1.0, 0.0, -2.0]))
x = torch.randn(5, 3, dtype=torch.float64)
with needs("Exercise 1.2 (ElementwiseAffine)"):
    z, logdet = layer(x)
    # invertibility, forward/inverse log-dets cancel, log-det equals autograd's
    checks.check_flow(layer, x, hint=(
        "inverse must undo z = x * exp(log_scale) + shift step by step, last step first: "
        "first subtract the shift, then divide by exp(log_scale), x = (z - shift) * exp(-log_scale)"))
check_close(z, x * torch.exp(layer.log_scale) + layer.shift, "forward's z", [
    ("forward computes the inverse map: forward is data -> latent, z = x * exp(log_scale) + shift",
     (x - layer.shift) * torch.exp(-layer.log_scale))])
no_grad_hint = ("logdet is not connected to log_scale for autograd: build it from self.log_scale with "
                "torch operations (no .item(), no torch.tensor(...), no .detach()) so that training can learn it.")
assert logdet.requires_grad, no_grad_hint
layer.zero_grad()
logdet.sum().backward()
assert layer.log_scale.grad is not None and layer.log_scale.grad.abs().sum() > 0, no_grad_hint

# The density of X, for a 2D layer and a standard normal base, integrates to 1.
layer2 = ElementwiseAffine((2,)).double()
with torch.no_grad():
    layer2.log_scale.copy_(torch.tensor([0.7, -0.4]))
    layer2.shift.copy_(torch.tensor([0.5, -1.0]))
u = torch.linspace(-12, 12, 801, dtype=torch.float64)
grid = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
with torch.no_grad():
    z_grid, ld_grid = layer2(grid)
    total = (normal.log_prob(z_grid).sum(-1) + ld_grid).exp().sum().item() * (u[1] - u[0]).item() ** 2
assert abs(total - 1) < 1e-4, f"p_X integrates to {total:.5f} on a grid instead of 1: check the log-det."
passed("Exercise 1.2 (ElementwiseAffine)")

### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
_torch = torch
for _shape, _dtype, _batch, _seed in [((1, 4, 4), _torch.float64, 3, 1), ((2, 3), _torch.float32, 7, 2),
                                      ((5,), _torch.float64, 1, 3)]:
    _g = _torch.Generator().manual_seed(_seed)
    _layer = ElementwiseAffine(_shape).to(_dtype)
    with _torch.no_grad():
        _layer.log_scale.copy_(_torch.randn(_shape, generator=_g))
        _layer.shift.copy_(_torch.randn(_shape, generator=_g))
    _x = _torch.randn((_batch, *_shape), generator=_g).to(_dtype)
    _checks.check_flow(_layer, _x)
    _z, _ld = _layer(_x)
    _want = (_x * _layer.log_scale.exp() + _layer.shift).double()
    assert _torch.allclose(_z.double(), _want, atol=1e-5), "forward value"
    assert _ld.shape == (_batch,), "logdet shape"
    _true_ld = _layer.log_scale.detach().double().sum().expand(_batch)
    assert _torch.allclose(_ld.double(), _true_ld, atol=1e-5), "forward logdet value"
    _xr, _ldi = _layer.inverse(_z)
    assert _torch.allclose(_ldi.double(), -_ld.double(), atol=1e-5), "inverse logdet value"
    _layer.zero_grad()
    assert _ld.requires_grad and _ldi.requires_grad, "gradient"
    (_ld.sum() + _ldi.pow(2).sum()).backward()
    assert _layer.log_scale.grad is not None and _layer.log_scale.grad.abs().sum() > 0, "gradient"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 1.3: a sigmoid layer (3 points)
#
# An affine map can only shift and rescale a density. Nonlinear layers are where
# shapes come from. The logistic sigmoid
#
# $$z = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \sigma'(x) = \sigma(x)\,\big(1 - \sigma(x)\big),$$
#
# maps $\mathbb R$ onto $(0, 1)$. Its inverse is the logit, $x = \log z - \log(1 - z)$.
# Unlike the affine layer, its log-det depends on $x$, so every sample gets its own
# value. Sum $\log \sigma'(x_i)$ over all dimensions of each sample.
#
# Tip for numerical stability: $\log \sigma(x)$ is `F.logsigmoid(x)` (or
# $-\operatorname{softplus}(-x)$), and $1 - \sigma(x) = \sigma(-x)$. For the inverse,
# `torch.log1p(-z)` is $\log(1 - z)$. You can sum over all but the batch dimension with
# `t.flatten(1).sum(1)`.

# %% [solution] nb01_sigmoid
from torch.nn import functional as F


class Sigmoid(nn.Module):
    """z = sigmoid(x) entry by entry; the inverse is the logit."""

    def forward(self, x):
        """x: (batch, ...) real -> (z in (0, 1), logdet of shape (batch,))."""
        ### BEGIN SOLUTION
        z = torch.sigmoid(x)
        logdet = (F.logsigmoid(x) + F.logsigmoid(-x)).flatten(1).sum(1)
        return z, logdet
        ### END SOLUTION

    def inverse(self, z):
        """z: (batch, ...) in (0, 1) -> (x, logdet of shape (batch,))."""
        ### BEGIN SOLUTION
        x = torch.log(z) - torch.log1p(-z)
        logdet = -(torch.log(z) + torch.log1p(-z)).flatten(1).sum(1)
        return x, logdet
        ### END SOLUTION


# %% [tests] nb01_sigmoid_tests points=3
# Visible checks for Exercise 1.3
torch.manual_seed(1)
x = 2 * torch.randn(6, 5, dtype=torch.float64)
s = torch.sigmoid(x)
with needs("Exercise 1.3 (Sigmoid)"):
    z, logdet = Sigmoid()(x)
check_close(z, s, "forward's z")
check_close(logdet, torch.log(s * (1 - s)).sum(1), "forward's logdet", [
    ("only log(sigmoid(x)) is summed: sigmoid'(x) = sigmoid(x) * (1 - sigmoid(x))", torch.log(s).sum(1)),
    ("sigmoid'(x) is summed without the log", (s * (1 - s)).sum(1)),
    ("the log-det has the wrong sign: forward returns +sum log sigmoid'(x)", -torch.log(s * (1 - s)).sum(1)),
])
# the shared checks: invertibility, cancelling log-dets, log-det equals autograd's
with needs("Exercise 1.3 (Sigmoid)"):
    checks.check_flow(Sigmoid(), x)
    checks.check_flow(Sigmoid(), torch.randn(3, 2, 2, 2, dtype=torch.float64))  # image-shaped input
passed("Exercise 1.3 (Sigmoid)")

### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
_torch = torch
for _shape, _dtype, _scale, _seed in [((4, 1, 3, 3), _torch.float32, 2.0, 5), ((1, 7), _torch.float64, 6.0, 6),
                                      ((2, 3, 2), _torch.float64, 1.0, 7)]:
    _g = _torch.Generator().manual_seed(_seed)
    _x = (_scale * _torch.randn(_shape, generator=_g)).to(_dtype)
    _checks.check_flow(Sigmoid(), _x)
    _z, _ld = Sigmoid()(_x)
    _s = _torch.sigmoid(_x.double())
    assert _torch.allclose(_ld.double(), _torch.log(_s * (1 - _s)).flatten(1).sum(1), atol=1e-4), "forward logdet"
# inverse near the edges of (0, 1), float64
_zz = _torch.tensor([[1e-6, 0.5, 1 - 1e-6], [0.25, 0.75, 0.01]], dtype=_torch.float64)
_xx, _ldi = Sigmoid().inverse(_zz)
assert _torch.allclose(_torch.sigmoid(_xx), _zz, atol=1e-12), "inverse value"
assert _torch.allclose(_ldi, -_torch.log(_zz * (1 - _zz)).sum(1), atol=1e-8), "inverse logdet"
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Stacking layers: a flow to a uniform base is a CDF
#
# Chain the two layers: $x \mapsto e^{s}x + t \mapsto \sigma(e^{s}x + t)$. The result
# lies in $(0, 1)$, so take the **uniform** distribution on $(0, 1)$ as the base. Its
# log-density is $0$, so the model's log-density is just the total log-det:
#
# $$\log p_X(x) = \underbrace{\log p_Z(z)}_{=\,0} + \log|\det J_{\text{affine}}|
#   + \log|\det J_{\sigma}| .$$
#
# That is the logistic distribution with location $-t/e^{s}$ and scale $e^{-s}$. A 1D
# flow onto a uniform base is a cumulative distribution function (CDF), and sampling
# by running it backwards on uniform noise is inverse-CDF sampling. Flow++ builds its
# layers from mixtures of exactly such logistic CDFs.
#
# `flowlib.layers.FlowSequential` chains layers: `forward` runs them first to last,
# `inverse` last to first, and it adds the log-dets. Move the sliders. The curve is
# your layers' density, the histogram is samples from your layers' `inverse`, and the
# integral stays at 1.

# %%
from flowlib.layers import FlowSequential


def show_logistic_flow(log_scale=0.0, shift=0.0):
    affine = ElementwiseAffine((1,))
    with torch.no_grad():
        affine.log_scale.fill_(log_scale)
        affine.shift.fill_(shift)
    flow = FlowSequential(affine, Sigmoid())
    xs = torch.linspace(-10, 10, 2001)[:, None]
    wide = torch.linspace(-300, 300, 600_001)[:, None]       # for the integral only
    with torch.no_grad():
        u, logdet = flow(xs)                                  # data -> latent (0, 1)
        samples, _ = flow.inverse(torch.rand(20_000, 1))      # latent -> data
        integral = torch.trapezoid(flow(wide)[1].exp(), wide[:, 0]).item()
    density = logdet.exp()                                    # log p_Z(u) = 0 for the uniform base
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.2))
    ax0.hist(samples[:, 0], bins=160, range=(-10, 10), density=True, color="0.85", label="samples from inverse")
    ax0.plot(xs[:, 0], density, lw=2, label="exp(logdet) from forward")
    ax0.set(title=f"$p_X(x)$;  $\\int p_X \\approx$ {integral:.4f}",
            xlabel="x", ylim=(0, max(0.3, 1.1 * density.max().item())))
    ax0.legend(fontsize=8)
    ax1.plot(xs[:, 0], u[:, 0], color="C1", lw=2)
    ax1.set(title="the forward map $z = \\sigma(e^s x + t)$ is the CDF of $X$", xlabel="x", ylabel="z")
    fig.tight_layout()
    plt.show()


with needs("Exercise 1.2 (ElementwiseAffine) and Exercise 1.3 (Sigmoid)"):
    FlowSequential(ElementwiseAffine((1,)), Sigmoid())(torch.zeros(1, 1))  # fails early if unfinished
interact(show_logistic_flow,
         log_scale=FloatSlider(value=0.0, min=-1.0, max=1.5, step=0.1, description="s"),
         shift=FloatSlider(value=0.0, min=-4.0, max=4.0, step=0.25, description="t"));

# %% [markdown]
# The chain is again a flow layer, so the same checks apply to it as a whole:

# %%
with needs("Exercise 1.2 (ElementwiseAffine) and Exercise 1.3 (Sigmoid)"):
    chain = FlowSequential(ElementwiseAffine((3,)), Sigmoid()).double()
    with torch.no_grad():
        chain[0].log_scale.copy_(torch.tensor([0.3, -0.5, 1.0]))
    print(checks.check_flow(chain, torch.randn(4, 3, dtype=torch.float64)))

# %% [markdown]
# ## What we saw
#
# * **Change of variables.** If $z = f(x)$ with $f$ invertible, then
#   $\log p_X(x) = \log p_Z(f(x)) + \log|\det J_f(x)|$. The log-det term accounts for
#   the stretching and squeezing of space. Without it the density does not integrate
#   to 1.
# * In 1D the stretch factor is $|f'(x)|$. The absolute value handles decreasing maps.
#   Pushing a normal through a nonlinear map can produce any shape, bimodal ones
#   included.
# * In $D$ dimensions the factor is a Jacobian determinant. It costs $O(D^3)$ in general,
#   so flows use layers whose Jacobian is diagonal (elementwise layers) or triangular
#   (coupling layers, notebook 03). For those the log-det is a sum.
# * A flow layer returns `(output, logdet)` in both directions, with log-dets of shape
#   `(batch,)` that cancel between `forward` and `inverse`. Stacked layers add their
#   log-dets.
# * `flowlib.checks` compares a log-det with the autograd Jacobian, and numerical
#   integration confirms that the result is a density. Check every new layer this way.
# * A 1D flow onto a uniform base is a CDF, so sampling through `inverse` is inverse-CDF
#   sampling.
#
# **Next (02):** images are made of integers, not real numbers. Before a continuous flow
# can model them, we have to dequantize them, and we need to measure the result in
# bits per dimension.
