"""The number a search minimises: the configured combination of mean KL and mean entropy
deviation (ED) between the simulated and the real answers of a respondent sample, pooled over
countries (or over the sample as one group). Computed by ``raysim.metrics.scores.score``, the
same code that scores runs, so a trial's figure is the one a run of its preset would report."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..metrics.scores import OVERALL, POOLED, Scores, group_column, score
from ..survey.codebook import Codebook
from .config import Objective


@dataclass(frozen=True)
class Evaluation:
    objective: float
    kl: float
    ed: float
    respondents: int
    scores: Scores

    def metrics(self) -> dict[str, float]:
        return {"objective": self.objective, "kl": self.kl, "ed": self.ed, "respondents": self.respondents}

    def overall(self, metric: str) -> float:
        """A metric's pooled figure (country ALL, category Overall)."""
        return _overall(self.scores).at[metric, "value"]


def _overall(scores: Scores) -> pd.DataFrame:
    t = scores.table
    return t[(t[group_column(t)] == POOLED) & (t["category"] == OVERALL)].set_index("metric")


def score_mode(answer: str) -> str:
    return "sampled" if answer == "generate" else "probs"


def evaluate(rows: pd.DataFrame, population: pd.DataFrame, codebook: Codebook, objective: Objective, *,
             answer: str = "logprob", n_boot: int = 1, seed: int = 0) -> Evaluation:
    """``rows`` (result rows of one method) scored against ``population`` (the same respondents'
    real answers). A search needs the point values only (``n_boot`` 1); a report, intervals."""
    scores = score(rows, population, codebook, mode=score_mode(answer), n_boot=n_boot, seed=seed, by=objective.by)
    overall = _overall(scores)
    kl, ed = float(overall.at["kl", "value"]), float(overall.at["ed", "value"])
    return Evaluation(objective(kl, ed), kl, ed, int(overall.at["kl", "n_respondents"]), scores)
