# %% [markdown]
# # 7. Glow on CelebA: faces, temperature and latent arithmetic
#
# The model of notebook 6, unchanged, on colour photographs of faces (CelebA). Faces are
# where Glow made its name: sharp samples at a low temperature, smooth interpolations, and
# *semantic directions* in latent space. Move the latent of a face along the direction
# "smiling minus not smiling" and the decoded face starts to smile.
#
# **What you will build**
#
# 1. A Glow on 32x32 faces at 5 bits per channel: loaded when a pretrained checkpoint is
#    there, trained otherwise.
# 2. Samples by temperature (with a slider) and interpolations between faces.
# 3. **Exercise 7.1:** the direction of an attribute in latent space, from the 40 binary
#    attributes that come with CelebA.
# 4. **Exercise 7.2:** applying a direction: latent arithmetic, then decoding. A slider then
#    makes a face smile more, or less.
# 5. **Exercise 7.3:** the direction read as a classifier: score faces by where their latent
#    lies along it, and see how well the score tells on test faces who smiles.
#
# The settings below choose the image size (32, the CPU setting, or 64), the number of bits
# and the attribute. Change them and run the notebook again.

# %%
IMAGE_SIZE = 32          # 32x32 faces; 64 works too (four times the pixels: train on a GPU)
N_BITS = 5               # 32 levels per channel, as in the Glow paper's CelebA experiments
ATTRIBUTE = "Smiling"    # any of CelebA's 40 attributes, e.g. "Eyeglasses", "Blond_Hair", "Male"
TRAIN_MY_OWN = False     # True: train even when a pretrained checkpoint is there

# %%
import math
import shutil
import tempfile
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

import flowlib
from flowlib import checks
from flowlib.checks import perturb_
from flowlib.notebook_helpers import fast_mode, needs, passed
from flowlib.data import CelebA, default_cache_dir, repo_data_dir
from flowlib.metrics import evaluate_bpd
from flowlib.models import Glow
from flowlib.train import TrainConfig, load_checkpoint, train
from flowlib.viz import grid_png, show_grid, temperature_widget

FAST = fast_mode()
device = flowlib.notebook_helpers.device()
torch.manual_seed(0)

# %% [readonly] nb07_helpers
def flatten_latents(latents):
    """The list of per-level latents -> one (N, D) tensor, finest level first."""
    return torch.cat([z.flatten(1) for z in latents], dim=1)

# %% [markdown]
# ## The data
#
# `flowlib.data.CelebA` finds the aligned CelebA images through `FLOWLIB_DATA` (or the
# repository's `data/` folder), center-crops them to 148x148, resizes them to
# `IMAGE_SIZE`, and reduces them to `N_BITS` bits. The course machines hold a subset of a
# few thousand training images; with the full dataset (162,770 training images) the same
# code uses all of it, and the first decoding takes a few minutes (it is cached afterwards).
#
# Why 5 bits? Most of the 256 grey levels of a photograph are sensor noise that no model can
# predict; dropping the 3 lowest bits lets the model spend its capacity on the faces. Keep in
# mind that bits per dimension at 5 bits cannot be compared with figures at 8 bits: a model
# that knows nothing (uniform over 32 levels) scores exactly 5 bits per dimension here.

# %%
faces = CelebA(split="train", size=IMAGE_SIZE, n_bits=N_BITS)
faces_test = CelebA(split="test", size=IMAGE_SIZE, n_bits=N_BITS)
attr = faces.attr_names.index(ATTRIBUTE)
print(f"{len(faces):,} training and {len(faces_test):,} test faces of shape {tuple(faces.images.shape[1:])}, "
      f"values 0..{2 ** N_BITS - 1}")
print(f"{ATTRIBUTE}: {faces.attributes[:, attr].float().mean():.0%} of the training faces")
show_grid(faces.images[:32], n_bits=N_BITS, nrow=16, title=f"CelebA training faces ({IMAGE_SIZE}x{IMAGE_SIZE}, {N_BITS} bits)", zoom=1.2)
plt.show()

# %% [markdown]
# ## The model: load or train
#
# The same `flowlib.models.Glow` as in notebook 6, with three levels: at 32x32 the latents
# are $6 \times 16 \times 16$, $12 \times 8 \times 8$ and $48 \times 4 \times 4$ (finest first),
# $3072$ numbers in all, as many as the image has.
#
# * If the pretrained checkpoint `data/pretrained/celeba32_glow.pt` is in the repository
#   (and `IMAGE_SIZE = 32`, `N_BITS = 5`), the next cell loads it.
# * In fast mode (CI, autograding) it trains a small Glow for 20 steps: **its samples will
#   look like noise**, and the attribute edits below are crude.
# * Otherwise it trains: on a GPU a Glow with $K = 16$ steps per level and width 256 for
#   10,000 steps (our estimate: 20 to 40 minutes on one recent GPU, not timed on every
#   card); on a CPU the command line's CelebA setting ($K = 8$, width 128) for 2,000 steps,
#   blurry but face-like. The project's benchmark measured 69 training images per second for
#   this model on an AMD EPYC 2-core CPU (`benchmarks/README.md`), so 2,000 steps of 64 images
#   take about half an hour there; the progress bar shows the rate on yours.
#   The run is kept under `~/.cache/flowlib/runs/` (`$FLOWLIB_CACHE/runs/`): running the
#   cell again reloads it, and an interrupted run continues where it stopped.
#
# The same from a terminal (`flowlib train --help` lists every option; `torchrun` runs it on
# several GPUs):
#
# ```
# flowlib train --model glow --dataset celeba --size 32 --n-bits 5 --out runs/celeba-glow
# flowlib train --model glow --dataset celeba --K 16 --hidden 256 --max-steps 10000 --out runs/celeba-glow-big
# flowlib sample --checkpoint runs/celeba-glow-big --temperature 0.7 --out faces.png
# ```

# %%
PRETRAINED = repo_data_dir() / "pretrained" / "celeba32_glow.pt"

if PRETRAINED.is_file() and IMAGE_SIZE == 32 and N_BITS == 5 and not TRAIN_MY_OWN:
    model, checkpoint = load_checkpoint(PRETRAINED, map_location=device)
    print(f"Loaded the pretrained checkpoint {PRETRAINED.name} ({checkpoint.get('step')} training steps).")
else:
    data = dict(model="glow", dataset="celeba", size=IMAGE_SIZE, n_bits=N_BITS)
    if FAST:
        config = TrainConfig(**data, K=2, L=3, hidden=32, max_steps=20, batch_size=32, init_batch_size=64,
                             warmup_steps=10, eval_every=0, final_eval_images=0, sample_every=0,
                             checkpoint_every=0, out=tempfile.mkdtemp(prefix="nb07-"))
    elif device.type == "cuda":
        config = TrainConfig(**data, K=16, L=3 if IMAGE_SIZE <= 32 else 4, hidden=256, max_steps=10_000)
    else:
        config = TrainConfig(**data, K=8, L=3, hidden=128, max_steps=2_000)
    if not FAST:
        config.out = str(default_cache_dir() / "runs" /
                         f"nb07-celeba{IMAGE_SIZE}-{N_BITS}bit-glow-K{config.K}-L{config.L}-h{config.hidden}")
    last = Path(config.out) / "checkpoints" / "last.pt"
    print(("Continuing (or reloading) the run in " if last.is_file() else "Training; run folder: ") + config.out)
    result = train(config, resume=last.is_file())
    model, checkpoint = load_checkpoint(result.checkpoint, map_location=device)
    if FAST:
        shutil.rmtree(config.out, ignore_errors=True)
model.eval()
assert tuple(model.image_shape) == (3, IMAGE_SIZE, IMAGE_SIZE) and model.n_bits == N_BITS
steps = checkpoint.get("step") or 0
print(f"Glow with K={model.config['K']}, L={model.config['L']}, width {model.config['hidden']}: "
      f"{sum(p.numel() for p in model.parameters()):,} parameters, trained for {steps} steps, on {device.type}.")
print("latent shapes, finest first:", model.latent_shapes)
if steps < 1000:
    print(f"Only {steps} training steps: samples will look like noise and attribute directions mean "
          f"little. Train longer (FLOWLIB_FAST unset), or use a pretrained checkpoint.")
torch.manual_seed(0)
n_eval = 128 if FAST else len(faces_test)
print(f"test bpd on {n_eval} test faces: {evaluate_bpd(model, faces_test.images, batch_size=128, max_images=n_eval):.3f} "
      f"(uniform over {2 ** N_BITS} levels: {N_BITS}.000)")

# %% [markdown]
# ## Samples by temperature
#
# As in notebook 6, a sample decodes latents drawn from $\mathcal N(0, T^2 I)$. For faces the
# temperature matters even more: at $T = 1$ a Glow produces many implausible faces, at
# $T \approx 0.6$–$0.7$ clean ones with less variety, and at $T = 0$ the decoded prior mean, a
# smooth "average face".

# %% [readonly] nb07_samples
fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
for ax, temperature in zip(axes, (0.5, 0.7, 1.0)):
    samples = model.sample(25, temperature=temperature, generator=torch.Generator().manual_seed(1))
    show_grid(samples, n_bits=N_BITS, nrow=5, ax=ax, title=f"temperature {temperature}")
plt.show()

# %% [markdown]
# The slider decodes the same latents $\varepsilon$ at every temperature: $z = T\varepsilon$.

# %% [readonly] nb07_temperature
display(temperature_widget(model, n=16, nrow=8, seed=2, max_temperature=1.2))

# %% [markdown]
# ## Interpolations
#
# Between the latents of two test faces, $z(w) = (1 - w)\,z^{(0)} + w\,z^{(1)}$ at every
# level, decoded. With a trained model, pose, hair and background change gradually; the
# faces in between are faces, not superpositions of two photographs.

# %%
with torch.no_grad():
    rows = [model.interpolate(faces_test.images[i], faces_test.images[j], steps=9)
            for i, j in ((0, 1), (2, 3), (4, 5))]
show_grid(torch.cat(rows), n_bits=N_BITS, nrow=9, title="interpolations between test faces", zoom=2)
plt.show()

# %% [markdown]
# ## Attribute directions in latent space
#
# Every CelebA image comes with 40 binary attributes. Split the encoded training faces by
# one of them, say *Smiling*, into the set $S$ of faces with the attribute and the set
# $\bar S$ of faces without it. The difference of the two mean latents,
#
# $$\Delta = \frac{1}{|S|} \sum_{i \in S} z_i \;-\; \frac{1}{|\bar S|} \sum_{i \in \bar S} z_i,$$
#
# points from "not smiling" towards "smiling". Other attributes (who is photographed,
# lighting, pose) vary in both groups and mostly cancel in the difference. Here $z_i$ is the
# face's *whole* latent: all levels flattened and concatenated into one vector of
# $D = 3 \cdot 32 \cdot 32 = 3072$ numbers (finest level first), which is what
# `flatten_latents` does.
#
# First we encode some training faces. Encoding is one pass through the flow; in fast mode
# we take only a few hundred faces.

# %%
N_ENCODE = 256 if FAST else min(len(faces), 20_000)


@torch.no_grad()
def encode_flat(model, images, batch_size=128):
    """Integer images (N, C, H, W) -> their flattened latents (N, D), on the CPU."""
    out = []
    for start in range(0, len(images), batch_size):
        latents, _ = model.encode(images[start:start + batch_size].to(device))
        out.append(flatten_latents(latents).float().cpu())
    return torch.cat(out)


torch.manual_seed(0)
z_train = encode_flat(model, faces.images[:N_ENCODE])
has_attribute = faces.attributes[:N_ENCODE, attr]
print(f"encoded {len(z_train)} faces: z_train {tuple(z_train.shape)}; "
      f"{int(has_attribute.sum())} with {ATTRIBUTE}, {int((1 - has_attribute).sum())} without")

# %% [markdown]
# ### Exercise 7.1 (attribute direction)
#
# Write `attribute_direction(z, has_attribute)`: the mean of the rows of `z` whose label is 1
# (or `True`) minus the mean of the rows whose label is 0 (or `False`). `z` is an (N, D)
# tensor, `has_attribute` an (N,) tensor of 0/1 integers or booleans. Return a (D,) tensor
# of `z`'s dtype, and do not change the inputs.

# %% [solution] nb07_direction
def attribute_direction(z, has_attribute):
    """Mean latent of the rows with the attribute minus the mean latent of the rows without it."""
    ### BEGIN SOLUTION
    mask = has_attribute.bool()
    return z[mask].mean(dim=0) - z[~mask].mean(dim=0)
    ### END SOLUTION

# %% [tests] nb07_direction_tests points=1
z = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 1.0], [5.0, 8.0, 2.0], [7.0, 0.0, 5.0]])
labels = torch.tensor([1, 0, 1, 0])
d = attribute_direction(z, labels)
expected = torch.tensor([3.0 - 5.0, 5.0 - 2.0, 1.0 - 3.0])     # rows 0 and 2 have it, rows 1 and 3 do not
assert isinstance(d, torch.Tensor) and d.shape == (3,), (
    f"return one number per latent dimension, shape (3,), got "
    f"{tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__}: average over the rows (dim=0).")
assert not torch.allclose(d, -expected), "wrong sign: the mean WITH the attribute minus the mean WITHOUT it."
index_mistake = z[labels].mean(dim=0) - z[1 - labels].mean(dim=0)     # 0/1 labels used as row numbers
assert not torch.allclose(d, index_mistake), (
    "has_attribute holds 0/1 integers, and z[has_attribute] picks rows number 0 and 1, not the rows with the "
    "attribute: turn the labels into a mask first, mask = has_attribute.bool(), then z[mask] and z[~mask].")
assert torch.allclose(d, expected), f"expected {expected.tolist()}, got {d.tolist()}: average each group separately."
assert torch.allclose(attribute_direction(z, labels.bool()), expected), "boolean labels must work too."
d64 = attribute_direction(z.double(), labels)
assert d64.dtype == torch.float64, f"for float64 latents the direction is {d64.dtype}: return a tensor of z's dtype."
assert torch.equal(labels, torch.tensor([1, 0, 1, 0])) and z[0, 0] == 1.0, "do not change the inputs."
unbalanced = attribute_direction(torch.tensor([[0.0], [0.0], [0.0], [4.0]]), torch.tensor([0, 0, 0, 1]))
assert torch.allclose(unbalanced, torch.tensor([4.0])), (
    f"with 3 faces without and 1 with the attribute, expected [4.0], got {unbalanced.tolist()}: "
    f"divide each sum by the size of its own group.")
passed("Exercise 7.1 (attribute direction)")
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(31)
for _n, _dim, _dtype, _as_bool in [(50, 12, torch.float64, False), (7, 3072, torch.float32, True),
                                   (30, 5, torch.float64, True)]:
    _z = torch.randn(_n, _dim, generator=_g, dtype=torch.float64).to(_dtype)
    _lab = (torch.arange(_n) % 3 == 0).long()
    _lab = _lab.bool() if _as_bool else _lab
    _zc, _lc = _z.clone(), _lab.clone()
    _w = _lab.to(torch.float64)
    _exp = (_w @ _z.double()) / _w.sum() - ((1 - _w) @ _z.double()) / (1 - _w).sum()
    _d = attribute_direction(_z, _lab)
    assert _d.shape == (_dim,) and _d.dtype == _dtype, "hidden: shape and dtype"
    assert torch.allclose(_d.double(), _exp, atol=1e-5 if _dtype == torch.float32 else 1e-12), "hidden: values"
    assert torch.equal(_z, _zc) and torch.equal(_lab, _lc), "hidden: inputs unchanged"
### END HIDDEN TESTS

# %% [markdown]
# How is the direction spread over the levels? Each level's share of $\|\Delta\|^2$, next to
# its share of the dimensions: a level whose bar on the left is taller than on the right
# holds more of the attribute than its size alone would explain.

# %%
with needs("Exercise 7.1 (attribute direction)"):
    direction = attribute_direction(z_train, has_attribute)
    sizes = [math.prod(s) for s in model.latent_shapes]
    energy = [(part ** 2).sum().item() / (direction ** 2).sum().item() for part in direction.split(sizes)]
    names = [f"level {i}\n{tuple(s)}" for i, s in enumerate(model.latent_shapes[:-1])] + [f"top\n{tuple(model.latent_shapes[-1])}"]
    positions = torch.arange(len(sizes)).float()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(positions - 0.2, energy, width=0.4, label=f"share of |direction|^2 ({ATTRIBUTE})")
    ax.bar(positions + 0.2, [s / sum(sizes) for s in sizes], width=0.4, label="share of dimensions")
    ax.set_xticks(positions.tolist(), names)
    ax.legend()
    plt.show()
    print(f"|direction| = {direction.norm():.2f}; typical |z| = {z_train.norm(dim=1).mean():.2f} "
          f"(about sqrt(D) = {math.sqrt(z_train.shape[1]):.1f} for standard normal latents)")

# %% [markdown]
# ### Exercise 7.2 (apply a direction)
#
# Write `apply_direction(model, latents, direction, alpha)`: add $\alpha\,\Delta$ to every
# face's latent and decode,
#
# $$x' = \text{decode}(z + \alpha\,\Delta).$$
#
# `latents` is the list of per-level latents that `model.encode` returns, finest first, each
# of shape (N, C, H, W); `direction` is a flat (D,) vector in the order of `flatten_latents`.
# Cut it into one piece per level (their shapes are `model.latent_shapes`; `tensor.split`
# takes a list of sizes), add each piece, times `alpha`, to its level, and decode with
# `model.decode`. Do not change `latents` in place: the slider below reuses them.

# %% [solution] nb07_apply
def apply_direction(model, latents, direction, alpha):
    """decode(latents + alpha * direction): the edited images, (N, C, H, W)."""
    ### BEGIN SOLUTION
    sizes = [math.prod(shape) for shape in model.latent_shapes]
    pieces = direction.to(latents[0]).split(sizes)
    moved = [z + alpha * piece.view(1, *shape)
             for z, piece, shape in zip(latents, pieces, model.latent_shapes)]
    return model.decode(moved)
    ### END SOLUTION

# %% [tests] nb07_apply_tests points=2
tiny = perturb_(Glow((3, 8, 8), K=1, L=2, hidden=8, n_bits=5).double(), seed=4)
g = torch.Generator().manual_seed(0)
x = torch.randint(0, 32, (3, 3, 8, 8), generator=g)
with torch.no_grad():
    latents, _ = tiny.encode(x)
    kept = [z.clone() for z in latents]
    delta = 0.5 * torch.randn(3 * 8 * 8, generator=g, dtype=torch.float64)
    same = apply_direction(tiny, latents, delta, 0.0)
    assert isinstance(same, torch.Tensor) and same.shape == x.shape, (
        f"return the decoded images, shape {tuple(x.shape)}, got "
        f"{tuple(same.shape) if isinstance(same, torch.Tensor) else type(same).__name__}.")
    assert torch.equal(same, x.double()), "with alpha = 0 the images must come back exactly: decode(encode(x)) = x."
    edited = apply_direction(tiny, latents, delta, 0.7)
    assert all(torch.equal(a, b) for a, b in zip(latents, kept)), "do not change `latents` in place."
    flat_inverse = checks.flat_model_flow(tiny)[1]
    v, _ = flat_inverse(flatten_latents(latents) + 0.7 * delta)
    reference, _ = tiny.dequantize.inverse(v)
    assert not torch.equal(edited, same), "alpha = 0.7 should change the images: add alpha * direction to the latents."
    mismatch = (edited != reference).double().mean().item()
    assert mismatch < 1e-3, (
        f"{mismatch:.1%} of the pixels differ from decode(z + alpha * direction). The first "
        f"{math.prod(tiny.latent_shapes[0])} entries of the direction belong to level 0 "
        f"{tiny.latent_shapes[0]}, the last {math.prod(tiny.latent_shapes[-1])} to the top "
        f"latent {tiny.latent_shapes[-1]}; reshape each piece to its level's shape.")
passed("Exercise 7.2 (apply a direction)")
### BEGIN HIDDEN TESTS
import importlib, flowlib.checks; _checks = importlib.reload(flowlib.checks)
from flowlib.models import Glow as _Glow
for _seed, _shape, _L, _n, _alpha in [(41, (3, 16, 16), 3, 2, -1.3), (42, (3, 8, 8), 1, 1, 2.0),
                                      (43, (1, 8, 8), 2, 4, 0.4)]:
    _m = _checks.perturb_(_Glow(_shape, K=1, L=_L, hidden=8, n_bits=5).double(), seed=_seed)
    _gen = torch.Generator().manual_seed(_seed)
    _x = torch.randint(0, 32, (_n, *_shape), generator=_gen)
    with torch.no_grad():
        _lat, _ = _m.encode(_x)
        _keep = [t.clone() for t in _lat]
        _dir = 0.3 * torch.randn(math.prod(_shape), generator=_gen, dtype=torch.float64)
        _out = apply_direction(_m, _lat, _dir, _alpha)
        _flat = torch.cat([t.flatten(1) for t in _keep], 1) + _alpha * _dir
        _ref = _m.dequantize.inverse(_checks.flat_model_flow(_m)[1](_flat)[0])[0]
        assert _out.shape == _x.shape, "hidden: shape"
        assert (_out != _ref).double().mean().item() < 1e-3, "hidden: edited images"
        assert all(torch.equal(a, b) for a, b in zip(_lat, _keep)), "hidden: latents unchanged"
        assert torch.equal(apply_direction(_m, _lat, _dir, 0.0), _x.double()), "hidden: alpha = 0"
### END HIDDEN TESTS

# %% [markdown]
# ## Making faces smile
#
# Test faces without the attribute, moved along its direction by $\alpha \in [-1, 2]$; the
# middle column ($\alpha = 0$) is the unchanged reconstruction. With a well-trained model the
# mouth opens into a smile as $\alpha$ grows, and other features (the cheeks, the eyes) follow
# along, because smiling changes them too in the training photographs. A negative $\alpha$
# removes what little smile there was.

# %%
chosen = (faces_test.attributes[:, attr] == 0).nonzero().flatten()[:6]
alphas = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
with needs("Exercise 7.1 (attribute direction)"):
    direction = attribute_direction(z_train, has_attribute)
with needs("Exercise 7.2 (apply a direction)"), torch.no_grad():
    torch.manual_seed(0)
    face_latents, _ = model.encode(faces_test.images[chosen].to(device))
    columns = [apply_direction(model, face_latents, direction.to(device), a).cpu() for a in alphas]
    grid = torch.stack(columns, dim=1).flatten(0, 1)         # one row per face
    show_grid(grid, n_bits=N_BITS, nrow=len(alphas), zoom=2.2,
         title=f"{ATTRIBUTE}: alpha = " + ", ".join(f"{a:g}" for a in alphas))
    plt.show()

# %% [markdown]
# The slider applies the direction to the same faces; the images are decoded again each
# time you let go of it.

# %% [readonly] nb07_attribute_slider
with needs("Exercise 7.1 (attribute direction)"):
    direction = attribute_direction(z_train, has_attribute).to(device)
with needs("Exercise 7.2 (apply a direction)"):
    def render_edit(alpha):
        with torch.no_grad():
            return grid_png(apply_direction(model, face_latents, direction, alpha), n_bits=N_BITS, nrow=6, zoom=3)

    attribute_slider = widgets.FloatSlider(value=0.0, min=-2.0, max=2.0, step=0.1, description=ATTRIBUTE,
                                           continuous_update=False, readout_format=".1f")
    edit_image = widgets.Image(value=render_edit(0.0), format="png")
    attribute_slider.observe(lambda change: setattr(edit_image, "value", render_edit(change["new"])),
                             names="value")
    display(widgets.VBox([attribute_slider, edit_image]))

# %% [markdown]
# ## The direction as a detector
#
# The direction can also be read the other way round: as a classifier. Take the two group
# means $\mu_S$ and $\bar\mu$ and the point $m = \tfrac12(\mu_S + \bar\mu)$ halfway between
# them. Score a face by how far its latent lies along the direction, measured from $m$:
#
# $$s(z) = \frac{(z - m)\cdot\Delta}{\|\Delta\|}, \qquad \Delta = \mu_S - \bar\mu .$$
#
# A face scores above 0 exactly when its latent is closer to $\mu_S$ than to $\bar\mu$, so
# "$s(z) > 0$" is the nearest-mean classifier. How well it predicts the attribute on faces it
# has never seen tells how much of the attribute lies along one straight line in the latent
# space, which is what the edits above rely on.
#
# ### Exercise 7.3 (attribute score)
#
# Write `attribute_score(z, mean_with, mean_without)`: the score $s$ of every row of `z`, an
# (N, D) tensor, for the two (D,) means. Return an (N,) tensor of `z`'s dtype, and do not
# change the inputs.

# %% [solution] nb07_score
def attribute_score(z, mean_with, mean_without):
    """Signed distance of each row of ``z`` from the midpoint of the two means, along their difference."""
    ### BEGIN SOLUTION
    direction = mean_with - mean_without
    midpoint = (mean_with + mean_without) / 2
    return (z - midpoint) @ (direction / direction.norm())
    ### END SOLUTION

# %% [tests] nb07_score_tests points=1
z = torch.tensor([[4.0, 6.0], [2.0, -1.0], [0.0, 1.0]])
with_it, without = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])     # direction (2, 0), midpoint (2, 1)
s = attribute_score(z, with_it, without)
assert isinstance(s, torch.Tensor) and s.shape == (3,), (
    f"return one score per face, shape (3,), got "
    f"{tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}: the dot product sums over "
    f"the latent dimensions, (z - m) @ u for a (D,) vector u.")
expected = torch.tensor([2.0, 0.0, -2.0])
checks.check_close(s, expected, "the scores", [
    ("wrong sign: the direction is mean_with - mean_without, so faces with the attribute score above 0",
     -expected),
    ("measure from the midpoint m = (mean_with + mean_without) / 2, not from the origin: a latent as far "
     "from both means must score 0", torch.tensor([4.0, 2.0, 0.0])),
    ("measure from the midpoint m = (mean_with + mean_without) / 2, not from one of the means",
     torch.tensor([3.0, 1.0, -1.0])),
    ("measure from the midpoint m = (mean_with + mean_without) / 2, not from one of the means",
     torch.tensor([1.0, -1.0, -3.0])),
    ("divide by the length of the direction, ||mean_with - mean_without||, so that the score is a "
     "distance in latent units", torch.tensor([4.0, 0.0, -4.0])),
    ("divide by the length of the direction, not by its square", torch.tensor([1.0, 0.0, -1.0])),
    ("that is a cosine: divide by the length of the direction only, not by the length of z - m too",
     torch.tensor([2.0 / 29 ** 0.5, 0.0, -1.0])),
])
s64 = attribute_score(z.double(), with_it.double(), without.double())
assert s64.dtype == torch.float64, f"for float64 latents the scores are {s64.dtype}: keep z's dtype."
assert torch.equal(z[1], torch.tensor([2.0, -1.0])) and torch.equal(with_it, torch.tensor([3.0, 1.0])), (
    "do not change the inputs.")
far = attribute_score(torch.tensor([[0.0, 0.0, 30.0]]), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([-1.0, 0.0, 0.0]))
assert torch.allclose(far, torch.tensor([0.0])), (
    f"a latent that moves only across the direction keeps its score, expected [0.0], got {far.tolist()}: "
    f"only the part of z - m along the direction counts.")
passed("Exercise 7.3 (attribute score)")
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(71)
for _n, _dim, _dtype in [(9, 7, torch.float64), (4, 3072, torch.float32), (1, 2, torch.float64)]:
    _z = torch.randn(_n, _dim, generator=_g, dtype=torch.float64)
    _a, _b = torch.randn(_dim, generator=_g, dtype=torch.float64), torch.randn(_dim, generator=_g, dtype=torch.float64)
    _d = _a - _b
    _exp = ((_z - (_a + _b) / 2) * _d).sum(1) / _d.pow(2).sum().sqrt()
    _zi, _ai, _bi = _z.to(_dtype), _a.to(_dtype), _b.to(_dtype)
    _keep = (_zi.clone(), _ai.clone(), _bi.clone())
    _s = attribute_score(_zi, _ai, _bi)
    assert isinstance(_s, torch.Tensor) and _s.shape == (_n,) and _s.dtype == _dtype, "hidden: shape and dtype"
    assert torch.allclose(_s.double(), _exp, atol=1e-4 if _dtype == torch.float32 else 1e-10), "hidden: scores"
    assert all(torch.equal(a, b) for a, b in zip((_zi, _ai, _bi), _keep)), "hidden: inputs unchanged"
### END HIDDEN TESTS

# %% [markdown]
# The test faces, scored with the two means of the encoded training faces: one histogram per
# group, and how often "score above 0" agrees with the label, next to always guessing the
# larger group.

# %%
with needs("Exercise 7.3 (attribute score)"), torch.no_grad():
    torch.manual_seed(0)
    z_test = encode_flat(model, faces_test.images)
    truth = faces_test.attributes[:, attr].bool()
    mask = has_attribute.bool()
    scores = attribute_score(z_test, z_train[mask].mean(0), z_train[~mask].mean(0))
    accuracy = ((scores > 0) == truth).float().mean().item()
    majority = max(truth.float().mean().item(), 1 - truth.float().mean().item())
    fig, ax = plt.subplots(figsize=(6, 3))
    bins = torch.linspace(scores.min().item(), scores.max().item(), 30).tolist()
    ax.hist(scores[truth].tolist(), bins=bins, alpha=0.6, label=f"{ATTRIBUTE}")
    ax.hist(scores[~truth].tolist(), bins=bins, alpha=0.6, label=f"not {ATTRIBUTE}")
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlabel("score s(z)")
    ax.legend()
    plt.show()
    print(f"{len(truth)} test faces: score > 0 agrees with the label for {accuracy:.1%} of them; "
          f"always guessing the larger group: {majority:.1%}")

# %% [markdown]
# With the shipped `celeba32_glow` the two histograms overlap, but their bulks lie on either
# side of 0, and the score beats guessing the larger group by a clear margin without coming
# close to perfect: much of *Smiling*, not all of it, lies along this one line. The
# nearest-mean rule ignores how the latents spread within each group; a classifier that
# weighs the dimensions by that spread (logistic regression, or Glow's own `class_logits`
# when the model is trained with labels) may separate the groups better, but its direction
# would no longer be the one the edits above move along.

# %% [markdown]
# Try another attribute: set `ATTRIBUTE` at the top to `"Eyeglasses"`, `"Blond_Hair"` or
# `"Young"`, and run the notebook again. Two things to keep in mind. The direction is only as
# good as the data: attributes that come together in the photographs (blond hair and
# women, say) come together in the direction. And a mean difference over a few hundred
# faces is noisy; the more faces you encode, the cleaner the edit.
#
# ## What we saw
#
# * The Glow of notebook 6 works on colour faces as it is; at 5 bits per channel a model
#   that knows nothing scores 5 bits per dimension, and bits per dimension are only
#   comparable at the same bit depth and resolution.
# * The temperature trades variety for quality: faces look best around $T = 0.6$–$0.7$.
# * Interpolations between the latents of two faces pass through plausible faces.
# * Because a flow's encoder is exact, averages of latents mean something: the difference of
#   the mean latents of two groups of faces is a direction that changes one attribute, and
#   latent arithmetic followed by decoding applies it to any face.
# * Read the other way, the same direction is a nearest-mean classifier: the score along it
#   tells test faces with the attribute from those without better than guessing the larger
#   group, though far from perfectly.
#
# That is the end of the course: from the change-of-variables formula in notebook 1 to a
# model that makes faces smile.
