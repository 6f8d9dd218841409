"""Fitter ``temperature``: the T of plain temperature scaling (q ∝ p^(1/T)) that brings the
sample's simulated answer distributions closest to its real ones: T minimises the sum over
questions of KL(human ‖ simulated), each distribution the sample's weighted pooled one. The
post-processing step ``temperature`` applies it (``postprocess: [temperature]`` with ``fit: FIT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from ..metrics.distributions import kl
from ..postprocess.temperature import temper
from ..survey.columns import ID, WEIGHT
from .base import FitContext, Fitter, FitterError, register_fitter


@dataclass(frozen=True)
class Params:
    low: float = 0.05
    high: float = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise FitterError(f"need 0 < low < high, got low={self.low}, high={self.high}")


@register_fitter("temperature")
class TemperatureFitter(Fitter):
    Params = Params
    answer_modes = ("logprob",)

    def fit(self, context: FitContext) -> dict[str, Any]:
        rows = context.answer()
        people = context.respondents.set_index(ID)
        pairs = []   # per question: (human distribution, [respondents × options] probs, weights)
        for qid in context.qids:
            item = context.codebook[qid]
            mine = rows[rows["qid"] == qid]
            weights = people.loc[mine[ID], WEIGHT].to_numpy(dtype=np.float64)
            answers = people.loc[mine[ID], qid] if qid in people else None
            if answers is None or answers.isna().all():
                continue
            codes = list(item.codes)
            human = np.array([weights[(answers == c).fillna(False).to_numpy(dtype=bool)].sum() for c in codes])
            if human.sum() <= 0:
                continue
            pairs.append((human / human.sum(), np.stack(mine["probs"].map(np.asarray).to_list()), weights))
        if not pairs:
            raise FitterError("temperature: no question of the sample has real answers to fit to")

        def loss(log_t: float) -> float:
            t = float(np.exp(log_t))
            return float(sum(kl(h, np.average(temper(p, t), axis=0, weights=w)) for h, p, w in pairs))

        best = minimize_scalar(loss, bounds=(np.log(self.params.low), np.log(self.params.high)), method="bounded",
                               options={"xatol": 1e-4})
        t = float(np.exp(best.x))
        return {"temperature": round(t, 6), "at_bound": bool(min(t - self.params.low, self.params.high - t) < 1e-2 * t),
                "kl_sum_at_1": round(loss(0.0), 6),
                "kl_sum_fitted": round(float(best.fun), 6), "questions": len(pairs),
                "respondents": int(rows[ID].nunique())}
