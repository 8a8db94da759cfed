"""The layer and model contract in code: complete models, keyword routing, recorded configs."""

from __future__ import annotations

import pytest
import torch

from flowlib import checkpoints as C
from flowlib.layers import ActNorm, FlowSequential, LearnedPrior, UniformDequantization
from flowlib.models import MODELS, ImageFlow, build_model, model_name
from flowlib.models.realnvp import checkerboard_coupling


class _Complete(ImageFlow):
    def __init__(self, shape=(1, 4, 4), drop: str | None = None):
        super().__init__()
        members = dict(
            image_shape=shape,
            latent_shapes=[shape],
            n_bits=8,
            config=dict(shape=shape),
            dequantize=UniformDequantization(8),
        )
        for name, value in members.items():
            if name != drop:
                setattr(self, name, value)

    def flow_forward(self, v, y=None):
        return [v], torch.zeros(len(v))

    def flow_inverse(self, latents, y=None):
        return latents[0], torch.zeros(len(latents[0]))


@pytest.mark.parametrize("member", ImageFlow.REQUIRED)
def test_a_model_that_does_not_set_a_member_fails_when_built(member):
    _Complete()  # the complete one builds
    with pytest.raises(
        TypeError, match=f"not a complete ImageFlow: its __init__ must set {member}"
    ):
        _Complete(drop=member)


def test_a_model_without_flow_inverse_fails_when_built():
    class NoInverse(ImageFlow):
        def flow_forward(self, v, y=None):
            return [v], torch.zeros(len(v))

    with pytest.raises(TypeError, match="abstract method.*flow_inverse"):
        NoInverse()


def test_flow_sequential_routes_each_keyword_to_the_layers_that_take_it():
    c = 2
    coupling = checkerboard_coupling(c, 4, 4, hidden=4, invert=False, cond_channels=c)
    prior = LearnedPrior(c, n_classes=3)
    with torch.no_grad():
        prior.class_params.bias.fill_(0.2)
    flow = FlowSequential(ActNorm(c), coupling, prior).double()
    x = torch.randn(5, c, 4, 4, dtype=torch.float64)
    cond, y = torch.randn_like(x), torch.tensor([0, 1, 2, 0, 1])
    z, logdet = flow(x, cond=cond, y=y)  # ActNorm takes neither keyword
    h, expected = x, torch.zeros(5, dtype=torch.float64)
    for layer, kw in ((flow[0], {}), (coupling, {"cond": cond}), (prior, {"y": y})):
        h, ld = layer(h, **kw)
        expected = expected + ld
    assert torch.allclose(z, h) and torch.allclose(logdet, expected)
    back, inv_logdet = flow.inverse(z, cond=cond, y=y)
    assert torch.allclose(back, x) and torch.allclose(inv_logdet, -logdet)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_records_the_config_that_rebuilds_it(name, tmp_path):
    kw = {"glow": dict(K=1, L=1, hidden=4)}.get(name, dict(hidden=4))
    model = build_model(name, (1, 8, 8), **kw)
    rebuilt = type(model)(**model.config)
    assert rebuilt.config == model.config and model_name(rebuilt) == name
    rebuilt.load_state_dict(model.state_dict())
    # built directly, without the registry, a model still checkpoints and loads
    direct = type(model)(**model.config)
    loaded, _ = C.load_checkpoint(C.save_checkpoint(tmp_path / "m.pt", direct, step=0))
    assert loaded.config == direct.config
    for key, value in direct.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
