"""The model side of a mixture search on one engine replica: each candidate prompt's option
distributions on the scenario's items (logprob mode, the prompt as the system turn), and the
crafter's replies. The Ray pool of the fit job holds one of these per actor."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...engine.base import LM, Decoding, Option, Request
from ...metrics.answers import simulated_matrix
from ...survey.batteries import battery_items
from ...survey.codebook import Codebook
from ..prompts import answer_options, question_turn

CRAFT_DECODING = Decoding(temperature=0.8, top_k=40, max_new_tokens=120)


class EngineBackend:
    def __init__(self, engine: LM, codebook: Codebook, qids: Sequence[str], crafter: LM | None = None) -> None:
        self.engine, self.crafter = engine, crafter or engine
        self.items = [codebook[q] for q in qids]
        batteries = battery_items(codebook)
        self.questions = [question_turn(it, batteries.get(it.id)) for it in self.items]

    def item_distributions(self, prompts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        requests = [Request(prefix=({"role": "system", "content": p},), question=q, options=answer_options(it),
                            qid=it.id)
                    for p in prompts for it, q in zip(self.items, self.questions)]
        scored = iter(self.engine.score(requests))
        out = []
        for _ in prompts:
            probs = {}
            for it in self.items:
                r = next(scored)
                probs[it.id] = simulated_matrix([r.codes], [r.probs], it)[0]
            out.append(probs)
        return out

    def complete(self, turns: Sequence[tuple[str, str, int]]) -> list[str]:
        requests = [Request(prefix=({"role": "system", "content": system},), question=user, options=(Option(0, "-"),),
                            seed=seed)
                    for system, user, seed in turns]
        return [g.text for g in self.crafter.generate(requests, CRAFT_DECODING)]
