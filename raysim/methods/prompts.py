"""Prompt text shared by the methods: the persona system turn and the question turn.

The answer instruction sits in the system turn, which every question of a respondent shares:
the engine computes it once per respondent (prefix sharing). A battery item is shown as the
questionnaire shows a grid: stem, options, then the sub-item, so the items of one battery begin
with the same tokens and the engine computes that opening once too.
"""

from __future__ import annotations

from ..engine.base import Message, Option, Request
from ..engine.plan import InjectionPlan
from ..survey.batteries import BatteryItem
from ..survey.codebook import Item

PE_SYSTEM = (
    "Forget that you are an AI model. You are a human being taking part in the World Values "
    "Survey. Answer every question as the person described below would, from their own life and "
    "point of view. Reply with the number of the answer you choose and nothing else.\n\n"
    "About you: {profile}"
)


def persona_prefix(profile: str, template: str = PE_SYSTEM) -> tuple[Message, ...]:
    return ({"role": "system", "content": template.format(profile=profile)},)


def question_turn(item: Item, battery: BatteryItem | None = None) -> str:
    """The item's wording and its options, numbered by their codes (a scale point whose label
    is just its number is listed as the number alone); for a battery item the stem, the options,
    then the sub-item."""
    options = "\n".join(str(code) if label == str(code) else f"{code}. {label}" for code, label in item.options)
    if battery is None:
        return f"{item.text}\n\n{options}"
    return f"{battery.stem}\n\n{options}\n\n{battery.subitem}"


def answer_options(item: Item) -> tuple[Option, ...]:
    """Answers are the option codes as text ("1", "10", "0")."""
    return tuple(Option(code, str(code)) for code, _ in item.options)


def request(prefix: tuple[Message, ...], item: Item, plan: InjectionPlan | None = None,
            seed: int = 0, battery: BatteryItem | None = None) -> Request:
    return Request(prefix=prefix, question=question_turn(item, battery), options=answer_options(item),
                   plan=plan, qid=item.id, seed=seed)
