"""Profile templates: the sentences a respondent's profile is made of, as data.

The shipped set (``profile: wvs`` in the WVS-7 and carData codebooks) is one file per language,
``data/profile_<language>.yaml``, keyed by item id; a codebook may instead give its own
(``codebook_templates``). Each item has exactly one of ``codes`` (a phrase per code), ``number``
(exact-value phrases plus ``"other"``, a template on ``{value}``) or ``label`` (a template on
``{label}``). Nothing here knows a codebook or a population: ``raysim.survey.profile`` renders.
"""

from __future__ import annotations

import string
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

import yaml

from .columns import COUNTRY

OTHER = "other"
"""The number form used for values without an exact-value phrase."""

_FIELDS = {"codes": {"country"}, "number": {"value", "country"}, "label": {"label", "country"}}
_SENTENCE_ENDS = (".", "。")  # the Latin/Arabic/Cyrillic full stop and the CJK one
GENDERS = {1: "m", 2: "f"}
"""Q260 code -> the phrase form it selects (WVS and carData both code 1 man, 2 woman)."""
DEFAULT_GENDER = "m"
"""The masculine, the generic form of the gendered languages, where a row has no sex."""

Phrase = str | Mapping[str, str]
"""A sentence, or its forms by the respondent's gender ({"m": ..., "f": ...})."""


def pick(phrase: Phrase, gender: str) -> str:
    return phrase if isinstance(phrase, str) else phrase[gender]


class ProfileTemplateError(ValueError):
    """A profile template file that is not well formed."""


@dataclass(frozen=True)
class ItemTemplate:
    """One item's sentence: exactly one of ``codes`` (a phrase per code), ``number``
    (exact-value phrases plus ``"other"``, a template on ``{value}``) or ``label`` (a
    template on ``{label}`` for country-specific codes)."""

    qid: str
    codes: Mapping[int, Phrase] | None = None
    number: Mapping[int | str, Phrase] | None = None
    label: Phrase | None = None

    def render(self, code: int, country: str, labels: Mapping[int, str] | None,
               gender: str = DEFAULT_GENDER) -> str | None:
        """The sentence for ``code`` in ``gender``'s form; None where a coded item has no
        label for it."""
        if self.codes is not None:
            if code not in self.codes:
                raise ValueError(f"item {self.qid}: code {code} has no profile phrase "
                                 f"(known codes {sorted(self.codes)})")
            return pick(self.codes[code], gender).format(country=country)
        if self.number is not None:
            return pick(self.number.get(code, self.number[OTHER]), gender).format(value=code, country=country)
        if labels is None or code not in labels:
            return None
        return pick(self.label, gender).format(label=labels[code], country=country)


@dataclass(frozen=True)
class ProfileTemplates:
    language: str
    country: Phrase | None
    """None: no sentence on where the respondent lives."""
    country_fallback: str
    order: tuple[str, ...]
    """Sentence order: item ids and ``country`` (the population's country column)."""
    items: Mapping[str, ItemTemplate]
    separator: str = " "
    """Between sentences ("" in Chinese, which sets none)."""


def _check_phrase(text: Any, allowed: set[str], where: str) -> Phrase:
    if isinstance(text, dict):
        if set(text) != set(GENDERS.values()):
            raise ProfileTemplateError(f"{where}: gendered forms must be exactly "
                                       f"{sorted(GENDERS.values())}, got {sorted(map(str, text))}")
        return {g: _check_sentence(t, allowed, f"{where}.{g}") for g, t in text.items()}
    return _check_sentence(text, allowed, where)


def _check_sentence(text: Any, allowed: set[str], where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ProfileTemplateError(f"{where}: expected a non-empty string, got {text!r}")
    used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    if not used <= allowed:
        raise ProfileTemplateError(f"{where}: unknown placeholder(s) {sorted(used - allowed)} "
                                   f"(allowed {sorted(allowed)})")
    if not text.endswith(_SENTENCE_ENDS):
        raise ProfileTemplateError(f"{where}: a sentence must end with a period: {text!r}")
    return text


def _item_template(qid: str, raw: Any, where: str) -> ItemTemplate:
    forms = [k for k in _FIELDS if isinstance(raw, dict) and k in raw]
    if len(forms) != 1 or len(raw) != 1:
        raise ProfileTemplateError(f"{where}: expected exactly one of {sorted(_FIELDS)}, got {raw!r}")
    form = forms[0]
    body, allowed = raw[form], _FIELDS[form]
    if form == "label":
        return ItemTemplate(qid, label=_check_phrase(body, allowed, f"{where}.label"))
    if not isinstance(body, dict) or not body:
        raise ProfileTemplateError(f"{where}.{form}: expected a mapping of phrases")
    keys_ok = all((isinstance(k, int) and not isinstance(k, bool)) or (form == "number" and k == OTHER)
                  for k in body)
    if not keys_ok:
        raise ProfileTemplateError(f"{where}.{form}: keys must be integer codes"
                                   + (f" or {OTHER!r}" if form == "number" else "") + f", got {list(body)}")
    phrases = {k: _check_phrase(v, allowed, f"{where}.{form}.{k}") for k, v in body.items()}
    if form == "number":
        if OTHER not in phrases:
            raise ProfileTemplateError(f"{where}.number: needs an {OTHER!r} template")
        return ItemTemplate(qid, number=phrases)
    return ItemTemplate(qid, codes=phrases)


def parse_templates(data: Any, name: str) -> ProfileTemplates:
    """Validate a profile template document and build the templates."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), dict):
        raise ProfileTemplateError(f"profile templates {name!r}: no 'items' mapping")
    items = {qid: _item_template(qid, raw, f"profile templates {name!r} item {qid}")
             for qid, raw in data["items"].items()}
    order = tuple(data.get("order") or ())
    expected = {*items, COUNTRY}
    if len(set(order)) != len(order) or set(order) != expected:
        raise ProfileTemplateError(
            f"profile templates {name!r}: 'order' must list each item and {COUNTRY!r} once; "
            f"missing {sorted(expected - set(order))}, unknown {sorted(set(order) - expected)}")
    fallback = data.get("country_fallback")
    if not isinstance(fallback, str) or not fallback:
        raise ProfileTemplateError(f"profile templates {name!r}: no 'country_fallback'")
    separator = data.get("separator", " ")
    if not isinstance(separator, str):
        raise ProfileTemplateError(f"profile templates {name!r}: 'separator' must be a string")
    return ProfileTemplates(
        language=data.get("language", name),
        country=_check_phrase(data.get("country"), {"country"}, f"profile templates {name!r} country"),
        country_fallback=fallback, order=order, items=items, separator=separator)


def languages() -> list[str]:
    """Languages with a shipped template file."""
    data = resources.files("raysim.survey") / "data"
    return sorted(p.name[len("profile_"):-len(".yaml")] for p in data.iterdir()
                  if p.name.startswith("profile_") and p.name.endswith(".yaml"))


@lru_cache(maxsize=None)
def load_templates(language: str = "en") -> ProfileTemplates:
    """The shipped profile templates for ``language``."""
    if language not in languages():
        raise ValueError(f"no profile templates for language {language!r}; available: {languages()}")
    path = resources.files("raysim.survey") / "data" / f"profile_{language}.yaml"
    return parse_templates(yaml.safe_load(path.read_text(encoding="utf-8")), language)


SHIPPED = "wvs"
"""``profile: wvs`` names the shipped per-language template files."""
_COUNTRY_FALLBACK = "the country where you live"


def _inline_form(raw: Any) -> dict:
    """A sentence of a codebook's profile in the template files' form."""
    if not isinstance(raw, str):
        return raw
    return {"number": {OTHER: raw}} if "{value}" in raw else {"label": raw}


def codebook_templates(raw: Any, item_ids: Collection[str], name: str) -> ProfileTemplates:
    """A codebook's own profile (``profile:`` a mapping of item ids to sentences, or the
    default one the codebook makes), checked: a fault is a ``ProfileTemplateError`` naming the
    codebook, the item and the key."""
    if not isinstance(raw, dict):
        raise ProfileTemplateError(f"codebook {name!r} key 'profile': expected {SHIPPED!r} or a mapping "
                                   f"of item ids to sentences, got {raw!r}")
    where = f"codebook {name!r} profile"
    unknown = [str(k) for k in raw if k != COUNTRY and k not in item_ids]
    if unknown:
        raise ProfileTemplateError(f"{where}: {unknown} are not items of the codebook")
    items = {k: _item_template(k, _inline_form(v), f"{where} item {k}") for k, v in raw.items() if k != COUNTRY}
    country = _check_phrase(raw[COUNTRY], {"country"}, f"{where} country") if COUNTRY in raw else None
    return ProfileTemplates(language="en", country=country, country_fallback=_COUNTRY_FALLBACK,
                            order=tuple(raw), items=items)
