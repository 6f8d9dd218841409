"""Fitter ``variance``: the T of the mean-preserving tilt (or of plain temperature scaling) that
gives the simulated country distributions the normalised variance of the real ones (paper:
calibrated value personas).

For each ordinal question of the calibration sample: the human distribution of each country
(weighted counts, scale order) and the simulated one (the weighted mean of its respondents'
distributions, each transformed at T). T solves mean NV(simulated at T) = mean NV(human) over
the questions (and countries) it is fitted on, NV = variance of the scale positions over its
largest possible value. Leave-one-question-out: the T a question gets is fitted on the OTHER
questions, so no question is calibrated on its own answers; ``temperature`` (fitted on all of
them) serves questions outside the sample. ``per: country`` fits each country separately,
``pooled`` once for all. Nominal items have no order and are left out (counted).

    fitter: variance
    params: {per: pooled, mean_preserving: true}   # false: plain temperature scaling, to compare
    run: {...}                                     # the run config whose method is calibrated

The step ``tilt`` applies it (``postprocess: [tilt]`` with ``fit: FIT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.answers import human_distribution, simulated_matrix
from ..metrics.distributions import norm_variance
from ..postprocess.tilt import transform
from ..survey.columns import COUNTRY, ID, WEIGHT
from .base import FitContext, Fitter, FitterError, register_fitter

POOLED = "ALL"


@dataclass(frozen=True)
class Params:
    per: str = "pooled"
    mean_preserving: bool = True
    low: float = 0.05
    high: float = 20.0
    grid: int = 241
    """T is solved on a log-spaced grid of this many points in [low, high] (linear in log T between)."""

    def __post_init__(self) -> None:
        if self.per not in ("pooled", "country"):
            raise FitterError(f"per must be pooled or country, got {self.per!r}")
        if not 0 < self.low < 1 < self.high:
            raise FitterError(f"need 0 < low < 1 < high, got low={self.low}, high={self.high}")
        if self.grid < 3:
            raise FitterError(f"grid must be >= 3, got {self.grid}")


@dataclass
class _Question:
    qid: str
    human: dict[str, float]            # country -> human NV
    simulated: dict[str, np.ndarray]   # country -> simulated NV at each grid T


def solve(temps: np.ndarray, simulated: np.ndarray, target: float) -> tuple[float, bool]:
    """The T where ``simulated`` (NV at each grid T) meets ``target``; (T, at a bound). NV rises
    with T under the tilt (each respondent's mean is kept, their spread grows); under plain
    temperature scaling it need not, and the running maximum is searched."""
    simulated = np.maximum.accumulate(simulated)
    log_t = np.log(temps)
    if target <= simulated[0]:
        return float(temps[0]), True
    if target >= simulated[-1]:
        return float(temps[-1]), True
    i = int(np.searchsorted(simulated, target))   # simulated[i-1] < target <= simulated[i]
    a, b = simulated[i - 1], simulated[i]
    frac = 0.0 if b == a else (target - a) / (b - a)
    return float(np.exp(log_t[i - 1] + frac * (log_t[i] - log_t[i - 1]))), False


@register_fitter("variance")
class VarianceFitter(Fitter):
    Params = Params
    answer_modes = ("logprob",)

    def fit(self, context: FitContext) -> dict[str, Any]:
        prm = self.params
        temps = np.geomspace(prm.low, prm.high, prm.grid)
        rows = context.answer()
        people = context.respondents.set_index(ID)
        questions, nominal = [], 0
        for qid in context.qids:
            item = context.codebook[qid]
            if item.kind != "ordinal":
                nominal += 1
                continue
            q = self._question(qid, item, rows[rows["qid"] == qid], people, temps)
            if q is not None:
                questions.append(q)
        if len(questions) < 2:
            raise FitterError(f"variance: {len(questions)} ordinal question(s) with real answers in the sample; "
                              "leave-one-question-out needs at least 2")
        groups = sorted({c for q in questions for c in q.human}) if prm.per == "country" else [POOLED]
        per_q: dict[str, dict[str, float]] = {}
        overall: dict[str, float] = {}
        at_bound: list[str] = []
        for group in groups:
            def fitted(subset: list[_Question]) -> tuple[float, bool]:
                pairs = [(q.simulated[c], q.human[c]) for q in subset for c in q.human
                         if group in (POOLED, c)]
                if not pairs:
                    return float("nan"), False
                return solve(temps, np.mean([s for s, _ in pairs], axis=0), float(np.mean([h for _, h in pairs])))

            t_all, bound = fitted(questions)
            if np.isnan(t_all):
                continue
            overall[group] = round(t_all, 6)
            at_bound += [f"{group}:all"] if bound else []
            per_q[group] = {}
            for q in questions:
                if group != POOLED and group not in q.human:
                    continue
                t, bound = fitted([o for o in questions if o is not q])
                if not np.isnan(t):
                    per_q[group][q.qid] = round(t, 6)
                    at_bound += [f"{group}:{q.qid}"] if bound else []
        return {"per": prm.per, "mean_preserving": prm.mean_preserving, "temperatures": per_q,
                "temperature": overall, "at_bound": at_bound, "questions": len(questions),
                "nominal_left_out": nominal, "respondents": int(rows[ID].nunique()),
                "nv_human": {q.qid: {c: round(v, 6) for c, v in q.human.items()} for q in questions}}

    def _question(self, qid: str, item, mine: pd.DataFrame, people: pd.DataFrame,
                  temps: np.ndarray) -> _Question | None:
        if qid not in people or mine.empty:
            return None
        probs = simulated_matrix(mine["option_codes"], mine["probs"], item)
        keep = probs.sum(axis=1) > 0
        probs, mine = probs[keep] / probs[keep].sum(axis=1, keepdims=True), mine[keep]
        k = probs.shape[1]
        weights = people.loc[mine[ID], WEIGHT].to_numpy(dtype=np.float64)
        countries = people.loc[mine[ID], COUNTRY].to_numpy()
        answers = people.loc[mine[ID], qid].to_numpy()
        r = np.arange(k, dtype=np.float64)
        human, simulated = {}, {}
        at_t = [transform(probs, r, float(t), self.params.mean_preserving) for t in temps]
        for country in np.unique(countries):
            m = countries == country
            h = human_distribution(answers[m], weights[m], item)
            if h.sum() <= 0 or weights[m].sum() <= 0:
                continue
            human[str(country)] = float(norm_variance(h / h.sum()))
            simulated[str(country)] = np.array([norm_variance(np.average(q[m], axis=0, weights=weights[m]))
                                                for q in at_t])
        return _Question(qid, human, simulated) if human else None
