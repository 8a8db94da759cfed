"""Every flow layer, checked with the shared checks: round trip, Jacobian log-det, consistency."""

import math

import pytest
import torch
from helpers import randn

from flowlib import checks
from flowlib.checks import perturb_
from flowlib.layers import (
    ActNorm,
    ChannelAffineCoupling,
    FlowSequential,
    GatedConvNet,
    GlowCouplingNet,
    InvConv1x1,
    InvConv1x1LU,
    LayerNormChannels,
    LearnedPrior,
    LogitTransform,
    MaskedAffineCoupling,
    ReversePermutation,
    ShufflePermutation,
    Split,
    Squeeze,
    UniformDequantization,
    VariationalDequantization,
    channel_mask,
    checkerboard_mask,
    net_out_channels,
    squeeze,
    unsqueeze,
)


def real(x):
    """The input domain of most layers: any real values."""
    return x


def masked(scale, mask_kind):
    c, h, w = 2, 4, 4
    mask = checkerboard_mask(h, w) if mask_kind == "checkerboard" else channel_mask(c)
    net = GatedConvNet(c, 8, out_channels=net_out_channels(c, scale))
    return MaskedAffineCoupling(net, mask, scale, channels=c), (c, h, w), real


def channel(scale):
    net = GlowCouplingNet(2, net_out_channels(2, scale), hidden=8)
    return ChannelAffineCoupling(net, 4, scale), (4, 4, 4), real


def actnorm():
    layer = ActNorm(3)
    layer(randn(8, 3, 4, 4, seed=5) * 3 + 1)  # data-dependent init
    return layer, (3, 4, 4), real


# name -> () -> (layer, input shape, map from N(0, 1) samples into the layer's input domain)
LAYERS = {
    **{
        f"masked-{m}-{s}": (lambda s=s, m=m: masked(s, m))
        for s in ("tanh", "sigmoid", "additive")
        for m in ("checkerboard", "channel")
    },
    **{f"channel-{s}": (lambda s=s: channel(s)) for s in ("tanh", "sigmoid", "additive")},
    "actnorm": actnorm,
    "conv1x1": lambda: (InvConv1x1(4), (4, 3, 3), real),
    "conv1x1_lu": lambda: (InvConv1x1LU(4), (4, 3, 3), real),
    "reverse": lambda: (ReversePermutation(5), (5, 2, 2), real),
    "shuffle": lambda: (ShufflePermutation(5), (5, 2, 2), real),
    "squeeze": lambda: (Squeeze(), (2, 4, 4), real),
    "split": lambda: (Split(4), (4, 3, 3), real),
    "learned_prior": lambda: (LearnedPrior(3), (3, 2, 2), real),
    "logit": lambda: (LogitTransform(1e-3), (2, 3, 3), torch.sigmoid),  # values in (0, 1)
    "sequential": lambda: (
        FlowSequential(actnorm()[0], InvConv1x1(3), ReversePermutation(3)),
        (3, 4, 4),
        real,
    ),
}


def make(name, dtype=torch.float64):
    """(layer perturbed away from the identity, in ``dtype``; a batch of valid inputs)."""
    layer, shape, domain = LAYERS[name]()
    perturb_(layer, scale=0.1)
    return layer.to(dtype), lambda batch=3, seed=1: domain(
        randn(batch, *shape, dtype=dtype, seed=seed)
    )


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_round_trip_float64(name):
    layer, inputs = make(name)
    assert checks.check_invertibility(layer, inputs()) < 1e-10


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_round_trip_float32(name):
    layer, inputs = make(name, torch.float32)
    assert checks.check_invertibility(layer, inputs()) < 1e-5


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_logdet_matches_jacobian(name):
    layer, inputs = make(name)
    assert checks.check_logdet(layer, inputs(batch=2)) < 1e-8


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_logdet_consistency(name):
    layer, inputs = make(name)
    assert checks.check_logdet_consistency(layer, inputs()) < 1e-8


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_logdet_shape_and_dtype(name):
    layer, inputs = make(name, torch.float32)
    z, logdet = layer(inputs(batch=5))
    assert logdet.shape == (5,) and logdet.dtype == torch.float32


# --- dequantization ---------------------------------------------------------------


@pytest.mark.parametrize("n_bits", [1, 5, 8])
@pytest.mark.parametrize("center", [False, True])
def test_uniform_dequantization_exact_integer_round_trip(n_bits, center):
    layer = UniformDequantization(n_bits, center=center)
    x = torch.randint(0, 2**n_bits, (16, 3, 8, 8))
    z, logdet = layer(x)
    assert z.min() >= (-0.5 if center else 0) and z.max() < (0.5 if center else 1)
    x_back, ld_inv = layer.inverse(z)
    assert torch.equal(x_back.long(), x)
    d = 3 * 8 * 8
    assert torch.allclose(logdet, torch.full((16,), -d * n_bits * math.log(2)))
    assert torch.allclose(ld_inv, -logdet)


def test_uniform_dequantization_logdet_against_jacobian():
    layer = UniformDequantization(5)
    x = torch.randint(0, 32, (2, 1, 4, 4)).double()
    assert checks.check_logdet(layer, x) < 1e-8


@pytest.mark.parametrize("bad", [0, 9, -1, 2.5, "8", True])
def test_n_bits_out_of_range(bad):
    with pytest.raises(ValueError, match="n_bits must be an integer from 1 to 8"):
        UniformDequantization(bad)


def test_dequantization_rejects_scaled_pixels():
    layer = UniformDequantization(8)
    with pytest.raises(ValueError, match="integer pixel values in 0..255"):
        layer(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="values in"):
        UniformDequantization(5)(torch.full((2, 1, 4, 4), 200))


def test_logit_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"expected values in \[0, 1\]"):
        LogitTransform()(torch.full((1, 1, 2, 2), 3.0))


def vardeq(dtype=torch.float64):
    c, h, w = 1, 4, 4
    flows = [
        MaskedAffineCoupling(
            GatedConvNet(2 * c, 8, out_channels=2 * c),
            checkerboard_mask(h, w, invert=i % 2 == 1),
            "tanh",
            c,
        )
        for i in range(2)
    ]
    return perturb_(VariationalDequantization(flows, n_bits=8)).to(dtype)


def test_variational_dequantization_round_trip_and_consistency():
    layer = vardeq()
    x = torch.randint(0, 256, (4, 1, 4, 4)).double()
    z, ld = layer(x)
    assert ((z * 256).floor() == x).all()
    x_back, ld_inv = layer.inverse(z)
    assert torch.equal(x_back, x)
    assert (ld + ld_inv).abs().max() < 1e-8


def test_variational_dequantization_log_dets_cancel_for_every_noise_draw():
    """Noise near 0 once drove u = (sigmoid(h) - alpha/2) / (1 - alpha) below 0, where the
    clamp off the bin edges changed u and the inverse no longer undid the forward."""
    layer, x = (
        vardeq(),
        torch.randint(0, 256, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0)).double(),
    )
    worst = 0.0
    for seed in range(200):
        torch.manual_seed(seed)
        z, ld = layer(x)
        x_back, ld_inv = layer.inverse(z)
        assert torch.equal(x_back, x), seed
        worst = max(worst, (ld + ld_inv).abs().max().item())
    assert worst < 1e-8


def test_variational_dequantization_noise_flow_logdet_against_jacobian():
    layer = vardeq()
    x = torch.randint(0, 256, (2, 1, 4, 4)).double()
    cond = layer.condition(x)
    assert checks.check_flow(layer.flow, randn(2, 1, 4, 4), cond=cond)["logdet"] < 1e-8


def test_variational_dequantization_differs_from_uniform():
    """The learned noise must depend on the image; uniform noise would not."""
    layer = vardeq()
    x = torch.randint(0, 256, (2, 1, 4, 4)).double()
    torch.manual_seed(0)
    _, ld_a = layer(x)
    torch.manual_seed(0)
    _, ld_b = layer(255 - x)
    assert not torch.allclose(ld_a, ld_b)


# --- ActNorm ------------------------------------------------------------------------


def test_actnorm_first_batch_has_zero_mean_unit_variance():
    layer = ActNorm(3)
    x = randn(64, 3, 5, 5, dtype=torch.float32) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1) + 4
    z, _ = layer(x)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (z.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4
    assert bool(layer.initialized)


def test_actnorm_initialises_only_once():
    layer = ActNorm(2)
    layer(randn(16, 2, 3, 3))
    before = layer.bias.detach().clone()
    layer(randn(16, 2, 3, 3, seed=9) * 10)
    assert torch.equal(before, layer.bias.detach())


def test_loading_state_dict_does_not_reinitialise_actnorm():
    trained = ActNorm(2)
    trained(randn(16, 2, 3, 3) * 3 + 2)
    fresh = ActNorm(2)
    fresh.load_state_dict(trained.state_dict())
    assert bool(fresh.initialized)
    fresh(randn(16, 2, 3, 3, seed=4) * 100)  # would re-initialise if the flag were lost
    assert torch.equal(fresh.bias, trained.bias) and torch.equal(fresh.log_scale, trained.log_scale)


def test_actnorm_accepts_flat_inputs():
    layer = ActNorm(4)
    z, ld = layer(randn(32, 4))
    assert z.shape == (32, 4) and ld.shape == (32,)


# --- 1x1 convolutions -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [InvConv1x1, InvConv1x1LU])
def test_conv1x1_logdet_is_hw_times_log_abs_det_w(cls):
    layer = perturb_(cls(4)).double()
    _, ld = layer(randn(2, 4, 3, 5))
    w = layer.weight().detach()
    assert torch.allclose(
        ld, torch.full((2,), 15 * torch.linalg.slogdet(w)[1].item(), dtype=torch.float64)
    )


def test_lu_logdet_is_sum_of_log_s():
    layer = perturb_(InvConv1x1LU(6)).double()
    _, ld = layer(randn(1, 6, 2, 2))
    assert torch.allclose(ld, 4 * layer.log_s.sum())


@pytest.mark.parametrize("cls", [InvConv1x1, InvConv1x1LU])
def test_conv1x1_caches_inverse_in_eval_mode_and_refreshes_on_change(cls):
    layer = perturb_(cls(4)).eval()
    z = randn(2, 4, 3, 3, dtype=torch.float32)
    x1, _ = layer.inverse(z)
    cached = layer._cache[1]
    layer.inverse(z)
    assert layer._cache[1] is cached
    with torch.no_grad():
        next(layer.parameters()).add_(0.1)
    x2, _ = layer.inverse(z)
    assert layer._cache[1] is not cached and not torch.allclose(x1, x2)
    assert checks.check_invertibility(layer, z) < 1e-5


def test_conv1x1_inverse_is_accurate_in_float32_after_many_layers():
    torch.manual_seed(0)
    layers = FlowSequential(
        *[perturb_(InvConv1x1(8), scale=0.05, seed=i) for i in range(32)]
    ).eval()
    x = randn(4, 8, 4, 4, dtype=torch.float32)
    assert checks.check_invertibility(layers, x) < 1e-5


# --- squeeze and split --------------------------------------------------------------------


def test_squeeze_4x4_example():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    z = squeeze(x)
    assert z.shape == (1, 4, 2, 2)
    # each 2x2 patch becomes the four channels of one position
    assert z[0, :, 0, 0].tolist() == [0, 1, 4, 5]
    assert z[0, :, 1, 1].tolist() == [10, 11, 14, 15]
    assert torch.equal(unsqueeze(z), x)


def test_squeeze_odd_size_is_a_clear_error():
    with pytest.raises(ValueError, match="height and width must be even, got 7x7"):
        squeeze(torch.zeros(1, 1, 7, 7))
    with pytest.raises(ValueError, match="4-d tensor"):
        squeeze(torch.zeros(1, 8, 8))


def test_split_prior_is_the_conditional_gaussian():
    layer = perturb_(Split(4)).double()
    x = randn(3, 4, 2, 2)
    z, ld = layer(x)
    a, b = x.chunk(2, 1)
    mean, log_sd = layer.mean_log_sd(a)
    expected = torch.distributions.Normal(mean, log_sd.exp()).log_prob(b).flatten(1).sum(1)
    std_normal = torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 2:]).flatten(1).sum(1)
    assert torch.allclose(std_normal + ld, expected)


def test_prior_parameters_say_what_they_take():
    split, top = Split(4), LearnedPrior(2)
    expected = r"half of the channels that stays.*\(batch, 2, H, W\); got \(3, 4, 2, 2\)"
    with pytest.raises(ValueError, match=expected):
        split.mean_log_sd(torch.zeros(3, 4, 2, 2))
    with pytest.raises(ValueError, match="half of the channels"):
        split.mean_log_sd(torch.zeros(2, 2, 2))
    with pytest.raises(TypeError, match="takes the batch size, an int such as n, got Tensor"):
        top.mean_log_sd(torch.zeros(3, 2, 1, 1))
    mean, log_sd = top.mean_log_sd(3)
    assert mean.shape == log_sd.shape == (3, 2, 1, 1)


def test_learned_prior_class_conditional_needs_labels():
    prior = LearnedPrior(2, n_classes=3)
    with pytest.raises(ValueError, match="pass the labels as y="):
        prior(torch.zeros(2, 2, 1, 1))
    with pytest.raises(ValueError, match="labels in 0..2"):
        prior(torch.zeros(2, 2, 1, 1), y=torch.tensor([0, 5]))
    perturb_(prior)
    z0, _ = prior(torch.zeros(2, 2, 1, 1), y=torch.tensor([0, 1]))
    assert not torch.allclose(z0[0], z0[1])


# --- wrong channel counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "masked-checkerboard-tanh",
        "channel-sigmoid",
        "actnorm",
        "conv1x1",
        "conv1x1_lu",
        "reverse",
        "split",
    ],
)
def test_wrong_channel_count_is_a_clear_error(name):
    layer, inputs = make(name, torch.float32)
    _, c, h, w = inputs().shape
    with pytest.raises(ValueError, match=f"expected.*{c}"):
        layer(torch.zeros(2, c + 1, h, w))


def test_layer_norm_channels_normalises_each_pixel_over_its_channels():
    norm = LayerNormChannels(5).double()
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 2)
        norm.beta.uniform_(-1, 1)
    x = randn(3, 5, 4, 6, seed=2).double() * 3 + 1
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + norm.eps) * norm.gamma + norm.beta
    for layout in (torch.contiguous_format, torch.channels_last):
        y = norm(x.contiguous(memory_format=layout))
        assert torch.allclose(y, expected, atol=1e-12), layout
        assert y.is_contiguous(memory_format=layout), f"output should keep the input's {layout}"
    assert torch.autograd.gradcheck(norm, (x[:1, :, :2, :2].clone().requires_grad_(),))
