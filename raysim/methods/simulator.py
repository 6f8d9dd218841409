"""A method at work: a batch of respondents → result rows (respondent × question).

``Simulator`` is built once per model replica from a ``MethodSpec`` and a ``Setup`` (what the run
fixes: questions, answer mode, seed, and the resources the method's kind declared). The kind
(``raysim.methods.kinds``) turns the respondents into engine requests and the engine's answers
into one answer per respondent and question, in the run's answer mode:

* ``logprob``: the exact probability of every option;
* ``generate``: a sampled answer parsed to an option code, an unparseable answer kept as invalid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.base import LM
from ..runs.results import result_rows
from ..survey.population import records
from .kinds import ANSWER_MODES, MethodError, MethodKind, Setup
from .spec import MethodSpec

__all__ = ["Setup", "Simulator"]


class Simulator:
    def __init__(self, spec: MethodSpec, engine: LM | None, setup: Setup) -> None:
        if setup.answer not in ANSWER_MODES:
            raise MethodError(f"answer mode {setup.answer!r} is not one of {list(ANSWER_MODES)}")
        if spec.needs_model and engine is None:
            raise MethodError(f"method {spec.name!r} needs a model")
        self.spec, self.setup = spec, setup
        self.kind: MethodKind = spec.kind_class(spec, engine if spec.needs_model else None, setup)
        self.label = self.kind.label()

    def __call__(self, respondents: pd.DataFrame, run_id: str, config_hash: str) -> pd.DataFrame:
        """Result rows for ``respondents`` (in their order), every question each."""
        answers = self.kind.answer(records(respondents))
        codes = [list(it.codes) for it in self.kind.items] * len(respondents)
        probs = answers.get("probs")
        return result_rows(respondents, list(self.setup.qids), run_id=run_id, method=self.label,
                           config_hash=config_hash, option_codes=codes,
                           probs=[np.asarray(p).astype(np.float32).tolist() for p in probs] if probs is not None else None,
                           sampled_code=answers.get("sampled_code"), raw_text=answers.get("raw_text"),
                           valid=answers.get("valid", True))
