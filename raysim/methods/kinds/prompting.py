"""What the kinds that prompt a model share: the prompt language, decoding parameters of both
answer modes, the question turn, and asking the engine in the run's answer mode.

Everything is a pure function of (run seed, respondent id, question): the prompt language of a
mixed-language method, the sampling seed. A respondent gets the same rows in any batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ...engine.base import Request, Decoding
from ...engine.noise import derive_seed
from ...engine.plan import InjectionPlan, scoped
from ...survey.batteries import battery_items
from ...survey.codebook import Codebook, Item
from ...survey.profile import render_profile, templates_for
from ..prompts import answer_options, question_turn
from ..templates import LANGUAGES, load_prompts
from .base import Answers, MethodError, MethodKind

MIXED = "mixed"


@dataclass(frozen=True)
class Logprob:
    temperature: float = 1.0
    """Options are scored under softmax(logits / T): 1 is the model's own distribution."""


@dataclass(frozen=True)
class Generate:
    temperature: float = 0.7
    top_k: int = 20
    max_new_tokens: int = 10

    def sampling(self) -> Decoding:
        return Decoding(temperature=self.temperature, top_k=self.top_k, max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class PromptingParams:
    language: str = "en"
    """en | zh | ar | es | ru | mixed (drawn per respondent, seeded)."""
    logprob: Logprob = field(default_factory=Logprob)
    generate: Generate = field(default_factory=Generate)


# Before kinds were registered, one spec class held every kind's fields and a run's hash covered
# them all. The built-in kinds keep that layout, so run directories made then still resume.
LAYOUT_BEFORE_KINDS: dict[str, Any] = {
    "system": "pe", "language": "en", "injection": None, "background_tokens": 96,
    "logprob": dataclasses.asdict(Logprob()), "generate": dataclasses.asdict(Generate())}


def prompt_language(language: str, seed: int, respondent_id: int,
                    weights: Mapping[str, float] | None = None) -> str:
    """The respondent's prompt language: ``language``, or for ``mixed`` one of ``LANGUAGES``
    drawn from (seed, respondent id) alone, uniformly or with the mixture ``weights``."""
    if language != MIXED:
        return language
    draw = derive_seed(seed, f"language:{int(respondent_id)}")
    if not weights:
        return LANGUAGES[draw % len(LANGUAGES)]
    unknown = set(weights) - set(LANGUAGES)
    if unknown:
        raise MethodError(f"language_weights name unknown languages {sorted(unknown)} (known: {list(LANGUAGES)})")
    cumulative = np.cumsum([weights.get(lang, 0.0) for lang in LANGUAGES])
    u = draw / 2**63 * cumulative[-1]   # derive_seed gives 63 bits
    return LANGUAGES[min(int(np.searchsorted(cumulative, u, side="right")), len(LANGUAGES) - 1)]


def languages_of(language: str) -> tuple[str, ...]:
    return LANGUAGES if language == MIXED else (language,)


class PromptingKind(MethodKind):
    Params = PromptingParams

    @classmethod
    def check(cls, params: PromptingParams, where: str) -> None:
        if params.language not in (*LANGUAGES, MIXED):
            raise MethodError(f"{where}: language {params.language!r} is not one of {[*LANGUAGES, MIXED]}")
        if not params.logprob.temperature > 0 or not params.generate.temperature > 0:
            raise MethodError(f"{where}: temperatures must be > 0")
        if params.generate.top_k < 0 or params.generate.max_new_tokens < 1:
            raise MethodError(f"{where}: generate.top_k must be >= 0, generate.max_new_tokens >= 1")

    @classmethod
    def resources(cls, params: PromptingParams) -> dict[str, bool]:
        # Questions in other languages come from reviewed translations where the run gives them.
        return {"translations": False} if params.language != "en" else {}

    @classmethod
    def hash_defaults(cls) -> dict[str, Any]:
        return LAYOUT_BEFORE_KINDS

    @classmethod
    def profile_languages(cls, params: PromptingParams) -> tuple[str, ...]:
        """The languages it renders respondents' profiles in (none: it renders no profile)."""
        return ()

    @classmethod
    def check_codebook(cls, params: PromptingParams, codebook: Codebook) -> None:
        # A codebook's own profile is in one language: other languages need templates in them.
        languages = cls.profile_languages(params)
        if languages and languages != ("en",):
            for language in languages:
                templates_for(codebook, language)

    def __init__(self, spec, engine, setup) -> None:
        super().__init__(spec, engine, setup)
        self.batteries = battery_items(setup.codebook)
        self.translations = setup.resources.get("translations")
        self._questions: dict[tuple[str, str], str] = {}

    def language_of(self, respondent_id: int, weights: Mapping[str, float] | None = None) -> str:
        return prompt_language(self.params.language, self.setup.seed, respondent_id, weights)

    def question(self, qid: str, language: str) -> str:
        key = (qid, language)
        if key not in self._questions:
            self._questions[key] = self._render_question(qid, language)
        return self._questions[key]

    def _render_question(self, qid: str, language: str) -> str:
        item: Item = self.codebook[qid]
        battery = self.batteries.get(qid)
        localized = None
        if language != "en" and self.translations is not None:
            localized = self.translations.item(item, battery, language)
        # Without a reviewed translation the item is asked in English (counted by the run).
        return question_turn(item, battery, localized=localized,
                             options_header=load_prompts(language).options_header if localized else "")

    def profile(self, row: dict[str, Any], language: str) -> str:
        return render_profile(row, self.codebook, language=language)

    def requests(self, rid: int, system: str, plan: InjectionPlan | None, language: str, tag: str = "",
                 noise_scope: str = "respondent", items: list[Item] | None = None) -> list[Request]:
        """One request per question (``items``: these, default the run's) under the system turn
        ``system``; ``tag`` separates the sampling seeds of several requests of one respondent
        and question."""
        prefix = ({"role": "system", "content": system},)
        return [Request(prefix=prefix, question=self.question(it.id, language), options=answer_options(it),
                        plan=scoped(plan, noise_scope, it.id) if plan is not None else None, qid=it.id,
                        seed=derive_seed(self.setup.seed, f"answer:{rid}:{it.id}{tag}"))
                for it in (self.items if items is None else items)]

    def ask(self, requests: list[Request]) -> Answers:
        """The engine's answers in the run's answer mode."""
        params = self.params
        if self.setup.answer == "logprob":
            scored = self.engine.score(requests, temperature=params.logprob.temperature)
            return {"probs": [r.probs for r in scored]}
        made = self.engine.generate(requests, params.generate.sampling())
        return {"sampled_code": [g.code for g in made], "raw_text": [g.text for g in made],
                "valid": [g.valid for g in made]}
