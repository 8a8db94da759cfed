"""The helpers the notebooks share: ``flowlib.checks.check_close`` (every message path),
``flowlib.checks.perturb_``, and the pictures of ``flowlib.viz`` (``show_grid``, ``grid_png``,
``temperature_widget``)."""
import io
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from flowlib.checks import FlowCheckError, check_close, perturb_  # noqa: E402
from flowlib.layers import ActNorm, FlowSequential  # noqa: E402
from flowlib.models import Glow  # noqa: E402
from flowlib.viz import grid_png, make_grid, show_grid, temperature_widget  # noqa: E402

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
    with pytest.raises(FlowCheckError, match=r"^log p contains NaN\. Likely cause: log of a negative number\.$"):
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
    assert str(info.value) == "forward's logdet is wrong (off by up to 5.6). Likely cause: the logdet is averaged."
    # the first matching hint wins; values the hints do not match fall through to the generic message
    with pytest.raises(FlowCheckError, match="Likely cause: the sign is wrong"):
        check_close(-TRUE, TRUE, "forward's logdet", wrong_answers + [("also negative", -TRUE)])


def test_a_wrong_answer_of_another_shape_or_with_nan_is_matched_only_exactly():
    ours = TRUE.clone()
    ours[0] = float("nan")
    hint = [("a NaN where the mistake makes one", ours.clone()), ("other shape", TRUE[:2])]
    with pytest.raises(FlowCheckError) as info:
        check_close(ours, TRUE, "z", hint)
    assert str(info.value) == "z is wrong. Likely cause: a NaN where the mistake makes one."   # no "off by nan"


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
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "caught: z is wrong: off by up to 1" in out.stdout


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
    assert perturb_(base, scale=0.0) is base and torch.equal(next(base.parameters()), next(build().parameters()).double())
    with pytest.raises(TypeError):
        perturb_(build(), 0.05, 1)   # scale and seed are keyword-only: perturb_(m, 1) would mean scale=1


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
    assert (slider.description, slider.min, slider.max, slider.value) == ("temperature", 0.0, 1.2, 0.5)
    g = torch.Generator().manual_seed(5)
    eps = [torch.randn((4, *shape), generator=g) for shape in model.latent_shapes]

    def expected(t):
        with torch.no_grad():
            return grid_png(model.decode([t * e for e in eps]), n_bits=5, nrow=2, zoom=2)

    assert image.value == expected(0.5)
    slider.value = 1.0
    assert image.value == expected(1.0) != expected(0.5)
