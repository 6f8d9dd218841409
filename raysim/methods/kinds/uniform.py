"""Kind ``uniform``: every option equally likely, no model.

Not a method anyone should use to simulate people; it anchors the score scale (what "knowing
nothing" scores) and drives the end-to-end skeleton before a model is loaded. In generate mode
each row draws an option uniformly, a pure function of (seed, respondent, question).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...engine.noise import derive_seed
from ...survey.population import ID
from .base import Answers, MethodKind, register_kind
from .prompting import LAYOUT_BEFORE_KINDS

LABEL = "uniform (trivial baseline)"


@register_kind("uniform")
class UniformKind(MethodKind):
    needs_model = False

    @classmethod
    def hash_defaults(cls) -> dict[str, Any]:
        return LAYOUT_BEFORE_KINDS

    def label(self) -> str:
        return LABEL

    def answer(self, rows: list[dict[str, Any]]) -> Answers:
        codes = [list(it.codes) for it in self.items]
        if self.setup.answer == "logprob":
            return {"probs": [np.full(len(c), 1.0 / len(c)) for c in codes] * len(rows)}
        seed = self.setup.seed
        return {"sampled_code": [c[np.random.default_rng(derive_seed(seed, f"answer:{int(row[ID])}:{q}")).integers(len(c))]
                                 for row in rows for q, c in zip(self.setup.qids, codes)]}
