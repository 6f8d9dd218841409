"""The trivial reference simulator: every option equally likely.

Not a method anyone should use to simulate people; it anchors the score scale (what
"knowing nothing" scores) and drives the end-to-end skeleton before a model is loaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.noise import derive_seed
from ..runs.results import result_rows
from ..survey.codebook import Codebook

METHOD = "uniform (trivial baseline)"


def uniform_results(population: pd.DataFrame, codebook: Codebook, qids: list[str], *,
                    run_id: str, config_hash: str, sample_seed: int | None = None) -> pd.DataFrame:
    """Result rows (respondent × question) with uniform probabilities over each item's
    substantive options; with ``sample_seed``, instead a uniformly drawn option per row (generate
    mode), a pure function of (seed, respondent, question)."""
    codes = [list(codebook[q].codes) for q in qids]
    n = len(population)
    if sample_seed is None:
        probs = [[1.0 / len(c)] * len(c) for c in codes]
        return result_rows(population, qids, run_id=run_id, method=METHOD, config_hash=config_hash,
                           option_codes=codes * n, probs=probs * n)
    drawn = [c[np.random.default_rng(derive_seed(sample_seed, f"answer:{int(rid)}:{q}")).integers(len(c))]
             for rid in population["respondent_id"] for q, c in zip(qids, codes)]
    return result_rows(population, qids, run_id=run_id, method=METHOD, config_hash=config_hash,
                       option_codes=codes * n, probs=None, sampled_code=drawn)
