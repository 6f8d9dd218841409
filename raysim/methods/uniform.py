"""The trivial reference simulator: every option equally likely.

Not a method anyone should use to simulate people; it anchors the score scale (what
"knowing nothing" scores) and drives the end-to-end skeleton before a model is loaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..survey.codebook import Codebook
from ..survey.population import COUNTRY, ID, WEIGHT

METHOD = "uniform (trivial baseline)"


def uniform_results(population: pd.DataFrame, codebook: Codebook, qids: list[str], *,
                    run_id: str, config_hash: str) -> pd.DataFrame:
    """Result rows (respondent × question) with uniform probabilities over each item's
    substantive options."""
    items = [codebook[q] for q in qids]
    n, k = len(population), len(items)
    codes = [list(it.codes) for it in items]
    probs = [[1.0 / len(c)] * len(c) for c in codes]
    return pd.DataFrame({
        "run_id": run_id,
        "method": METHOD,
        "config_hash": config_hash,
        "respondent_id": np.repeat(population[ID].to_numpy(dtype=np.int64), k),
        "country": np.repeat(population[COUNTRY].to_numpy(dtype=object), k),
        "weight": np.repeat(population[WEIGHT].to_numpy(dtype=np.float64), k),
        "qid": np.tile(np.array(qids, dtype=object), n),
        "option_codes": codes * n,
        "probs": probs * n,
        "sampled_code": pd.array([None] * (n * k), dtype="Int32"),
        "raw_text": None,
        "valid": True,
    })
