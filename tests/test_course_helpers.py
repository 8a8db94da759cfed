"""The helpers the notebooks share: ``flowlib.checks.check_close`` (every message path), the
shared checks' hints, ``flowlib.checks.perturb_``, ``flowlib.notebook_helpers`` (``refusing``,
``recording``) and the pictures of ``flowlib.viz`` (``show_grid``, ``grid_png``,
``temperature_widget``)."""
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

import flowlib.layers
from flowlib import notebook_helpers
from flowlib.checks import (
    INVERTIBILITY_HINT,
    FlowCheckError,
    check_close,
    check_invertibility,
    check_logdet,
    perturb_,
)
from flowlib.layers import ActNorm, FlowSequential
from flowlib.models import Glow
from flowlib.viz import grid_png, make_grid, show_grid, temperature_widget

ROOT = Path(__file__).resolve().parents[1]
TRUE = torch.tensor([1.0, -2.0, 3.0, 0.5, 7.0], dtype=torch.float64)


# check_close


def test_a_match_returns_the_error():
    ours = TRUE.float() + 1e-7   # float32 against float64, within rtol * (1 + max|true|) = 8e-6
    err = check_close(ours, TRUE, "z")
    assert isinstance(err, float) and 0 < err <= 8e-6
    assert check_close(TRUE.clone(), TRUE, "z") == 0.0
    assert check_close(torch.tensor(2.0), 2.0, "a number") == 0.0   # `true` need not be a tensor


def test_rtol_scales_with_the_largest_true_value():
    check_close(TRUE + 1e-3, TRUE, "z", rtol=1e-3)               # tolerance 1e-3 * (1 + 7)
    with pytest.raises(FlowCheckError):
        check_close(TRUE + 1e-2, TRUE, "z", rtol=1e-3)


def test_not_a_tensor():
    with pytest.raises(FlowCheckError, match=r"^z: expected a torch.Tensor, got list\.$"):
        check_close(TRUE.tolist(), TRUE, "z")
    with pytest.raises(FlowCheckError, match="got NoneType"):
        check_close(None, TRUE, "z")


def test_wrong_shape():
    with pytest.raises(FlowCheckError, match=r"^logdet: expected shape \(5,\), got \(5, 1\)\.$"):
        check_close(TRUE[:, None], TRUE, "logdet")


def test_nan_with_a_hint():
    ours = TRUE.clone()
    ours[2] = float("nan")
    message = r"^log p contains NaN\. Likely cause: log of a negative number\.$"
    with pytest.raises(FlowCheckError, match=message):
        check_close(ours, TRUE, "log p", nan_hint="log of a negative number")


def test_nan_without_a_hint_is_a_generic_mismatch():
    ours = TRUE.clone()
    ours[2] = float("nan")
    with pytest.raises(FlowCheckError, match=r"^log p is wrong: off by up to nan"):
        check_close(ours, TRUE, "log p")


def test_a_matched_wrong_answer_gives_its_hint():
    wrong_answers = [("the sign is wrong", -TRUE), ("the logdet is averaged", TRUE / 5)]
    with pytest.raises(FlowCheckError) as info:
        check_close(TRUE / 5, TRUE, "forward's logdet", wrong_answers)
    assert str(info.value) == ("forward's logdet is wrong (off by up to 5.6). "
                               "Likely cause: the logdet is averaged.")
    # the first matching hint wins; values the hints do not match fall through to the generic one
    with pytest.raises(FlowCheckError, match="Likely cause: the sign is wrong"):
        check_close(-TRUE, TRUE, "forward's logdet", wrong_answers + [("also negative", -TRUE)])


def test_a_wrong_answer_of_another_shape_or_with_nan_is_matched_only_exactly():
    ours = TRUE.clone()
    ours[0] = float("nan")
    hint = [("a NaN where the mistake makes one", ours.clone()), ("other shape", TRUE[:2])]
    with pytest.raises(FlowCheckError) as info:
        check_close(ours, TRUE, "z", hint)
    # no "off by nan"
    assert str(info.value) == "z is wrong. Likely cause: a NaN where the mistake makes one."


def test_generic_mismatch_says_by_how_much_and_shows_values():
    ours = TRUE.clone()
    ours[1] += 0.25
    with pytest.raises(FlowCheckError) as info:
        check_close(ours, TRUE, "z", [("unrelated mistake", TRUE * 2)])
    assert str(info.value) == ("z is wrong: off by up to 0.25 (tolerance 8e-06). First values: "
                               "yours [1.0, -1.75, 3.0, 0.5], expected [1.0, -2.0, 3.0, 0.5].")


def test_check_close_failures_are_assertion_errors():
    assert issubclass(FlowCheckError, AssertionError)
    with pytest.raises(AssertionError):
        check_close(TRUE + 1, TRUE, "z")


def test_reloading_the_checks_undoes_a_monkeypatch():
    """What the hidden tests rely on: ``importlib.reload(flowlib.checks)`` gives back the
    real check_close after a student patched it (in a fresh process: a reload here would
    replace FlowCheckError under the other tests' feet)."""
    code = ("import importlib, flowlib.checks, torch\n"
            "flowlib.checks.check_close = lambda *a, **k: 0.0\n"
            "_checks = importlib.reload(flowlib.checks)\n"
            "try:\n"
            "    _checks.check_close(torch.zeros(2), torch.ones(2), 'z')\n"
            "except AssertionError as e:\n"
            "    print('caught:', e)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "caught: z is wrong: off by up to 1" in out.stdout


# the shared checks' hints


def _affine(scale_first):
    """z = x * e^s + t (scale_first) or (x + t) * e^s, with an inverse of the other order."""
    s = torch.tensor([0.5, -1.0], dtype=torch.float64)
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    ld = s.sum()

    def forward(x):
        z = x * s.exp() + t if scale_first else (x + t) * s.exp()
        return z, ld.expand(len(x))

    def inverse(z):     # the wrong order for this forward
        x = z * (-s).exp() - t if scale_first else (z - t) * (-s).exp()
        return x, -ld.expand(len(z))
    return forward, inverse


@pytest.mark.parametrize("scale_first", [True, False])
def test_the_default_invertibility_hint_holds_for_either_order(scale_first):
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(FlowCheckError) as info:
        check_invertibility(_affine(scale_first), x)
    message = str(info.value)
    assert INVERTIBILITY_HINT in message
    # it names both orders, so it never tells a student to do the opposite of their forward
    assert "x = (z - t) * exp(-s)" in message and "x = z * exp(-s) - t" in message


def test_a_caller_passes_its_own_invertibility_hint():
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(FlowCheckError, match="Likely cause: subtract the shift first.$"):
        check_invertibility(_affine(True), x, hint="subtract the shift first")


def test_the_log_det_diagnosis_of_one_sample_does_not_call_it_constant():
    def forward(x):        # the log-det is off by an amount that depends on x
        return x * 2.0, torch.full((len(x),), 2 * math.log(2.0)) + x.sum(1) ** 2

    one = torch.randn(1, 2, dtype=torch.float64)
    with pytest.raises(FlowCheckError) as info:
        check_logdet((forward, None), one)
    message = str(info.value)
    assert "one sample cannot tell a constant offset" in message
    assert "does not depend on the input" not in message
    many = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(FlowCheckError, match="it differs per sample"):
        check_logdet((forward, None), many)


def test_the_log_det_diagnosis_names_a_constant_and_the_dequantization_term():
    def offset(c):
        return lambda x: (x * 2.0, torch.full((len(x),), 2 * math.log(2.0) + c, dtype=x.dtype))

    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(FlowCheckError, match="same constant 0.3 for every sample"):
        check_logdet((offset(0.3), None), x)
    with pytest.raises(FlowCheckError, match="-D\\*log\\(n_bins\\) is missing"):
        check_logdet((offset(2 * math.log(256)), None), x[:1])   # one sample: still named


# notebook_helpers.refusing and recording


def test_refusing_makes_a_reference_raise_wherever_it_is_reached_and_restores_it():
    namespace = {"ref": flowlib.layers.squeeze}
    x = torch.arange(16.0).view(1, 1, 4, 4)
    with notebook_helpers.refusing(flowlib.layers.squeeze, (flowlib.layers.Squeeze, "forward"),
                                   why="write it yourself", namespace=namespace):
        for call in (lambda: flowlib.layers.squeeze(x), lambda: namespace["ref"](x),
                     lambda: flowlib.layers.Squeeze()(x)):
            with pytest.raises(AssertionError, match="^write it yourself$"):
                call()
    assert namespace["ref"] is flowlib.layers.squeeze
    assert flowlib.layers.squeeze(x).shape == (1, 4, 2, 2)
    assert flowlib.layers.Squeeze()(x)[0].shape == (1, 4, 2, 2)
    assert "forward" not in vars(flowlib.layers.Squeeze) or callable(flowlib.layers.Squeeze.forward)


def test_recording_sees_the_dtypes_a_function_is_called_with():
    with notebook_helpers.recording(torch.linalg.inv, (torch.Tensor, "inverse")) as calls:
        torch.linalg.inv(torch.eye(2))
        torch.eye(2, dtype=torch.float64).inverse()
    assert calls == [(torch.float32,), (torch.float64,)]
    assert torch.linalg.inv(torch.eye(2)).shape == (2, 2) and "inverse" not in vars(torch.Tensor)


# perturb_


def test_perturb_is_seeded_the_same_in_every_dtype_and_marks_actnorm_initialised():
    def build():
        torch.manual_seed(0)
        return FlowSequential(ActNorm(3), ActNorm(3))

    a = perturb_(build().double(), seed=3)
    b = perturb_(build().float(), seed=3)
    c = perturb_(build().double(), seed=4)
    base = build().double()
    for pa, pb, pc, p0 in zip(a.parameters(), b.parameters(), c.parameters(), base.parameters()):
        assert not torch.equal(pa, p0)
        assert torch.allclose(pa, pb.double(), atol=1e-6)
        assert not torch.equal(pa, pc)
        assert (pa - p0).abs().max() < 0.05 * 6
    assert all(bool(m.initialized) for m in a.modules() if isinstance(m, ActNorm))
    assert not any(bool(m.initialized) for m in base.modules() if isinstance(m, ActNorm))
    assert perturb_(base, scale=0.0) is base
    assert torch.equal(next(base.parameters()), next(build().parameters()).double())
    with pytest.raises(TypeError):
        perturb_(build(), 0.05, 1)   # scale and seed are keyword-only (perturb_(m, 1): scale=1?)


# show_grid, grid_png, temperature_widget


@pytest.fixture
def gray():
    return torch.arange(6 * 4 * 5).reshape(6, 1, 4, 5) % 8          # 3-bit integer images


def test_show_grid_draws_the_grid_on_a_new_figure_sized_by_zoom(gray):
    grid = make_grid(gray, n_bits=3, nrow=3)
    ax = show_grid(gray, n_bits=3, nrow=3, title="six", zoom=2.0)
    try:
        shown = ax.images[0].get_array()
        assert shown.shape == grid.shape[:2] and np.array_equal(shown, grid[:, :, 0])
        assert ax.get_title() == "six" and not ax.axison
        w, h = ax.figure.get_size_inches()
        assert (w, h) == pytest.approx((2.0 * grid.shape[1] / 50, 2.0 * grid.shape[0] / 50))
    finally:
        plt.close("all")


def test_show_grid_on_given_axes_and_in_colour():
    rgb = torch.randint(0, 32, (4, 3, 6, 6))
    fig, axes = plt.subplots(1, 2)
    try:
        assert show_grid(rgb, n_bits=5, ax=axes[1]) is axes[1]
        assert axes[1].images[0].get_array().shape == make_grid(rgb, n_bits=5).shape   # (H, W, 3)
        assert not axes[0].images
    finally:
        plt.close(fig)


def test_grid_png_is_the_grid_enlarged(gray):
    grid = make_grid(gray, n_bits=3, nrow=2)
    data = grid_png(gray, n_bits=3, nrow=2, zoom=3)
    assert isinstance(data, bytes) and data.startswith(b"\x89PNG")
    picture = np.asarray(Image.open(io.BytesIO(data)))
    assert picture.shape == (3 * grid.shape[0], 3 * grid.shape[1])
    assert np.array_equal(picture[::3, ::3], grid[:, :, 0])
    rgb = torch.randint(0, 256, (2, 3, 4, 4))
    picture = np.asarray(Image.open(io.BytesIO(grid_png(rgb, zoom=1))))
    assert np.array_equal(picture, make_grid(rgb))


def test_temperature_widget_decodes_the_same_latents_at_each_temperature():
    torch.manual_seed(0)
    model = perturb_(Glow((1, 8, 8), K=1, L=2, hidden=8, n_bits=5), seed=1).eval()
    box = temperature_widget(model, n=4, nrow=2, seed=5, value=0.5, max_temperature=1.2, zoom=2)
    slider, image = box.children
    settings = (slider.description, slider.min, slider.max, slider.value)
    assert settings == ("temperature", 0.0, 1.2, 0.5)
    g = torch.Generator().manual_seed(5)
    eps = [torch.randn((4, *shape), generator=g) for shape in model.latent_shapes]

    def expected(t):
        with torch.no_grad():
            return grid_png(model.decode([t * e for e in eps]), n_bits=5, nrow=2, zoom=2)

    assert image.value == expected(0.5)
    slider.value = 1.0
    assert image.value == expected(1.0) != expected(0.5)
