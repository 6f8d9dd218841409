"""PE: the demographic profile in the prompt (the PSII paper's persona baseline), answered in
logprob mode: the exact probability of every option, no injection."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.base import LM
from ..survey.batteries import battery_items
from ..survey.codebook import Codebook
from ..survey.population import COUNTRY, ID, WEIGHT
from ..survey.profile import render_profile
from .prompts import persona_prefix, request

METHOD = "pe"


def pe_results(engine: LM, respondents: pd.DataFrame, codebook: Codebook, qids: list[str], *,
               run_id: str, config_hash: str, method: str = METHOD) -> pd.DataFrame:
    """Result rows (respondent × question) with the model's option probabilities."""
    batteries = battery_items(codebook)
    items = [codebook[q] for q in qids]
    requests = []
    for row in respondents.to_dict("records"):
        prefix = persona_prefix(render_profile(row, codebook))
        requests += [request(prefix, it, battery=batteries.get(it.id)) for it in items]
    scored = engine.score(requests)
    k = len(items)
    return pd.DataFrame({
        "run_id": run_id,
        "method": method,
        "config_hash": config_hash,
        "respondent_id": np.repeat(respondents[ID].to_numpy(dtype=np.int64), k),
        "country": np.repeat(respondents[COUNTRY].to_numpy(dtype=object), k),
        "weight": np.repeat(respondents[WEIGHT].to_numpy(dtype=np.float64), k),
        "qid": [it.id for _ in range(len(respondents)) for it in items],
        "option_codes": [list(r.codes) for r in scored],
        "probs": [r.probs.astype(np.float32).tolist() for r in scored],
        "sampled_code": pd.array([None] * len(scored), dtype="Int32"),
        "raw_text": None,
        "valid": True,
    })
