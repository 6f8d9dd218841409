"""Profile text: the PSII "PE" prompt-level profile of one respondent, in the second
person, one sentence per demographic item present in the row.

Which sentences a codebook's respondents get is the codebook's ``profile:`` (``templates_for``;
the templates themselves are ``raysim.survey.profile_templates``):
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

from functools import lru_cache
from importlib import resources
from numbers import Integral, Real
from typing import Mapping

import pandas as pd
import yaml

from .codebook import MISSING_CODES, Codebook
from .columns import COUNTRY
from .countries import CountryError, country_name
from .profile_templates import DEFAULT_GENDER, GENDERS, SHIPPED, ProfileTemplates, load_templates, pick

GENDER_ITEM = "Q260"


def templates_for(codebook: Codebook, language: str = "en") -> ProfileTemplates:
    """The profile templates of a codebook's respondents in ``language``."""
    if codebook.profile == SHIPPED:
        return load_templates(language)
    if language != "en":
        raise ValueError(f"codebook {codebook.name!r} has a profile in one language; a prompt in "
                         f"{language!r} needs the shipped template set (profile: {SHIPPED})")
    return codebook.templates


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
    gender = DEFAULT_GENDER
    if GENDER_ITEM in codebook:
        gender = GENDERS.get(_code(row.get(GENDER_ITEM), GENDER_ITEM), DEFAULT_GENDER)
    sentences = []
    for key in templates.order:
        if key == COUNTRY:
            if has_country and templates.country is not None:
                sentences.append(pick(templates.country, gender).format(country=country))
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
