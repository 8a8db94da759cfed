"""flowlib: normalizing flows from change of variables to Glow.

Convention used everywhere: ``forward(x) -> (z, logdet)`` goes from data to
latent, ``inverse(z) -> (x, logdet)`` from latent to data, and ``logdet`` has
one value per sample. Training evaluates ``forward`` (the likelihood), sampling
evaluates ``inverse``; we name the directions after the data, as Glow and nflows do.
"""

from . import checks, layers, metrics, models
from .models import Glow, MultiscaleFlow, SimpleFlow
from .notebook_helpers import fast_mode  # noqa: F401

__version__ = "0.1.0"
__all__ = ["Glow", "MultiscaleFlow", "SimpleFlow", "checks", "layers", "metrics", "models"]
