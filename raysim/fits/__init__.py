"""Fitters: what a method learns from a sample of real respondents before it simulates, run by
``raysim fit`` and written as a versioned artefact that run configs name (``fit: FIT``).

Built in: ``temperature`` (the T of temperature scaling that minimises KL), ``variance`` (the T of the
mean-preserving tilt that matches the human normalised variance), ``mixture`` (a weighted mixture of
crafted system prompts, raysim.methods.mixture). See ``base`` for adding one.
"""

from .artefact import FORMAT, Fit, FitError, load_fit, write_fit
from .base import FITTERS, FitContext, Fitter, FitterError, register_fitter
from . import mixture, temperature, variance  # noqa: F401  (they register)

__all__ = ["FITTERS", "FORMAT", "Fit", "FitContext", "FitError", "Fitter", "FitterError", "load_fit",
           "register_fitter", "write_fit"]
