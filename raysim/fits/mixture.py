"""Fitter ``mixture`` (paper: prompt mixture modelling): the observed answer distribution of a
scenario as a weighted mixture of crafted system prompts, found by EM or gradient boosting
(``raysim.methods.mixture.search``), weights by SLSQP and, beside it, by a Ray Tune search.

    fitter: mixture
    params:
      algorithm: em            # em | gb
      k: 3                     # EM: the number of prompts; GB: the most rounds
      iterations: 20           # EM's most iterations
      targets: [Q1, Q2]        # items, or scales {scale: NAME, items: [...], reverse: [...]}; default the run's questions
      heldout: [Q2]            # targets evaluated with the fitted mixture, not fitted to
      group: pooled            # pooled | country (one mixture per country of the sample)
      tune_samples: 32         # 0: no Tune search of the weights
      crafter: null            # a local instruct model (name_or_path) writing the prompts; null: the run's model

The run of the fit config (``run:``) is the calibration sample and a baseline: its method
(a fixed system prompt such as ``direct``) is scored beside the mixture on every target, with the
default prompt alone, uniform answers and the human noise floor. ``result`` holds ``prompts`` and
``weights`` (in the same order; per country under ``groups`` with ``group: country``), the
objective per iteration, the crafting counts and that evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.answers import simulated_matrix
from ..metrics.distributions import w1
from ..methods.mixture.scenario import POOLED, Observed, ScenarioError, Target, noise_floor, observe, parse_targets
from ..methods.mixture.search import Distributions, Fitted, Search
from ..methods.mixture.weights import mixture
from ..survey.columns import COUNTRY, ID, WEIGHT
from .base import FitContext, Fitter, FitterError, register_fitter

ALGORITHMS = ("em", "gb")
DEFAULT_PROMPT = "You are a person taking part in a survey."


@dataclass(frozen=True)
class MixtureParams:
    algorithm: str = "em"
    k: int = 3
    iterations: int = 20
    targets: list[Any] | None = None
    heldout: list[str] = field(default_factory=list)
    group: str = "pooled"
    default_prompt: str = DEFAULT_PROMPT
    sharpness: float = 10.0
    attempts: int = 3
    tune_samples: int = 0
    crafter: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise FitterError(f"algorithm {self.algorithm!r} is not one of {list(ALGORITHMS)}")
        if not 1 <= self.k <= 50 or not 1 <= self.iterations <= 20:
            raise FitterError(f"need 1 <= k <= 50 and 1 <= iterations <= 20, got k={self.k}, iterations={self.iterations}")
        if self.group not in ("pooled", "country"):
            raise FitterError(f"group {self.group!r} is not pooled or country")
        if self.sharpness <= 0 or self.attempts < 1 or self.tune_samples < 0:
            raise FitterError("need sharpness > 0, attempts >= 1, tune_samples >= 0")
        if not self.default_prompt.strip():
            raise FitterError("default_prompt is empty")


@register_fitter("mixture")
class MixtureFitter(Fitter):
    Params = MixtureParams
    answer_modes = ("logprob",)

    @classmethod
    def models(cls, params: MixtureParams) -> list[str]:
        return [params.crafter] if params.crafter else []

    @classmethod
    def fitted_items(cls, result: dict[str, Any]) -> list[str] | None:
        scenario = result.get("scenario") or {}
        heldout = set(scenario.get("heldout") or [])
        items: list[str] = []
        for t in scenario.get("targets") or []:
            name, members = (t["scale"], t["items"]) if isinstance(t, dict) else (t, [t])
            if name not in heldout:
                items += [q for q in members if q not in items]
        return items

    def fit(self, context: FitContext) -> dict[str, Any]:
        p: MixtureParams = self.params
        try:
            targets = parse_targets(p.targets or list(context.qids), context.codebook, "params.targets")
        except ScenarioError as e:
            raise FitterError(str(e)) from None
        asked = set(context.qids)
        missing = sorted({it.id for t in targets for it in t.items} - asked)
        if missing:
            raise FitterError(f"params.targets: items {missing} are not among the run's questions")
        names = [t.name for t in targets]
        if set(p.heldout) - set(names):
            raise FitterError(f"params.heldout: {sorted(set(p.heldout) - set(names))} are not targets ({names})")
        fitted_idx = [j for j, t in enumerate(targets) if t.name not in p.heldout]
        if not fitted_idx:
            raise FitterError("params.heldout: every target is held out; nothing to fit to")
        people = context.respondents
        groups = [POOLED] if p.group == "pooled" else sorted(people[COUNTRY].astype(str).unique())
        baseline = _run_distributions(context, targets)
        out: dict[str, dict] = {}
        with context.prompt_backend(p.crafter) as backend:
            every_target = Distributions(backend, targets)   # shared by the groups: each prompt asked once
            for group in groups:
                try:
                    observed = observe(targets, people, group)
                except ScenarioError as e:
                    raise FitterError(str(e)) from None
                fit_obs = Observed(group, observed.positions[:, fitted_idx], observed.weights,
                                   [observed.distributions[j] for j in fitted_idx])
                search = Search([targets[j] for j in fitted_idx], fit_obs, backend, seed=p.seed,
                                attempts=p.attempts, sharpness=p.sharpness)
                found = search.em(p.k, p.iterations) if p.algorithm == "em" else search.boost(p.default_prompt, p.k)
                tuned = None
                if p.tune_samples:
                    comps = search.dists(found.prompts)
                    tuned = context.search_weights(comps, fit_obs.distributions, p.tune_samples, p.seed)
                out[group] = _group_result(found, tuned, targets, fitted_idx, observed, every_target, p.default_prompt,
                                           baseline.get(group), p.seed)
        common = {"algorithm": p.algorithm, "crafter": p.crafter or "the run's model",
                  "scenario": {"targets": [_describe(t) for t in targets], "heldout": list(p.heldout),
                               "group": p.group, "respondents": int(len(people))}}
        if p.group == "pooled":
            return {**out[POOLED], **common}
        return {"groups": out, **common}


def _describe(t: Target) -> Any:
    if not t.is_scale:
        return t.name
    return {"scale": t.title, "items": [it.id for it in t.items], "reverse": sorted(t.reverse)}


def _r(x: float) -> float:
    return round(float(x), 6)


def _group_result(found: Fitted, tuned: tuple[np.ndarray, float] | None, targets: list[Target], fitted_idx: list[int],
                  observed: Observed, dists: Distributions, default_prompt: str,
                  baseline: list[np.ndarray] | None, seed: int) -> dict[str, Any]:
    comps = dists(found.prompts)
    default = dists([default_prompt])
    candidates = {"mixture": mixture(comps, found.weights), "default prompt": [d[0] for d in default],
                  "uniform": [t.distribution({it.id: np.full(len(it.codes), 1 / len(it.codes)) for it in t.items})
                              for t in targets]}
    if tuned is not None:
        candidates["mixture (tune weights)"] = mixture(comps, tuned[0])
    if baseline is not None:
        candidates["run's method"] = baseline
    rows = []
    for j, t in enumerate(targets):
        role = "fitted" if j in fitted_idx else "heldout"
        floor = noise_floor(observed, j, seed=seed)
        for name, dist in candidates.items():
            d = float(w1(dist[j], observed.distributions[j]))
            rows.append({"target": t.name, "role": role, "method": name, "w1": _r(d), "w1_points": _r(d * (t.size - 1)),
                         "noise_floor": _r(floor)})
    table = pd.DataFrame(rows)
    summary = {role: {m: round(float(v), 6) for m, v in table[table["role"] == role].groupby("method")["w1"].mean().items()}
               for role in ("fitted", "heldout") if (table["role"] == role).any()}
    result = {"prompts": list(found.prompts), "weights": [_r(w) for w in found.weights],
              "objective": [{k: (_r(v) if isinstance(v, float) else v) for k, v in h.items()} for h in found.history],
              "stopped": found.stopped, "crafting": found.crafting, "evaluation": rows, "summary": summary}
    if tuned is not None:
        result["weights_tune"] = [_r(w) for w in tuned[0]]
        result["objective_tune"] = _r(tuned[1])
    return result


def _run_distributions(context: FitContext, targets: list[Target]) -> dict[str, list[np.ndarray]]:
    """Per group (each country and POOLED), each target's distribution under the run's own method:
    the weighted mean over respondents of their target distributions (a scale's from each
    respondent's own item distributions)."""
    rows = context.answer()
    if rows.empty or "probs" not in rows:
        return {}
    people = context.respondents.set_index(ID)
    per = {}
    for qid, mine in rows.groupby("qid"):
        item = context.codebook[qid]
        m = simulated_matrix([item.codes] * len(mine), mine["probs"].map(np.asarray), item)
        per[qid] = pd.Series(list(m), index=mine[ID].to_numpy())
    ids = people.index.intersection(per[next(iter(per))].index) if per else people.index
    out: dict[str, list[np.ndarray]] = {}
    for group in [POOLED, *sorted(people.loc[ids, COUNTRY].astype(str).unique())]:
        chosen = ids if group == POOLED else ids[people.loc[ids, COUNTRY].astype(str).to_numpy() == group]
        w = people.loc[chosen, WEIGHT].to_numpy(dtype=np.float64)
        dists = []
        for t in targets:
            each = np.stack([t.distribution({it.id: per[it.id][rid] for it in t.items}) for rid in chosen])
            dists.append(np.average(each, axis=0, weights=w))
        out[group] = dists
    return out
