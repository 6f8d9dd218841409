"""Kind ``simvbg``: the model first writes a background story from the respondent's profile; each
question is then answered three times, with a cognitive, an affective and a behavioural framing
after the profile and story, and the three answers aggregated (logprob: mean of the three
distributions; generate: majority vote, a tie going to the framing listed first).

    kind: simvbg
    language: en
    background_tokens: 96   # the length limit of the background story
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...engine.base import Option, Request, Decoding
from ...engine.noise import derive_seed
from ...survey.codebook import Codebook
from ...survey.population import ID
from ...survey.profile import profile_columns
from ..prompts import system_text
from ..templates import PromptTemplates, load_prompts
from .base import Answers, MethodError, register_kind
from .prompting import PromptingKind, PromptingParams, languages_of

FRAMINGS = ("cognitive", "affective", "behavioral")


@dataclass(frozen=True)
class SimvbgParams(PromptingParams):
    background_tokens: int = 96


def majority(codes: list[int | None]) -> int | None:
    """The most frequent valid answer; a tie goes to the one given first."""
    valid = [c for c in codes if c is not None]
    if not valid:
        return None
    counts = Counter(valid)
    top = max(counts.values())
    return next(c for c in valid if counts[c] == top)


@register_kind("simvbg")
class SimvbgKind(PromptingKind):
    Params = SimvbgParams

    @classmethod
    def check(cls, params: SimvbgParams, where: str) -> None:
        super().check(params, where)
        if params.background_tokens < 1:
            raise MethodError(f"{where}: background_tokens must be >= 1")

    @classmethod
    def columns(cls, params: SimvbgParams, codebook: Codebook) -> list[str]:
        return profile_columns(codebook)

    @classmethod
    def profile_languages(cls, params: SimvbgParams) -> tuple[str, ...]:
        return languages_of(params.language)

    def backgrounds(self, rows: list[dict[str, Any]]) -> list[str]:
        """Step 1: each respondent's background story, written by the model from the profile."""
        params, seed = self.params, self.setup.seed
        requests = []
        for row in rows:
            language = self.language_of(int(row[ID]))
            prompt = load_prompts(language).simvbg_background.format(profile=self.profile(row, language))
            requests.append(Request(prefix=(), question=prompt, options=(Option(0, "-"),),
                                    seed=derive_seed(seed, f"background:{int(row[ID])}")))
        sampling = Decoding(temperature=params.generate.temperature, top_k=params.generate.top_k,
                            max_new_tokens=params.background_tokens)
        return [g.text for g in self.engine.generate(requests, sampling)]

    def framed_requests(self, row: dict[str, Any], story: str) -> list[Request]:
        """Step 2 for one respondent: per framing, per question, a request whose system turn holds
        the profile, the story and the framing."""
        rid = int(row[ID])
        language = self.language_of(rid)
        t: PromptTemplates = load_prompts(language)
        persona = system_text(t, "pe", f"{self.profile(row, language)}\n\n{story}".strip())
        return [r for framing in FRAMINGS
                for r in self.requests(rid, f"{persona}\n\n{getattr(t, 'simvbg_' + framing)}", None, language,
                                       tag=f":{framing}")]

    def answer(self, rows: list[dict[str, Any]]) -> Answers:
        k, n_q = len(FRAMINGS), len(self.items)
        answers = self.ask([r for row, story in zip(rows, self.backgrounds(rows))
                            for r in self.framed_requests(row, story)])

        def per(values: list) -> list[list]:
            # requests are respondent-major, then framing, then question
            return [[values[(r * k + f) * n_q + q] for f in range(k)] for r in range(len(rows)) for q in range(n_q)]

        if "probs" in answers:
            return {"probs": [np.mean(ps, axis=0) for ps in per(answers["probs"])]}
        codes = [majority(cs) for cs in per(answers["sampled_code"])]
        return {"sampled_code": codes, "raw_text": [" | ".join(ts) for ts in per(answers["raw_text"])],
                "valid": [c is not None for c in codes]}
