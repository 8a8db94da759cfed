"""Image flow models: UvA-style RealNVP flows and Glow, and the registry that names them."""

from .base import ImageFlow, standard_normal_log_prob
from .glow import COUPLINGS, PERMUTATIONS, Glow, flow_step
from .realnvp import MultiscaleFlow, SimpleFlow
from .registry import MODEL_CLASSES, MODELS, build_model, model_name

__all__ = [
    "COUPLINGS",
    "MODELS",
    "MODEL_CLASSES",
    "PERMUTATIONS",
    "Glow",
    "ImageFlow",
    "MultiscaleFlow",
    "SimpleFlow",
    "build_model",
    "flow_step",
    "model_name",
    "standard_normal_log_prob",
]
