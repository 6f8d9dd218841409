"""Prompt text of the simulation methods in each survey language, as data
(``data/prompts_<language>.yaml``): the PSII paper prompts a respondent in one of
``LANGUAGES``, so every piece a prompt is built from exists in each of them.

A file is checked when it is loaded: every key present and no other, each a string,
``{profile}`` exactly once where the profile goes and no placeholder anywhere else, and the
answer instruction word for word inside every system turn that asks for an answer.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

LANGUAGES = ("en", "zh", "ar", "es", "ru")


class PromptTemplateError(ValueError):
    """A prompt template file that is not well formed."""


@dataclass(frozen=True)
class PromptTemplates:
    language: str
    pe_system: str
    """PE: the system turn with the respondent's ``{profile}``."""
    direct_system: str
    """Direct: "forget you are an AI model, simulate a human being", no profile."""
    divreq_system: str
    """DivReq: Direct plus a request for diverse, individual answers."""
    answer_instruction: str
    """Answer with the option's number only; part of the three system turns."""
    options_header: str
    """Line before the numbered options ("" where the options follow the question directly)."""
    simvbg_background: str
    """SimVBG step 1: write a first-person background story from ``{profile}``."""
    simvbg_cognitive: str
    simvbg_affective: str
    simvbg_behavioral: str
    """SimVBG answer framings, appended to the system turn."""


_KEYS = tuple(f.name for f in fields(PromptTemplates) if f.name != "language")
_PLACEHOLDERS = {"pe_system": ("profile",), "simvbg_background": ("profile",)}
"""Placeholders each key must use, once each; keys not listed take none."""
_MAY_BE_EMPTY = {"options_header"}
_ANSWERING = ("pe_system", "direct_system", "divreq_system")
"""System turns that must contain the answer instruction."""


def _placeholders(text: str, where: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:  # a lone brace
        raise PromptTemplateError(f"{where}: malformed braces ({e}) in {text!r}") from None


def parse_prompts(data: Any, name: str) -> PromptTemplates:
    """Validate a prompt template document (``name`` is its file, for error messages)."""
    if not isinstance(data, dict):
        raise PromptTemplateError(f"{name}: expected a mapping of prompt keys, got {type(data).__name__}")
    missing = [k for k in _KEYS if k not in data]
    unknown = sorted(str(k) for k in data if k not in _KEYS and k != "language")
    if missing or unknown:
        raise PromptTemplateError(f"{name}: missing key(s) {missing}, unknown key(s) {unknown}")
    language = data.get("language")
    if not isinstance(language, str) or not language:
        raise PromptTemplateError(f"{name}: no 'language'")
    for key in _KEYS:
        where = f"{name} key {key!r}"
        text = data[key]
        if not isinstance(text, str):
            raise PromptTemplateError(f"{where}: expected a string, got {text!r}")
        if not text.strip() and key not in _MAY_BE_EMPTY:
            raise PromptTemplateError(f"{where}: is empty")
        used, wanted = _placeholders(text, where), _PLACEHOLDERS.get(key, ())
        if sorted(used) != sorted(wanted):
            raise PromptTemplateError(
                f"{where}: placeholders {['{' + f + '}' for f in used]}, expected "
                f"{['{' + f + '}' for f in wanted]} (each exactly once)")
    for key in _ANSWERING:
        if data["answer_instruction"] not in data[key]:
            raise PromptTemplateError(f"{name} key {key!r}: does not contain answer_instruction "
                                      f"{data['answer_instruction']!r} word for word")
    return PromptTemplates(language=language, **{k: data[k] for k in _KEYS})


@lru_cache(maxsize=None)
def load_prompts(language: str = "en") -> PromptTemplates:
    """The shipped prompt templates for ``language`` (one of ``LANGUAGES``)."""
    if language not in LANGUAGES:
        raise ValueError(f"no prompt templates for language {language!r}; available: {list(LANGUAGES)}")
    name = f"prompts_{language}.yaml"
    path = resources.files("raysim.methods") / "data" / name
    prompts = parse_prompts(yaml.safe_load(path.read_text(encoding="utf-8")), name)
    if prompts.language != language:
        raise PromptTemplateError(f"{name}: says language {prompts.language!r}, expected {language!r}")
    return prompts
