"""Mean-preserving exponential tilting (paper: calibrated value personas), step ``tilt``.

    q_k ∝ p_k^(1/T) · exp(β r_k)

over the scale positions r_k of an ordinal item (0..K−1 in scale order), with β the root of
E_q[r] = E_p[r], so the expected answer is unchanged while T widens (T > 1) or narrows (T < 1) the
distribution. T = 1 is the identity (β = 0). Options with p_k = 0 stay at 0, so the mean stays
inside the support and the root exists. Nominal items have no order: they pass through unchanged
(and are counted).

    postprocess: [{tilt: {temperature: 1.5}}]   # one T for every ordinal item
    postprocess: [tilt]                          # T per question (and per country) from the run's
                                                 # fit: `raysim fit` with fitter `variance`
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import Step, StepError, register_step
from .temperature import temper

BISECTIONS = 200   # halvings of β's bracket: far below double precision on any bracket used here


def tilt_batch(p: np.ndarray, r: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of ``p`` [n, K] over positions ``r`` [K] tilted at ``temperature``, each row's mean
    kept (to ~1e-12): β per row by bisection, all rows at once."""
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    r = np.asarray(r, dtype=np.float64)
    if not temperature > 0:
        raise StepError(f"tilt: temperature must be > 0, got {temperature}")
    if temperature == 1:
        return p
    support = p > 0
    with np.errstate(divide="ignore"):
        base = np.where(support, np.log(np.where(support, p, 1.0)) / temperature, -np.inf)
    target = p @ r
    # A bracket that holds the root: β·(r_i − r_j) must be able to outweigh any difference of the
    # base log-weights (positions are at least 1 apart).
    finite = np.where(support, base, np.nan)
    span = np.nanmax(finite, axis=-1) - np.nanmin(finite, axis=-1)
    lo, hi = -(span + 50.0), span + 50.0

    def tilted(beta: np.ndarray) -> np.ndarray:
        z = base + beta[:, None] * r
        z = z - z.max(axis=-1, keepdims=True)
        q = np.exp(z)
        return q / q.sum(axis=-1, keepdims=True)

    for _ in range(BISECTIONS):   # the mean is increasing in β (its derivative: the variance of r)
        mid = 0.5 * (lo + hi)
        above = tilted(mid) @ r > target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
        if np.all(hi - lo <= 1e-15 * np.maximum(1.0, np.abs(hi))):
            break
    q = tilted(0.5 * (lo + hi))
    # Rows with one or two support points cannot change without moving their mean: kept as they are.
    fixed = support.sum(axis=-1) <= 2
    return np.where(fixed[:, None], p, q)


def tilt(p: np.ndarray, r: np.ndarray, temperature: float) -> np.ndarray:
    """One distribution ``p`` over positions ``r`` tilted at ``temperature``."""
    return tilt_batch(np.asarray(p, dtype=np.float64)[None], r, temperature)[0]


def transform(p: np.ndarray, r: np.ndarray, temperature: float, mean_preserving: bool = True) -> np.ndarray:
    """Rows ``p`` [n, K] tilted, or temperature-scaled (``mean_preserving`` false: the comparison)."""
    return tilt_batch(p, r, temperature) if mean_preserving else temper(np.asarray(p, dtype=np.float64), temperature)


def positions(codes: list[int], where: dict[int, int]) -> np.ndarray | None:
    """The scale position of each option code of a row (None if a code is off the scale)."""
    if not all(c in where for c in codes):
        return None
    return np.array([where[c] for c in codes], dtype=np.float64)


@dataclass(frozen=True)
class Params:
    temperature: float | None = None
    """T > 0 for every ordinal item; none: the per-question (per-country) T of the run's fit."""
    mean_preserving: bool | None = None
    """False: plain temperature scaling with the same T (the paper's comparison); none: the
    fit's choice (true with a given temperature)."""

    def __post_init__(self) -> None:
        if self.temperature is not None and not self.temperature > 0:
            raise StepError(f"tilt: temperature must be > 0, got {self.temperature}")


@register_step("tilt")
class Tilt(Step):
    Params = Params
    passed = 0   # rows the last apply left as they were (nominal items: no order to keep a mean of)

    def apply(self, rows, codebook, fit) -> pd.Series:
        lookup = self._temperatures(fit)
        out = pd.Series([np.asarray(p, dtype=np.float32) for p in rows["probs"]], index=rows.index, dtype=object)
        keys = pd.Series(list(zip(rows["qid"], rows["country"], map(tuple, rows["option_codes"]))), index=rows.index)
        self.passed = 0
        for (qid, country, codes), index in keys.groupby(keys).groups.items():
            item = codebook[qid]
            r = positions(list(codes), item.scale_positions()) if item.kind == "ordinal" else None
            t = lookup(qid, country)
            if r is None or t is None:
                self.passed += len(index)
                continue
            p = np.stack([np.asarray(x, dtype=np.float64) for x in rows.loc[index, "probs"]])
            q = transform(p, r, t, self._mean_preserving(fit)).astype(np.float32)
            out.loc[index] = list(q)
        return out

    def _mean_preserving(self, fit) -> bool:
        if self.params.mean_preserving is not None:
            return self.params.mean_preserving
        if self.params.temperature is None and fit is not None:
            return bool(fit.result.get("mean_preserving", True))
        return True

    def _temperatures(self, fit):
        if self.params.temperature is not None:
            t = float(self.params.temperature)
            return lambda qid, country: t
        if fit is None or "temperatures" not in fit.result:
            raise StepError("postprocess tilt: no temperature given and the run names no fit with "
                            "per-question temperatures (fit: a directory of `raysim fit` with fitter variance)")
        return fitted_lookup(fit.result)


def fitted_lookup(result: dict):
    """T for (qid, country) from a ``variance`` fit: the country's (or the pooled) leave-one-
    question-out T of that question, else the T fitted on every calibration question."""
    per = result["temperatures"]
    overall = result["temperature"]

    def lookup(qid: str, country: str) -> float | None:
        table = per.get(country, per.get("ALL", {})) if result.get("per") == "country" else per.get("ALL", {})
        if qid in table:
            return float(table[qid])
        fallback = overall.get(country, overall.get("ALL")) if isinstance(overall, dict) else overall
        return None if fallback is None else float(fallback)

    return lookup
