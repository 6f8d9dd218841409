"""The quality filter of a persona pool: the model, prompted as each persona, answers questions
about the persona's own attributes (a run of the pool whose questions are attribute items, e.g.
``questions: [Q260, DEGREE, RELIGION]`` with ``method: narrative`` or ``pe``); a persona whose
answers contradict its recorded attributes more than ``tolerance`` times is dropped, and counted.

An answer is the most likely option (logprob runs) or the valid sampled one (generate runs); a
persona contradicts an attribute when that answer is not its own value. Personas the run did not
ask, and attributes a persona has no value for, are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..survey.codebook import Codebook
from ..survey.columns import COUNTRY, ID
from .importance import AlignError


@dataclass(frozen=True)
class QualityCheck:
    dropped: np.ndarray
    """Per pool row: True where the persona is dropped."""
    checked: int
    """Personas with at least one checked answer."""
    contradictions: dict[str, int]
    """Per attribute item: personas whose answer contradicts their value."""

    def summary(self) -> dict:
        return {"checked": self.checked, "dropped": int(self.dropped.sum()), "contradictions": self.contradictions}


def answers(results: pd.DataFrame) -> pd.DataFrame:
    """(country, respondent_id, qid, answer) of each result row that has an answer."""
    if results["probs"].notna().any():
        has = results["probs"].notna()
        best = [int(codes[int(np.argmax(p))]) for codes, p in zip(results.loc[has, "option_codes"],
                                                                   results.loc[has, "probs"])]
        out = results.loc[has, [COUNTRY, ID, "qid"]].assign(answer=best)
    else:
        has = results["valid"].astype(bool) & results["sampled_code"].notna()
        out = results.loc[has, [COUNTRY, ID, "qid"]].assign(answer=results.loc[has, "sampled_code"].astype(int))
    return out.reset_index(drop=True)


def quality_check(results: pd.DataFrame, pool: pd.DataFrame, codebook: Codebook, *, tolerance: int = 0) -> QualityCheck:
    """Which of ``pool``'s personas the run's ``results`` (asking attribute items) contradict."""
    if tolerance < 0:
        raise AlignError(f"the quality tolerance must be ≥ 0 contradictions, got {tolerance}")
    given = answers(results)
    items = [q for q in pd.unique(given["qid"]) if q in pool.columns]
    opinion = [q for q in items if codebook[q].is_opinion]
    if opinion or not items:
        raise AlignError(f"a quality check asks the personas about their attributes (demographic items of the "
                         f"pool); the run asked {opinion[:3] or sorted(pd.unique(given['qid']))[:3]}")
    given = given[given["qid"].isin(items)]
    own = pool[[COUNTRY, ID, *items]].melt(id_vars=[COUNTRY, ID], var_name="qid", value_name="own")
    both = given.merge(own.dropna(subset=["own"]), on=[COUNTRY, ID, "qid"], how="inner")
    if both.empty:
        raise AlignError("no answer of the quality run belongs to a persona of the pool with that attribute: "
                         "was the run made on this pool?")
    both["wrong"] = both["answer"].to_numpy() != both["own"].to_numpy(dtype=np.int64)
    per_persona = both.groupby([COUNTRY, ID])["wrong"].sum()
    bad = per_persona[per_persona > tolerance].index
    keys = pd.MultiIndex.from_frame(pool[[COUNTRY, ID]])
    return QualityCheck(dropped=keys.isin(bad), checked=int(len(per_persona)),
                        contradictions={q: int(both.loc[both["qid"] == q, "wrong"].sum()) for q in items})
