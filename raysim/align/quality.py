"""Model-answered attributes of a persona pool: the model, prompted as each persona, answers
questions about the persona's own attributes (a run of the pool whose questions are attribute
items, e.g. ``questions: [Q260, DEGREE]`` with ``method: narrative`` or ``pe``).

- The quality filter: a persona whose answers contradict its recorded attributes more than
  ``tolerance`` times is dropped, and counted.
- A persona with no value for an attribute (a mixture prompt's, raysim.align.pools) takes the
  model's answer as its value, and is counted.

An answer is the most likely option (logprob runs) or the valid sampled one (generate runs).
Personas the run did not ask are kept unchecked.
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
    pool: pd.DataFrame
    """The pool with the attributes it lacked answered (its rows in the same order)."""
    dropped: np.ndarray
    """Per pool row: True where the persona is dropped."""
    checked: int
    """Personas with at least one recorded attribute checked."""
    contradictions: dict[str, int]
    """Per attribute item: personas whose answer contradicts their value."""
    answered: dict[str, int]
    """Per attribute item: personas that lacked a value and took the model's answer."""

    def summary(self) -> dict:
        return {"checked": self.checked, "dropped": int(self.dropped.sum()), "contradictions": self.contradictions,
                "answered": self.answered}


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
    """Check ``pool``'s recorded attributes against the run's ``results`` and fill those it lacks."""
    if tolerance < 0:
        raise AlignError(f"the quality tolerance must be ≥ 0 contradictions, got {tolerance}")
    given = answers(results)
    items = [q for q in pd.unique(given["qid"]) if q in pool.columns]
    opinion = [q for q in items if codebook[q].is_opinion]
    if opinion or not items:
        raise AlignError(f"a quality check asks the personas about their attributes (demographic items of the "
                         f"pool); the run asked {opinion[:3] or sorted(pd.unique(given['qid']))[:3]}")
    keys = pd.MultiIndex.from_frame(pool[[COUNTRY, ID]])
    given = given[given["qid"].isin(items)]
    given = given.assign(row=keys.get_indexer(pd.MultiIndex.from_frame(given[[COUNTRY, ID]])))
    given = given[given["row"] >= 0]
    if given.empty:
        raise AlignError("no answer of the quality run belongs to a persona of the pool: was the run made on this pool?")
    own = _own(pool, given)
    recorded = ~np.isnan(own)
    wrong = recorded & (given["answer"].to_numpy() != np.nan_to_num(own))
    per_persona = pd.Series(wrong).groupby(given["row"].to_numpy()).sum()
    checked = pd.unique(given["row"].to_numpy()[recorded])
    dropped = np.zeros(len(pool), dtype=bool)
    dropped[per_persona[per_persona > tolerance].index.to_numpy()] = True
    filled = pool.copy()
    for q in items:
        fill = (~recorded) & (given["qid"] == q).to_numpy()
        if fill.any():
            column = filled[q].to_numpy(dtype=np.float64, na_value=np.nan)
            column[given["row"].to_numpy()[fill]] = given["answer"].to_numpy()[fill]
            filled[q] = pd.array(np.where(np.isnan(column), None, column), dtype="Int32")
    qid = given["qid"].to_numpy()
    return QualityCheck(pool=filled, dropped=dropped, checked=int(len(checked)),
                        contradictions={q: int(wrong[qid == q].sum()) for q in items},
                        answered={q: int(((~recorded) & (qid == q)).sum()) for q in items})


def _own(pool: pd.DataFrame, given: pd.DataFrame) -> np.ndarray:
    """Each answer's persona's recorded value of the item (NaN where it has none)."""
    out = np.full(len(given), np.nan)
    for q, at in given.groupby("qid").indices.items():
        out[at] = pool[q].to_numpy(dtype=np.float64, na_value=np.nan)[given["row"].to_numpy()[at]]
    return out
