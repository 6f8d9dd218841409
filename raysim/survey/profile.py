"""Profile text: the PSII "PE" prompt-level profile of one respondent, in the second
person, one sentence per demographic item present in the row.

Which sentences a codebook's respondents get is the codebook's ``profile:`` (``templates_for``):
- ``profile: wvs``: the shipped template set, one file per language (``data/profile_<language>.yaml``,
  keyed by item id), which the WVS-7 and carData codebooks name;
- a mapping, item id -> sentence, rendered in that order (the key ``country`` renders the
  population's country): ``"You are a {label}."`` (the option label of the answer),
  ``"You are {value} years old."`` (the answer itself), or one of the template files' forms
  (``codes:``, ``number:``, ``label:``). It is written in one language and serves that one;
- none: one sentence per demographic item, ``"<short or text>: <label>."``.

A code the codebook or the templates do not know raises ``ValueError`` naming the item and
code; a missing value (null or a WVS missing code) only drops its sentence.

Languages with grammatical gender in the second person (Arabic, Spanish, Russian) may give a
phrase as ``{m: ..., f: ...}``; the row's sex (Q260) picks the form, and the masculine, the
generic form of those languages, stands when the row has none. Country names in a language
other than English come from ``data/country_names_<language>.yaml`` (ISO alpha-3 -> name).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from numbers import Integral, Real
from typing import Any, Mapping

import pandas as pd
import yaml

from .codebook import MISSING_CODES, Codebook, CodebookError
from .countries import CountryError, country_name
from .population import COUNTRY

OTHER = "other"
"""The number form used for values without an exact-value phrase."""

_FIELDS = {"codes": {"country"}, "number": {"value", "country"}, "label": {"label", "country"}}
_SENTENCE_ENDS = (".", "。")  # the Latin/Arabic/Cyrillic full stop and the CJK one
GENDER_ITEM = "Q260"
_GENDERS = {1: "m", 2: "f"}
"""Q260 code -> the phrase form it selects (WVS and carData both code 1 man, 2 woman)."""
_DEFAULT_GENDER = "m"

Phrase = str | Mapping[str, str]
"""A sentence, or its forms by the respondent's gender ({"m": ..., "f": ...})."""


def _pick(phrase: Phrase, gender: str) -> str:
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
               gender: str = _DEFAULT_GENDER) -> str | None:
        """The sentence for ``code`` in ``gender``'s form; None where a coded item has no
        label for it."""
        if self.codes is not None:
            if code not in self.codes:
                raise ValueError(f"item {self.qid}: code {code} has no profile phrase "
                                 f"(known codes {sorted(self.codes)})")
            return _pick(self.codes[code], gender).format(country=country)
        if self.number is not None:
            return _pick(self.number.get(code, self.number[OTHER]), gender).format(value=code, country=country)
        if labels is None or code not in labels:
            return None
        return _pick(self.label, gender).format(label=labels[code], country=country)


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
        if set(text) != set(_GENDERS.values()):
            raise ProfileTemplateError(f"{where}: gendered forms must be exactly "
                                       f"{sorted(_GENDERS.values())}, got {sorted(map(str, text))}")
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


def _default_sentence(item) -> dict:
    name = (item.short or item.text).replace("{", "{{").replace("}", "}}").rstrip(".:?")
    if item.kind == "numeric":
        return {"number": {OTHER: f"{name}: {{value}}."}}
    return {"label": f"{name}: {{label}}."}


def _codebook_templates(codebook: Codebook) -> ProfileTemplates:
    raw = codebook.profile
    if raw is None:
        raw = {q: _default_sentence(codebook[q]) for q in codebook.demographic_ids}
    if not isinstance(raw, dict):
        raise CodebookError(f"codebook {codebook.name!r} key 'profile': expected {SHIPPED!r} or a mapping "
                            f"of item ids to sentences, got {raw!r}")
    where = f"codebook {codebook.name!r} profile"
    unknown = [str(k) for k in raw if k != COUNTRY and k not in codebook]
    if unknown:
        raise CodebookError(f"{where}: {unknown} are not items of the codebook")
    try:
        items = {k: _item_template(k, _inline_form(v), f"{where} item {k}") for k, v in raw.items() if k != COUNTRY}
        country = _check_phrase(raw[COUNTRY], {"country"}, f"{where} country") if COUNTRY in raw else None
    except ProfileTemplateError as e:
        raise CodebookError(str(e)) from None
    return ProfileTemplates(language="en", country=country, country_fallback=_COUNTRY_FALLBACK,
                            order=tuple(raw), items=items)


def templates_for(codebook: Codebook, language: str = "en") -> ProfileTemplates:
    """The profile templates of a codebook's respondents in ``language``."""
    if codebook.profile == SHIPPED:
        return load_templates(language)
    if language != "en":
        raise ValueError(f"codebook {codebook.name!r} has a profile in one language; a prompt in "
                         f"{language!r} needs the shipped template set (profile: {SHIPPED})")
    return _codebook_templates(codebook)   # a few sentences: built per call, no cache to go stale


@lru_cache(maxsize=None)
def _country_names(language: str) -> dict[str, str]:
    path = resources.files("raysim.survey") / "data" / f"country_names_{language}.yaml"
    if not path.is_file():
        raise CountryError(f"no country names for language {language!r} (no {path.name})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                             for k, v in data.items()):
        raise CountryError(f"{path.name}: expected a mapping of alpha-3 codes to names")
    return data


def localized_country_name(alpha3: str, language: str = "en") -> str:
    """The country's name as used in a sentence of ``language``; an unknown code, or a
    known one the language's name file lacks, is a ``CountryError``."""
    english = country_name(alpha3)  # raises for an unknown code
    if language == "en":
        return english
    names = _country_names(language)
    if alpha3 not in names:
        raise CountryError(f"country_names_{language}.yaml has no name for {alpha3} ({english})")
    return names[alpha3]


def profile_columns(codebook: Codebook) -> list[str]:
    """The population columns a profile is rendered from (the templates' items in ``codebook``)."""
    return [k for k in templates_for(codebook).order if k in codebook]


def _is_null(value: object) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _code(value: object, qid: str) -> int | None:
    """The integer code in a row cell; None for null or a WVS missing code."""
    if _is_null(value):
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or (
            not isinstance(value, Integral) and not float(value).is_integer()):
        raise ValueError(f"item {qid}: value {value!r} is not an integer code")
    code = int(value)
    return None if code in MISSING_CODES else code


def render_profile(row: Mapping[str, object], codebook: Codebook, *,
                   value_labels: Mapping[str, Mapping[int, str]] | None = None,
                   language: str = "en") -> str:
    """One respondent's profile: a sentence per templated item of ``codebook`` that is
    non-null in ``row`` (plus where they live, from ``row["country"]``), in the
    templates' order, in ``language`` (country names included). Coded items (ethnicity,
    language) need ``value_labels`` ({qid: {code: label}}) and are left out without a label
    for their code."""
    templates = templates_for(codebook, language)
    alpha3 = row.get(COUNTRY)
    has_country = not _is_null(alpha3)
    if not has_country:
        country = templates.country_fallback
    elif language == "en":
        country = codebook.country_name(str(alpha3))
    else:
        country = localized_country_name(str(alpha3), language)
    gender = _DEFAULT_GENDER
    if GENDER_ITEM in codebook:
        gender = _GENDERS.get(_code(row.get(GENDER_ITEM), GENDER_ITEM), _DEFAULT_GENDER)
    sentences = []
    for key in templates.order:
        if key == COUNTRY:
            if has_country and templates.country is not None:
                sentences.append(_pick(templates.country, gender).format(country=country))
            continue
        if key not in codebook:
            continue
        code = _code(row.get(key), key)
        if code is None:
            continue
        if not codebook[key].valid_code(code):
            raise ValueError(f"item {key}: code {code} is not a valid answer in codebook {codebook.name!r}")
        labels = {**codebook[key].labels, **(value_labels or {}).get(key, {})}
        text = templates.items[key].render(code, country, labels, gender)
        if text is not None:
            sentences.append(text)
    return templates.separator.join(sentences)
