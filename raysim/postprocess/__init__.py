"""Post-processing steps: map a run's answer distributions to new ones when it is scored.

Built in: ``temperature`` (plain temperature scaling). See ``base`` for adding one.
"""

from .base import STEPS, Step, StepError, apply_steps, parse_steps, register_step
from . import temperature  # noqa: F401  (it registers)

__all__ = ["STEPS", "Step", "StepError", "apply_steps", "parse_steps", "register_step"]
