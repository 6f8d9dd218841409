"""PE: the demographic profile in the prompt (the PSII paper's persona baseline), answered in
logprob mode: the exact probability of every option, no injection."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.base import LM
from ..pipeline.results import result_rows
from ..survey.batteries import battery_items
from ..survey.codebook import Codebook
from ..survey.profile import render_profile
from .prompts import persona_prefix, request

METHOD = "pe"


def pe_results(engine: LM, respondents: pd.DataFrame, codebook: Codebook, qids: list[str], *,
               run_id: str, config_hash: str, method: str = METHOD) -> pd.DataFrame:
    """Result rows (respondent × question) with the model's option probabilities."""
    batteries = battery_items(codebook)
    items = [codebook[q] for q in qids]
    requests = []
    for row in respondents.to_dict("records"):   # respondent-major, as result_rows expects
        prefix = persona_prefix(render_profile(row, codebook))
        requests += [request(prefix, it, battery=batteries.get(it.id)) for it in items]
    scored = engine.score(requests)
    return result_rows(respondents, qids, run_id=run_id, method=method, config_hash=config_hash,
                       option_codes=[list(r.codes) for r in scored],
                       probs=[r.probs.astype(np.float32).tolist() for r in scored])
