"""Map a generated answer to an option code; anything else is invalid (kept, never coerced)."""

from __future__ import annotations

import re
from typing import Sequence

_NUMBER = re.compile(r"^[\s\"'(\[]*(-?\d+)\s*[).:\]\"'-]?(?:\s|$)")
_NORM = re.compile(r"[^\w\s]")


def _norm(text: str) -> str:
    return " ".join(_NORM.sub(" ", text.lower()).split())


def parse_answer(text: str, options: Sequence[tuple[int, str]]) -> int | None:
    """The option code ``text`` answers, or None.

    ``options`` are (code, answer string) pairs: the strings the model is asked to give (a number
    on a scale, or a label). Accepted: the text starts with a number that is an answer string or an option code, or
    the text equals one answer string up to case, punctuation and whitespace. A number outside the
    options or any other text is invalid.
    """
    by_text = {_norm(answer): code for code, answer in options}
    codes = {str(code): code for code, _ in options}
    norm = _norm(text)
    if norm in by_text:
        return by_text[norm]
    match = _NUMBER.match(text)
    if match:
        number = match.group(1)
        return by_text.get(number, codes.get(number))
    # A label followed by an explanation ("Very important. Because ...").
    for answer, code in sorted(by_text.items(), key=lambda kv: -len(kv[0])):
        if answer and not answer.isdigit() and (norm == answer or norm.startswith(answer + " ")):
            return code
    return None
