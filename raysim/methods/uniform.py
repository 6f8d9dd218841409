"""The trivial reference simulator: every option equally likely.

Not a method anyone should use to simulate people; it anchors the score scale (what
"knowing nothing" scores) and drives the end-to-end skeleton before a model is loaded.
"""

from __future__ import annotations

import pandas as pd

from ..pipeline.results import result_rows
from ..survey.codebook import Codebook

METHOD = "uniform (trivial baseline)"


def uniform_results(population: pd.DataFrame, codebook: Codebook, qids: list[str], *,
                    run_id: str, config_hash: str) -> pd.DataFrame:
    """Result rows (respondent × question) with uniform probabilities over each item's
    substantive options."""
    codes = [list(codebook[q].codes) for q in qids]
    probs = [[1.0 / len(c)] * len(c) for c in codes]
    n = len(population)
    return result_rows(population, qids, run_id=run_id, method=METHOD, config_hash=config_hash,
                       option_codes=codes * n, probs=probs * n)
