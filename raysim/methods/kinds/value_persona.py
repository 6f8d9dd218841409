"""Kind ``value_persona`` (paper: calibrated value personas): a respondent described to the model
by one-sentence descriptors of their answers to the Inglehart–Welzel value items, under a
guidance instruction; and the paper's comparison prompts on the same respondents.

    kind: value_persona
    prompt: descriptors      # descriptors | generic_roleplay | country_roleplay | sociodemographic | few_shot_raw
    guidance: social_science # social_science | roleplay | none (the framing before the persona)
    country: true            # the persona names the respondent's country
    descriptors: shipped     # or a descriptors YAML (`raysim personas descriptors` writes alternatives)

The persona never carries the question being asked: for a question among the value items, the
descriptors of that question's indicator (e.g. all four child qualities of the autonomy index) are
left out of its prompt. A country's predicted distribution is the weighted mean over its sampled
personas, which is what the scorer computes from the result rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from ...metrics.iw_map import INDICATORS, MAP_ITEMS
from ...survey.codebook import Codebook
from ...survey.countries import load_countries
from ...survey.population import COUNTRY, ID
from ...survey.profile import profile_columns
from ...yamlfile import load_yaml
from .base import Answers, MethodError, register_kind
from .prompting import PromptingKind, PromptingParams

PROMPTS = ("descriptors", "generic_roleplay", "country_roleplay", "sociodemographic", "few_shot_raw")
GUIDANCE = {
    "social_science": ("This is a social-science simulation of a survey. Answer every question as the person "
                       "described below would, from their values and circumstances, not from what is typical or "
                       "expected."),
    "roleplay": "Role-play the person described below and answer every survey question as they would.",
    "none": "",
}
GENERIC_ROLEPLAY = "Pretend you are a person taking part in a survey, and answer the question as that person would."
COUNTRY_ROLEPLAY = ("Pretend you are a typical person living in {country}, and answer the survey question as that "
                    "person would.")
SHIPPED = "shipped"
DESCRIPTORS_FORMAT = "raysim-descriptors/1"


@dataclass(frozen=True)
class ValuePersonaParams(PromptingParams):
    prompt: str = "descriptors"
    guidance: str = "social_science"
    country: bool = True
    descriptors: str = SHIPPED


def shipped_descriptors() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "value_descriptors.yaml"


@lru_cache(maxsize=8)
def load_descriptors(location: str) -> dict[str, dict[int, str]]:
    """qid → option code → descriptor, from a descriptors YAML (checked against its schema)."""
    path = shipped_descriptors() if location == SHIPPED else Path(location)
    if not path.is_file():
        raise MethodError(f"descriptors file {location!r} does not exist")
    doc = load_yaml(path)
    if not isinstance(doc, dict) or doc.get("format") != DESCRIPTORS_FORMAT or not isinstance(doc.get("items"), dict):
        raise MethodError(f"{path}: not a descriptors file (format: {DESCRIPTORS_FORMAT}, items: {{QID: ...}})")
    out = {}
    for qid, entry in doc["items"].items():
        texts = entry.get("descriptors") if isinstance(entry, dict) else None
        if not isinstance(texts, dict) or not all(isinstance(c, int) and isinstance(t, str) and t.strip()
                                                   for c, t in texts.items()):
            raise MethodError(f"{path}: item {qid}: descriptors must map option codes to sentences")
        out[str(qid)] = {int(c): t.strip() for c, t in texts.items()}
    missing = [q for q in MAP_ITEMS if q not in out]
    if missing:
        raise MethodError(f"{path}: no descriptors for item(s) {missing}")
    return out


def _indicator_items() -> dict[str, tuple[str, ...]]:
    """qid → the items of its indicator (left out together when one of them is asked)."""
    return {q: ind.items for ind in INDICATORS for q in ind.items}


@register_kind("value_persona")
class ValuePersonaKind(PromptingKind):
    Params = ValuePersonaParams

    @classmethod
    def check(cls, params: ValuePersonaParams, where: str) -> None:
        super().check(params, where)
        if params.prompt not in PROMPTS:
            raise MethodError(f"{where}: prompt {params.prompt!r} is not one of {list(PROMPTS)}")
        if params.guidance not in GUIDANCE:
            raise MethodError(f"{where}: guidance {params.guidance!r} is not one of {list(GUIDANCE)}")
        if params.language != "en":
            raise MethodError(f"{where}: value personas are written in English (language: en)")
        if params.prompt == "descriptors":
            load_descriptors(params.descriptors)

    @classmethod
    def hash_defaults(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def columns(cls, params: ValuePersonaParams, codebook: Codebook) -> list[str]:
        if params.prompt in ("descriptors", "few_shot_raw"):
            return [q for q in MAP_ITEMS if q in codebook.items]
        return profile_columns(codebook) if params.prompt == "sociodemographic" else []

    @classmethod
    def profile_languages(cls, params: ValuePersonaParams) -> tuple[str, ...]:
        return ("en",) if params.prompt == "sociodemographic" else ()

    def __init__(self, spec, engine, setup) -> None:
        super().__init__(spec, engine, setup)
        self.descriptors = load_descriptors(self.params.descriptors) if self.params.prompt == "descriptors" else {}
        self.countries = load_countries()
        self.leave_out = _indicator_items()

    def country_name(self, code: str) -> str:
        known = self.countries.get(code)
        return known.name if known else code

    def persona(self, row: dict[str, Any], asked: str | None) -> str:
        """The persona of ``row`` for the question ``asked`` (its indicator's items left out)."""
        skip = set(self.leave_out.get(asked, ()))
        sentences = []
        if self.params.country:
            sentences.append(f"You live in {self.country_name(row[COUNTRY])}.")
        for qid in MAP_ITEMS:
            answer = row.get(qid)
            if qid in skip or answer is None or pd.isna(answer) or int(answer) < 0:   # unanswered: nothing said
                continue
            if self.params.prompt == "descriptors":
                text = self.descriptors[qid].get(int(answer))
                if text:
                    sentences.append(text)
            else:   # few_shot_raw: the question and the answer as the respondent gave it
                item = self.codebook[qid]
                label = dict(item.options).get(int(answer))
                if label:
                    sentences.append(f"Q: {item.text}\nA: {label}")
        joiner = "\n" if self.params.prompt == "few_shot_raw" else " "
        return joiner.join(sentences)

    def system(self, row: dict[str, Any], asked: str) -> str:
        prompt, guidance = self.params.prompt, GUIDANCE[self.params.guidance]
        if prompt == "generic_roleplay":
            return GENERIC_ROLEPLAY
        if prompt == "country_roleplay":
            return COUNTRY_ROLEPLAY.format(country=self.country_name(row[COUNTRY]))
        if prompt == "sociodemographic":
            body = self.profile(row, "en")
        elif prompt == "few_shot_raw":
            body = "Your answers to other survey questions:\n" + self.persona(row, asked)
        else:
            body = self.persona(row, asked)
        return f"{guidance}\n\n{body}" if guidance else body

    def answer(self, rows: list[dict[str, Any]]) -> Answers:
        requests = []
        for row in rows:
            rid = int(row[ID])
            for item in self.items:
                requests += self.requests(rid, self.system(row, item.id), None, "en", items=[item])
        return self.ask(requests)
