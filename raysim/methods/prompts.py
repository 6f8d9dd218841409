"""Prompt text shared by the methods: the system turn and the question turn.

The answer instruction sits in the system turn, which every question of a respondent shares:
the engine computes it once per respondent (prefix sharing). A battery item is shown as the
questionnaire shows a grid: stem, options, then the sub-item, so the items of one battery begin
with the same tokens and the engine computes that opening once too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.base import Message, Option, Request
from ..engine.plan import InjectionPlan
from ..survey.batteries import BatteryItem
from ..survey.codebook import Item
from .templates import PromptTemplates, load_prompts

if TYPE_CHECKING:
    from .translation import LocalizedItem


def system_text(templates: PromptTemplates, system: str, profile: str | None = None) -> str:
    """The system turn of ``system`` (direct, divreq, pe); pe takes the respondent's profile."""
    if system == "pe":
        if profile is None:
            raise ValueError("the pe system turn needs a profile")
        return templates.pe_system.format(profile=profile)
    return {"direct": templates.direct_system, "divreq": templates.divreq_system}[system]


def persona_prefix(profile: str, language: str = "en") -> tuple[Message, ...]:
    """PE's system turn in ``language``."""
    return ({"role": "system", "content": system_text(load_prompts(language), "pe", profile)},)


def question_turn(item: Item, battery: BatteryItem | None = None, *, localized: LocalizedItem | None = None,
                  options_header: str = "") -> str:
    """The item's wording and its options, numbered by their codes (a scale point whose label
    is just its number is listed as the number alone); for a battery item the stem, the options,
    then the sub-item. ``localized`` gives the same parts in another language."""
    options = localized.options if localized else item.options
    listed = "\n".join(str(code) if label == str(code) else f"{code}. {label}" for code, label in options)
    if options_header:
        listed = f"{options_header}\n{listed}"
    stem, subitem = ((localized.stem, localized.subitem) if localized else
                     (battery.stem, battery.subitem) if battery else (None, None))
    if battery is None or stem is None:
        return f"{localized.text if localized else item.text}\n\n{listed}"
    return f"{stem}\n\n{listed}\n\n{subitem}"


def answer_options(item: Item) -> tuple[Option, ...]:
    """Answers are the option codes as text ("1", "10", "0")."""
    return tuple(Option(code, str(code)) for code, _ in item.options)


def request(prefix: tuple[Message, ...], item: Item, plan: InjectionPlan | None = None,
            seed: int = 0, battery: BatteryItem | None = None) -> Request:
    return Request(prefix=prefix, question=question_turn(item, battery), options=answer_options(item),
                   plan=plan, qid=item.id, seed=seed)
