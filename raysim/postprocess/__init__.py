"""Post-processing steps: map a run's answer distributions to new ones when it is scored.

Built in: ``temperature`` (plain temperature scaling), ``tilt`` (mean-preserving exponential
tilting). See ``base`` for adding one.
"""

from .base import STEPS, Step, StepError, apply_steps, parse_steps, register_step
from . import temperature, tilt  # noqa: F401  (they register)

__all__ = ["STEPS", "Step", "StepError", "apply_steps", "parse_steps", "register_step"]
