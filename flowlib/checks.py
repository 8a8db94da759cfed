"""Correctness checks shared by the tests, the notebooks and the autograder.

Every flow check takes a flow layer (anything with ``forward(x) -> (z, logdet)`` and
``inverse(z) -> (x, logdet)``, or a ``(forward, inverse)`` pair of functions)
and an input batch. It returns the error it measured, or raises
:class:`FlowCheckError` with a message that says what failed, by how much and
what the likely cause is.

Use float64 layers and inputs for the tight tolerances (``layer.double()``).

Two helpers for the notebooks' checks: :func:`check_close` compares one tensor with its
expected value (it raises :class:`FlowCheckError` too, naming the likely mistake), and
:func:`perturb_` moves a freshly built (near-identity) flow away from the identity so that
the checks can tell right from wrong.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "INVERTIBILITY_HINT",
    "FlowCheckError",
    "check_close",
    "check_flow",
    "check_invertibility",
    "check_logdet",
    "check_logdet_consistency",
    "flat_model_flow",
    "jacobian_logdet",
    "perturb_",
]


class FlowCheckError(AssertionError):
    """A flow layer failed a check; the message explains why."""


def _directions(layer):
    if isinstance(layer, tuple) and len(layer) == 2:
        return layer
    if not (hasattr(layer, "forward") and hasattr(layer, "inverse")):
        raise TypeError(
            f"Expected a flow layer with forward() and inverse() methods, or a pair "
            f"(forward, inverse) of functions; got {type(layer).__name__}."
        )
    return (layer if isinstance(layer, torch.nn.Module) else layer.forward), layer.inverse


def _call(fn, x, direction: str, **kwargs):
    out = fn(x, **kwargs)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise FlowCheckError(
            f"{direction} must return a pair (output, logdet), got {type(out).__name__}. "
            f"Return both: `return z, logdet`."
        )
    y, logdet = out
    if not isinstance(logdet, torch.Tensor) or logdet.shape != (x.shape[0],):
        shape = tuple(logdet.shape) if isinstance(logdet, torch.Tensor) else type(logdet).__name__
        raise FlowCheckError(
            f"{direction}: logdet must have shape (batch,) = ({x.shape[0]},), one value per "
            f"sample, got {shape}. Sum over every dimension except the batch: "
            f"`logdet = log_s.flatten(1).sum(1)`."
        )
    if not torch.isfinite(logdet).all():
        raise FlowCheckError(f"{direction}: logdet contains NaN or inf: {logdet}. "
                             f"Look for log(0) or exp overflow.")
    return y, logdet


def check_close(ours, true, what: str, wrong_answers=(), nan_hint: str | None = None,
                rtol: float = 1e-6) -> float:
    """``ours`` must be a tensor of ``true``'s shape and values; returns the largest difference.

    Compared in float64 with tolerance ``rtol * (1 + max|true|)``. ``wrong_answers`` holds
    ``(hint, value)`` pairs, the results of common mistakes: when ``ours`` matches one of
    them, its hint is the message. ``nan_hint`` is the likely cause of a NaN in ``ours``.
    ``what`` names the quantity in the messages.
    """
    true = torch.as_tensor(true)
    if not isinstance(ours, torch.Tensor):
        raise FlowCheckError(f"{what}: expected a torch.Tensor, got {type(ours).__name__}.")
    if ours.shape != true.shape:
        raise FlowCheckError(
            f"{what}: expected shape {tuple(true.shape)}, got {tuple(ours.shape)}.")
    ours_d, true_d = ours.detach().double().cpu(), true.detach().double().cpu()
    if torch.isnan(ours_d).any() and nan_hint:
        raise FlowCheckError(f"{what} contains NaN. Likely cause: {nan_hint}.")
    tol = rtol * (1 + true_d.abs().max().item())
    err = (ours_d - true_d).abs().max().item()  # NaN when ours has a NaN
    if err <= tol:
        return err
    for hint, wrong in wrong_answers:
        wrong = torch.as_tensor(wrong).detach().double().cpu()
        same = wrong.shape == ours_d.shape
        if same and torch.allclose(ours_d, wrong, rtol=0, atol=tol, equal_nan=True):
            off = f" (off by up to {err:.3g})" if math.isfinite(err) else ""
            raise FlowCheckError(f"{what} is wrong{off}. Likely cause: {hint}.")
    raise FlowCheckError(f"{what} is wrong: off by up to {err:.3g} (tolerance {tol:.1g}). "
                         f"First values: yours {ours_d.flatten()[:4].tolist()}, "
                         f"expected {true_d.flatten()[:4].tolist()}.")


def _tolerance(dtype: torch.dtype, tol64: float, tol32: float) -> float:
    return tol64 if dtype == torch.float64 else tol32


INVERTIBILITY_HINT = (
    "inverse must undo forward's steps in reverse order, each with its own inverse and the same "
    "parameters: the step forward does last, inverse undoes first (forward z = x * exp(s) + t "
    "needs x = (z - t) * exp(-s); forward z = (x + t) * exp(s) needs x = z * exp(-s) - t), and "
    "whatever forward computes from a part it leaves unchanged (a coupling's s and t, a prior's "
    "mean and scale) inverse must recompute from that same part; for a linear map, multiply by "
    "the inverse matrix")


def check_invertibility(layer, x: torch.Tensor, atol: float | None = None, *,
                        hint: str | None = None, **kwargs) -> float:
    """``inverse(forward(x))`` must give back ``x``. Returns the largest error.

    Default tolerance: 1e-10 in float64, 1e-5 in float32 (times max(1, |x|)). ``hint`` is the
    likely cause named when the round trip fails (default: :data:`INVERTIBILITY_HINT`, which
    holds for any layer); a notebook passes one that fits its layer.
    """
    fwd, inv = _directions(layer)
    z, _ = _call(fwd, x, "forward", **kwargs)
    if z.shape != x.shape and z.numel() != x.numel():
        raise FlowCheckError(
            f"forward changed the number of elements: {tuple(x.shape)} -> {tuple(z.shape)}. "
            f"A bijection keeps every dimension."
        )
    x_rec, _ = _call(inv, z, "inverse", **kwargs)
    if x_rec.shape != x.shape:
        raise FlowCheckError(f"inverse(forward(x)) has shape {tuple(x_rec.shape)}, "
                             f"expected {tuple(x.shape)}.")
    err = (x_rec.to(x.dtype) - x).abs().max().item()
    scale = max(1.0, x.abs().max().item())
    atol = atol if atol is not None else _tolerance(x.dtype, 1e-10, 1e-5) * scale
    if not err <= atol:
        if torch.equal(x_rec, z) and not torch.equal(z, x):
            hint = "inverse returns its input unchanged: it is not implemented yet or does nothing"
        raise FlowCheckError(
            f"Not invertible: inverse(forward(x)) differs from x by up to {err:.3g} "
            f"(tolerance {atol:.1g}, {x.dtype}). Likely cause: {hint or INVERTIBILITY_HINT}."
        )
    return err


def jacobian_logdet(fn, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """log|det J| of ``fn`` at each sample of ``x`` from the autograd Jacobian (small inputs)."""
    out = []
    for i, xi in enumerate(x):
        sample_kwargs = {k: (w[i:i + 1] if isinstance(w, torch.Tensor) and len(w) == len(x) else w)
                         for k, w in kwargs.items()}

        def f(v, sample_kwargs=sample_kwargs):
            z, _ = fn(v[None], **sample_kwargs)
            return z.reshape(-1)
        jac = torch.autograd.functional.jacobian(f, xi.detach())
        out.append(torch.linalg.slogdet(jac.reshape(xi.numel(), xi.numel()))[1])
    return torch.stack(out)


def _dequantization_constant(c: float, d: int) -> str | None:
    for bits in range(1, 9):
        if abs(abs(c) - d * bits * math.log(2)) <= 1e-4 * d:
            which = "missing" if c > 0 else "counted twice"
            return (f"it is off by {c:.4g} = {'-' if c < 0 else ''}D*log({2 ** bits}) with D={d}: "
                    f"the dequantization scaling term -D*log(n_bins) is {which}")
    return None


def _diagnose_logdet(ours: torch.Tensor, true: torch.Tensor, d: int) -> str:
    diff = ours - true
    scale = 1e-6 * (1 + true.abs().max().item())
    if true.abs().max() > 1e-6 and (ours + true).abs().max() <= scale:
        return ("it has the wrong sign: forward must return log|det dz/dx| "
                "(for z = x * exp(s) that is +sum(s)), the inverse its negative")
    constant = (diff - diff.mean()).abs().max() <= scale
    c = diff.mean().item()
    if constant and _dequantization_constant(c, d):
        return _dequantization_constant(c, d)
    if ours.abs().max() < 1e-12 and true.abs().max() > 1e-6:
        return "it is zero, but this map changes volume: sum the log-scales"
    ratio = None
    if (true.abs() > 1e-6).all():
        r = ours / true
        if (r - r.mean()).abs().max() <= 1e-6 * r.abs().mean():
            ratio = r.mean().item()
    scaled = (f"{ratio:.4g} times the true value: a term applied at every position (for a 1x1 "
              f"convolution, height*width) is scaled wrongly") if ratio is not None else None
    if len(diff) == 1:
        times = f" ({ratio:.4g} times the true value)" if ratio is not None else ""
        return (f"it is off by {c:.4g}{times} on this one sample (one sample cannot tell a "
                f"constant offset from an error that depends on the input): check which entries "
                f"you sum, every term's sign, and that logdet comes from the same scales you apply")
    if constant:
        also = (f"; or, since the true log-det is the same for every sample here, it is {scaled}"
                if scaled else "")
        return (f"it is off by the same constant {c:.4g} for every sample ({c / d:.4g} per "
                f"dimension): a term that does not depend on the input is missing or extra{also}")
    if scaled:
        return f"it is {scaled}, for every sample"
    return ("it differs per sample: check which entries you sum (only the transformed "
            "entries contribute log|scale|) and that logdet is computed from the same "
            "scale you apply")


def check_logdet(layer, x: torch.Tensor, atol: float | None = None, **kwargs) -> float:
    """forward's logdet must equal log|det| of the autograd Jacobian, per sample.

    Use small inputs (D up to about 1,000). Default tolerance: 1e-8 in float64,
    1e-3 in float32. Returns the largest difference.
    """
    fwd, _ = _directions(layer)
    _, ours = _call(fwd, x, "forward", **kwargs)
    true = jacobian_logdet(fwd, x, **kwargs).to(ours.dtype)
    err = (ours - true).abs().max().item()
    if atol is None:
        atol = _tolerance(x.dtype, 1e-8, 1e-3) * max(1.0, true.abs().max().item() / 100)
    if not err <= atol:
        raise FlowCheckError(
            f"Wrong log-determinant: forward returned {_fmt(ours)} but the Jacobian gives "
            f"{_fmt(true)} (largest difference {err:.3g}, tolerance {atol:.1g}). Likely "
            f"cause: {_diagnose_logdet(ours.double(), true.double(), x[0].numel())}."
        )
    return err


def check_logdet_consistency(layer, x: torch.Tensor, atol: float | None = None, **kwargs) -> float:
    """forward's and inverse's log-dets must cancel at corresponding points."""
    fwd, inv = _directions(layer)
    z, ld_f = _call(fwd, x, "forward", **kwargs)
    _, ld_i = _call(inv, z, "inverse", **kwargs)
    err = (ld_f + ld_i).abs().max().item()
    scale = max(1.0, ld_f.abs().max().item())
    atol = atol if atol is not None else _tolerance(x.dtype, 1e-8, 1e-4) * scale
    if not err <= atol:
        if (ld_f - ld_i).abs().max().item() <= atol and ld_f.abs().max() > atol:
            hint = "inverse returns the same log-det as forward: it should return the negative"
        else:
            hint = "the two directions compute different scales; derive both from the same terms"
        raise FlowCheckError(
            f"Log-dets do not cancel: forward {_fmt(ld_f)} + inverse {_fmt(ld_i)} is off by "
            f"up to {err:.3g} (tolerance {atol:.1g}). Likely cause: {hint}."
        )
    return err


def check_flow(layer, x: torch.Tensor, jacobian: bool = True, *, hint: str | None = None,
               **kwargs) -> dict[str, float]:
    """All three checks; returns their measured errors by name.

    ``hint``: the likely cause of a failed round trip (see :func:`check_invertibility`).
    """
    out = {"invertibility": check_invertibility(layer, x, hint=hint, **kwargs)}
    if jacobian:  # first: its message names the likely cause of a wrong log-det
        out["logdet"] = check_logdet(layer, x, **kwargs)
    out["consistency"] = check_logdet_consistency(layer, x, **kwargs)
    return out


def flat_model_flow(model):
    """A model's continuous part as a ``(forward, inverse)`` pair on flat latents.

    forward maps dequantized images to all levels' latents concatenated into
    (batch, D), so the shared checks (Jacobian included) apply to whole models.
    Class labels go through the checks' keyword arguments: ``check_flow(flow, v, y=y)``.
    """
    shapes = model.latent_shapes

    def forward(v, y=None):
        latents, logdet = model.flow_forward(v, y=y)
        return torch.cat([z.flatten(1) for z in latents], dim=1), logdet

    def inverse(z, y=None):
        sizes = [math.prod(s) for s in shapes]
        latents = [part.reshape(-1, *s) for part, s in zip(z.split(sizes, dim=1), shapes)]
        return model.flow_inverse(latents, y=y)

    return forward, inverse


def perturb_(module: torch.nn.Module, *, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Add ``scale`` * N(0, 1) noise to every parameter, in place, and mark ActNorm layers
    initialised; returns ``module``.

    A freshly built flow is close to the identity (zero-initialised couplings and priors),
    and a check on an identity map cannot tell a right answer from a wrong one. The noise
    is drawn in float64 from a generator seeded with ``seed``, so it is the same for every
    dtype and device.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            p.add_(scale * noise.to(p.device, p.dtype))
        for m in module.modules():
            # ActNorm's data-dependent initialisation
            if isinstance(getattr(m, "initialized", None), torch.Tensor):
                m.initialized.fill_(True)
    return module


def _fmt(t: torch.Tensor, n: int = 3) -> str:
    vals = ", ".join(f"{v:.6g}" for v in t.flatten()[:n].tolist())
    return f"[{vals}{', ...' if t.numel() > n else ''}]"
