"""Step ``temperature``: plain temperature scaling of each answer distribution, q ∝ p^(1/T).

    postprocess: [{temperature: {temperature: 1.4}}]   # or {} to take T from the run's fit
                                                        # (`raysim fit` with fitter temperature)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import Step, StepError, register_step


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T), renormalised along the last axis (in log space: zeros stay zero)."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    q = np.exp(logp) * (np.asarray(probs) > 0)
    return q / q.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Params:
    temperature: float | None = None
    """T > 0; none: the ``temperature`` of the run's fitted artefact."""

    def __post_init__(self) -> None:
        if self.temperature is not None and not self.temperature > 0:
            raise StepError(f"temperature must be > 0, got {self.temperature}")


@register_step("temperature")
class Temperature(Step):
    Params = Params

    def apply(self, rows, codebook, fit) -> pd.Series:
        t = self.params.temperature
        if t is None:
            if fit is None or "temperature" not in fit.result:
                raise StepError("postprocess temperature: no temperature given and the run names no fit "
                                "with one (fit: a directory of `raysim fit` with fitter temperature)")
            t = float(fit.result["temperature"])
        return rows["probs"].map(lambda p: temper(np.asarray(p), t).astype(np.float32))
