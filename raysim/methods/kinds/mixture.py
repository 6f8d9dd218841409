"""Kind ``mixture``: each respondent simulated under one system prompt drawn from a fitted prompt
mixture (``raysim fit`` with the fitter ``mixture``), with the mixture's weights; the draw is a
pure function of (run seed, respondent id).

    kind: mixture            # the run names the fit: fit: FIT

A mixture fitted per country (``group: country``) draws from the respondent's country's
mixture; a respondent from a country the fit has none for is refused by name. In logprob mode a
group's expected distribution is the mixture's own, up to the sampling of the draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...engine.noise import derive_seed
from ...survey.population import COUNTRY, ID
from .base import Answers, MethodError, register_kind
from .prompting import PromptingKind, PromptingParams


@register_kind("mixture")
class MixtureKind(PromptingKind):
    Params = PromptingParams

    @classmethod
    def check(cls, params: PromptingParams, where: str) -> None:
        super().check(params, where)
        if params.language != "en":
            raise MethodError(f"{where}: a mixture's prompts are in the language they were crafted in (language: en)")

    @classmethod
    def resources(cls, params: PromptingParams) -> dict[str, bool]:
        return {"fit": True}

    @classmethod
    def hash_defaults(cls) -> dict[str, Any]:
        return {}

    def __init__(self, spec, engine, setup) -> None:
        super().__init__(spec, engine, setup)
        fit = self.resource("fit")
        if fit.fitter != "mixture":
            raise MethodError(f"method {spec.name!r}: the run's fit {fit.path} was written by the fitter "
                              f"{fit.fitter!r}, not by mixture")
        groups = fit.result.get("groups") or {None: fit.result}
        self.mixtures = {g: self._checked(m, fit.path, g) for g, m in groups.items()}

    @staticmethod
    def _checked(m: dict, path, group) -> tuple[list[str], np.ndarray]:
        prompts, weights = m.get("prompts"), m.get("weights")
        where = f"{path}" + (f" (group {group})" if group else "")
        if (not isinstance(prompts, list) or not isinstance(weights, list) or len(prompts) != len(weights)
                or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts)):
            raise MethodError(f"{where}: a mixture needs prompts and weights lists of the same length")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise MethodError(f"{where}: mixture weights must be >= 0 and not all 0")
        return prompts, np.cumsum(w / w.sum())

    def prompt_for(self, row: dict[str, Any]) -> str:
        key = None if None in self.mixtures else str(row[COUNTRY])
        if key not in self.mixtures:
            raise MethodError(f"the mixture was fitted per country and has none for {key} "
                              f"(it has {sorted(self.mixtures)})")
        prompts, cumulative = self.mixtures[key]
        u = derive_seed(self.setup.seed, f"mixture:{int(row[ID])}") / 2**63   # 63 bits
        return prompts[min(int(np.searchsorted(cumulative, u, side="right")), len(prompts) - 1)]

    def answer(self, rows: list[dict[str, Any]]) -> Answers:
        requests = []
        for row in rows:
            requests += self.requests(int(row[ID]), self.prompt_for(row), None, "en")
        return self.ask(requests)
