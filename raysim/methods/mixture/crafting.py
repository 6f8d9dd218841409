"""Crafting system prompts: a crafter model writes a system prompt aimed at a desired answer, or
revises one whose answers miss ("it mostly answers X instead of Y"). A prompt that states the
answer (the desired option's label, or its number) is rejected and counted; so is a reply that is
not a usable prompt. After ``attempts`` tries a request gets no prompt (the search keeps what it had).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from ...engine.noise import derive_seed
from .scenario import Target

CRAFTER_SYSTEM = ("You write system prompts for a language model that takes part in a survey simulation. A "
                  "system prompt describes, in the second person, the kind of person the model should be.")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
MIN_WORDS, MAX_WORDS = 5, 120


class Completer(Protocol):
    def complete(self, turns: Sequence[tuple[str, str, int]]) -> list[str]:
        """Replies of the crafter to (system, user, seed) turns."""


@dataclass(frozen=True)
class CraftRequest:
    target: Target
    position: int
    """The desired answer (a position of the target)."""
    previous: str | None = None
    """A prompt to revise, with ``answered``: the position it mostly produces."""
    answered: int | None = None
    key: str = ""
    """What separates the sampling seeds of requests (iteration, component)."""


@dataclass
class Crafted:
    prompts: list[str | None]
    attempts: int = 0
    rejected_leak: int = 0
    rejected_invalid: int = 0
    examples: list[str] = field(default_factory=list)
    """A few rejected replies, for the artefact (what the crafter got wrong)."""


def describe(target: Target, position: int) -> str:
    """The desired answer in words the crafter is given (never shown to the answering model)."""
    if not target.is_scale:
        item = target.items[0]
        return f'asked "{item.text}", they would answer "{target.label(position)}"'
    statements = "; ".join(f'"{it.short or it.text}"' + (" (reverse-keyed)" if it.id in target.reverse else "")
                           for it in target.items)
    lo, hi = target.offset, target.offset + target.size - 1
    return (f"they would score about {target.label(position)} on a {target.title} scale from {lo} to {hi} "
            f"(the sum of how well these statements describe them: {statements})")


def instruction(request: CraftRequest) -> str:
    want = describe(request.target, request.position)
    rules = ("Do not mention the survey, the question, any answer option or any number. Reply with the system "
             "prompt only, two to four sentences starting with \"You are\".")
    if request.previous is None or request.answered is None:
        return f"Write a system prompt for a person who, {want}.\n{rules}"
    got = describe(request.target, request.answered)
    return (f"This system prompt was meant for a person who, {want}:\n\n{request.previous}\n\n"
            f"With it the model mostly behaves like a person who, {got}. Rewrite the system prompt so that it "
            f"describes the intended person better.\n{rules}")


def leaks(prompt: str, target: Target, position: int) -> bool:
    """Whether ``prompt`` states the desired answer: its option label, its number (or number word)."""
    text = prompt.lower()
    answer = target.label(position)
    if not target.is_scale and len(answer) > 2 and answer.lower() in text:
        return True
    if target.is_scale:
        number = answer
    else:
        item = target.items[0]
        number = str((item.scale or item.codes)[position])
    if re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", text):
        return True
    # "one" is left out: as a pronoun it is in too many honest prompts
    n = int(number)
    return 2 <= n < len(NUMBER_WORDS) and re.search(rf"\b{NUMBER_WORDS[n]}\b", text) is not None


def parse_prompt(reply: str) -> str | None:
    """The system prompt in a crafter's reply: a leading label and quotes stripped, whitespace
    collapsed; None if it is too short or too long to be one."""
    text = re.sub(r"^\s*(system prompt|prompt)\s*:\s*", "", reply.strip(), flags=re.IGNORECASE)
    text = " ".join(text.strip().strip('"“”\'').split())
    words = len(text.split())
    return text if MIN_WORDS <= words <= MAX_WORDS else None


def craft(completer: Completer, requests: Sequence[CraftRequest], *, attempts: int = 3, seed: int = 0) -> Crafted:
    """One prompt per request (None where every attempt leaked or was unusable), batched: each
    round sends all requests still open to the crafter at once."""
    out = Crafted([None] * len(requests))
    todo = list(range(len(requests)))
    for attempt in range(attempts):
        if not todo:
            break
        turns = [(CRAFTER_SYSTEM, instruction(requests[i]), derive_seed(seed, f"craft:{requests[i].key}:{attempt}"))
                 for i in todo]
        out.attempts += len(turns)
        replies = completer.complete(turns)
        still = []
        for i, reply in zip(todo, replies):
            prompt = parse_prompt(reply)
            if prompt is None:
                out.rejected_invalid += 1
            elif leaks(prompt, requests[i].target, requests[i].position):
                out.rejected_leak += 1
            else:
                out.prompts[i] = prompt
                continue
            if len(out.examples) < 5:
                out.examples.append(reply.strip()[:300])
            still.append(i)
        todo = still
    return out
