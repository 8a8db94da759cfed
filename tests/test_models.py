"""Models: parameter counts, whole-model checks, encode/decode, sampling, bpd."""

import math

import pytest
import torch

from flowlib import Glow, MultiscaleFlow, SimpleFlow, checks
from flowlib.checks import perturb_
from flowlib.layers import UniformDequantization
from flowlib.models import COUPLINGS, PERMUTATIONS, ImageFlow


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_uva_parameter_counts():
    assert n_params(SimpleFlow()) == 556_312
    assert n_params(SimpleFlow(vardeq=True)) == 628_388
    assert n_params(MultiscaleFlow()) == 1_711_818


SHAPE = (1, 8, 8)
CONFIGS = {
    "simple": lambda: SimpleFlow(SHAPE, n_couplings=4, hidden=8),
    "simple-vardeq": lambda: SimpleFlow(SHAPE, n_couplings=2, hidden=8, vardeq=True),
    "multiscale": lambda: MultiscaleFlow(SHAPE, hidden=(8, 8, 8)),
    **{
        f"glow-{p}-{c}": (
            lambda p=p, c=c: Glow(SHAPE, K=2, L=2, hidden=8, permutation=p, coupling=c)
        )
        for p in PERMUTATIONS
        for c in COUPLINGS
    },
    "glow-logit": lambda: Glow(SHAPE, K=2, L=2, hidden=8, logit_alpha=1e-5),
    "glow-fixed-top": lambda: Glow(SHAPE, K=1, L=3, hidden=8, learn_top_prior=False),
    "glow-classes": lambda: Glow((3, 4, 4), K=1, L=2, hidden=8, n_classes=3),
}


def build(name, dtype=torch.float64):
    torch.manual_seed(0)
    model = CONFIGS[name]()
    x = images(model, 16)
    model.encode(x, y=labels(model, 16))  # data-dependent ActNorm init
    return perturb_(model, scale=0.05).to(dtype)


def images(model, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**model.n_bits, (n, *model.image_shape), generator=g)


def labels(model, n):
    return torch.arange(n) % model.n_classes if getattr(model, "n_classes", None) else None


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_flow_passes_all_checks_in_float64(name):
    model = build(name)
    y = labels(model, 2)
    flow = checks.flat_model_flow(model)
    v, _ = model.dequantize(images(model, 2).double())
    errors = checks.check_flow(flow, v, y=y)
    assert errors["invertibility"] < 1e-10
    assert errors["logdet"] < 1e-8
    assert errors["consistency"] < 1e-8


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_flow_round_trip_float32(name):
    model = build(name, torch.float32).eval()
    v, _ = model.dequantize(images(model, 4).float())
    assert checks.check_invertibility(checks.flat_model_flow(model), v, y=labels(model, 4)) < 1e-5


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_encode_reconstructs_exactly(name):
    model = build(name)
    x = images(model, 8, seed=3)
    y = labels(model, 8)
    latents, _ = model.encode(x, y=y)
    assert [tuple(z.shape[1:]) for z in latents] == [tuple(s) for s in model.latent_shapes]
    assert sum(math.prod(s) for s in model.latent_shapes) == math.prod(model.image_shape)
    assert torch.equal(model.decode(latents, y=y).long(), x)


@pytest.mark.parametrize("top_mean, class_shift", [(0.0, 0.0), (0.3, 0.0), (0.1, 0.2)])
def test_temperature_zero_decodes_the_prior_means_in_closed_form(top_mean, class_shift):
    """A fresh Glow with additive couplings, reverse permutations and uninitialised ActNorm
    is a rearrangement of the pixels, and its split priors have mean 0. At T = 0 the sample
    is therefore the centred decoding of the prior means: the D/2 pixels that leave at the
    split are (0 + 0.5) * 256 = 128, the D/2 that reach the top are (m + 0.5) * 256 with m
    the top prior's mean (plus the label's shift for a class-conditional prior)."""
    model = Glow(
        (1, 8, 8),
        K=1,
        L=2,
        hidden=4,
        permutation="reverse",
        coupling="additive",
        n_classes=3 if class_shift else None,
    ).double()
    prior = model.top_prior
    with torch.no_grad():
        prior.params[:, : prior.channels] = top_mean
        if class_shift:
            prior.class_params.weight[: prior.channels, 2] = class_shift
    y = torch.tensor([2, 2]) if class_shift else None
    images = model.sample(2, temperature=0.0, y=y)
    top = math.floor((top_mean + class_shift + 0.5) * 256)
    for image in images:
        values, counts = image.unique(return_counts=True)
        expected = {128: 64} if top == 128 else {128: 32, top: 32}
        assert dict(zip(values.long().tolist(), counts.tolist())) == expected
    assert not torch.equal(model.sample(2, temperature=1.0, y=y), images)


def test_sample_is_reproducible_with_a_generator():
    model = build("glow-reverse-additive")
    a = model.sample(4, 0.7, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, 0.7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, *SHAPE)
    assert a.min() >= 0 and a.max() <= 255 and torch.equal(a, a.floor())


def test_interpolation_ends_reconstruct_the_two_images():
    model = build("glow-conv1x1-affine")
    x = images(model, 2, seed=7)
    path = model.interpolate(x[0], x[1], steps=5)
    assert path.shape == (5, *SHAPE)
    assert torch.equal(path[0].long(), x[0]) and torch.equal(path[-1].long(), x[1])


def test_loading_a_model_state_dict_keeps_actnorm_statistics():
    trained = build("glow-conv1x1_lu-affine", torch.float32)
    fresh = Glow(SHAPE, K=2, L=2, hidden=8)
    fresh.load_state_dict(trained.state_dict())
    x = images(fresh, 4, seed=11)
    torch.manual_seed(0)
    a = trained.log_prob(x)
    torch.manual_seed(0)
    b = fresh.log_prob(x)
    assert torch.equal(a, b)


class IdentityFlow(ImageFlow):
    """Uniform dequantization and a standard normal prior, nothing else."""

    def __init__(self, shape, n_bits):
        super().__init__()
        self.image_shape, self.latent_shapes, self.n_bits = shape, [shape], n_bits
        self.config = dict(shape=shape, n_bits=n_bits)
        self.dequantize = UniformDequantization(n_bits)
        self.dummy = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def flow_forward(self, v, y=None):
        return [v], torch.zeros(len(v), dtype=v.dtype)

    def flow_inverse(self, latents, y=None):
        return latents[0], torch.zeros(len(latents[0]), dtype=latents[0].dtype)


def test_bpd_of_a_known_case_equals_its_closed_form():
    shape, n_bits = (1, 2, 3), 5
    model = IdentityFlow(shape, n_bits)
    x = torch.tensor([[[[0, 31, 7], [12, 3, 30]]]])
    torch.manual_seed(0)
    bpd = model.bpd(x).item()
    torch.manual_seed(0)
    v = (x.double() + torch.rand(x.shape, dtype=torch.float64)) / 32
    d = 6
    log_p = sum(
        -0.5 * vi**2 - 0.5 * math.log(2 * math.pi) for vi in v.flatten().tolist()
    ) - d * math.log(32)
    assert bpd == pytest.approx(-log_p / (d * math.log(2)), abs=1e-12)


def test_class_conditional_glow():
    model = build("glow-classes", torch.float32)
    x = images(model, 4)
    with pytest.raises(ValueError, match="class-conditional"):
        model.log_prob(x)
    assert model.log_prob(x, y=torch.tensor([0, 1, 2, 0])).shape == (4,)
    assert model.class_logits(x).shape == (4, 3)
    with pytest.raises(ValueError, match="no classifier"):
        Glow(SHAPE, K=1, L=1, hidden=4).class_logits(x)


def test_glow_rejects_sizes_the_levels_cannot_squeeze():
    with pytest.raises(ValueError, match=r"28x28 cannot be squeezed L=3 times.*L <= 2.*pad_to_32"):
        Glow((1, 28, 28), L=3)
    with pytest.raises(ValueError, match="multiples of 4"):
        MultiscaleFlow((1, 6, 6))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(permutation="random"), "permutation must be one of"),
        (dict(coupling="spline"), "coupling must be one of"),
        (dict(K=0), "K and L must be at least 1"),
        (dict(n_bits=9), "n_bits must be an integer from 1 to 8"),
        (dict(logit_alpha=1.0), r"alpha must be in \[0, 1\)"),
    ],
)
def test_glow_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Glow(SHAPE, **{"L": 1, "hidden": 4, **kwargs})


def test_models_reject_wrong_image_shapes_and_scaled_pixels():
    model = Glow(SHAPE, K=1, L=1, hidden=4)
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 8, 8\)"):
        model.log_prob(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="integer pixel values"):
        model.log_prob(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="decode expects 1 latents"):
        model.decode([torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, 4)])


def test_fresh_glow_bpd_is_near_eight_and_training_lowers_it():
    """A few optimiser steps on one batch must lower its bpd: gradients flow everywhere."""
    torch.manual_seed(0)
    model = Glow(SHAPE, K=2, L=2, hidden=16)
    x = torch.randint(0, 256, (32, *SHAPE))
    x[:, :, 2:6, 2:6] = 255  # structure that can be learned
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = model.bpd(x).mean().item()
    for _ in range(30):
        loss = model.bpd(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert 6 < start < 12
    assert model.bpd(x).mean().item() < start - 0.5
    assert all(p.grad is not None for p in model.parameters())
