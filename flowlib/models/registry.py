"""The models by name, as ``flowlib train --model NAME`` and checkpoints know them."""

from __future__ import annotations

import inspect

from .base import ImageFlow
from .glow import Glow
from .realnvp import MultiscaleFlow, SimpleFlow

# name -> (class, fixed constructor arguments)
MODELS = {
    "simple": (SimpleFlow, {"vardeq": False}),
    "vardeq": (SimpleFlow, {"vardeq": True}),
    "multiscale": (MultiscaleFlow, {}),
    "glow": (Glow, {}),
}
MODEL_CLASSES = {cls.__name__: cls for cls, _ in MODELS.values()}


def build_model(name: str, image_shape, **overrides) -> ImageFlow:
    """Model ``name`` ("simple", "vardeq", "multiscale", "glow") for images of shape
    ``image_shape`` (C, H, W). ``overrides`` go to its constructor (``None`` values are
    ignored): e.g. ``K``, ``L``, ``hidden``, ``n_bits``. For "multiscale" an int
    ``hidden`` means the widths ``(h, 3h/2, 2h)`` of its levels."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    cls, fixed = MODELS[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if cls is MultiscaleFlow and isinstance(overrides.get("hidden"), int):
        h = overrides["hidden"]
        overrides["hidden"] = (h, 3 * h // 2, 2 * h)
    accepted = [
        p
        for p in inspect.signature(cls.__init__).parameters
        if p not in ("self", "image_shape") and p not in fixed
    ]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(
            f"Model {name!r} takes no {', '.join(unknown)} (it takes {', '.join(accepted)})."
        )
    return cls(image_shape=tuple(int(s) for s in image_shape), **fixed, **overrides)


def model_name(model: ImageFlow) -> str:
    """The :data:`MODELS` name of a built model ("glow", "simple", ...)."""
    for name, (cls, fixed) in MODELS.items():
        if type(model) is cls and all(model.config.get(k) == v for k, v in fixed.items()):
            return name
    raise ValueError(
        f"{type(model).__name__} is not one of flowlib's models ({', '.join(MODELS)})."
    )
