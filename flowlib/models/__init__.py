"""Image flow models: UvA-style RealNVP flows and Glow."""
from .base import ImageFlow, standard_normal_log_prob
from .glow import COUPLINGS, PERMUTATIONS, Glow, flow_step
from .realnvp import MultiscaleFlow, SimpleFlow

__all__ = ["COUPLINGS", "Glow", "ImageFlow", "MultiscaleFlow", "PERMUTATIONS", "SimpleFlow",
           "flow_step", "standard_normal_log_prob"]
