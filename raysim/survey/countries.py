"""The WVS-7 countries and territories (release v6.0), shipped as package data.

Each entry carries the ISO codes the WVS files use, the English name as it reads inside a
sentence, the number of respondents in the release, and a few approximate national
marginals that the synthetic population generator draws demographics from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

import yaml

RELIGIONS: dict[str, int] = {
    "none": 0, "catholic": 1, "protestant": 2, "orthodox": 3, "jewish": 4, "muslim": 5,
    "hindu": 6, "buddhist": 7, "other_christian": 8, "other": 9,
}
"""Religion keys of the country file -> Q289 major-group codes."""

TOTAL_RESPONDENTS = 97_220
_ALPHA3 = re.compile(r"^[A-Z]{3}$")
_FILE = "wvs7_countries.yaml"


class CountryError(ValueError):
    """An unknown country code or an invalid country file."""


@dataclass(frozen=True)
class Country:
    alpha3: str
    numeric: int
    name: str
    """English name as used in a sentence: "the United States", "Hong Kong SAR"."""
    n: int
    """Respondents in the WVS-7 v6.0 release."""
    year: int
    """Fieldwork year."""
    region: str
    urban: float
    tertiary: float
    median_age: float
    immigrant: float
    trad_secular: float
    surv_selfexp: float
    languages: tuple[str, ...]
    religion: Mapping[int, float]
    """Q289 code -> population share (sums to 1)."""


def _share(v: Any, where: str, field: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
        raise CountryError(f"{where}: {field} must be a share in [0, 1], got {v!r}")
    return float(v)


def _parse(raw: dict[str, Any], where: str) -> Country:
    try:
        alpha3, numeric, n = raw["alpha3"], raw["numeric"], raw["n"]
        where = f"{where} ({alpha3})"
        if not isinstance(alpha3, str) or not _ALPHA3.match(alpha3):
            raise CountryError(f"{where}: alpha3 must be three capital letters")
        if not isinstance(numeric, int) or not 0 < numeric < 1000:
            raise CountryError(f"{where}: numeric must be an ISO numeric code 1..999")
        if not isinstance(n, int) or n <= 0:
            raise CountryError(f"{where}: n must be a positive respondent count")
        religion = {}
        for key, share in raw["religion"].items():
            if key not in RELIGIONS:
                raise CountryError(f"{where}: unknown religion {key!r}; known are {sorted(RELIGIONS)}")
            religion[RELIGIONS[key]] = _share(share, where, f"religion.{key}")
        total = sum(religion.values())
        if abs(total - 1) > 1e-6:
            raise CountryError(f"{where}: religion shares sum to {total:.4f}, not 1")
        languages = tuple(raw["languages"])
        if not languages or not all(isinstance(x, str) and x for x in languages):
            raise CountryError(f"{where}: languages must be a non-empty list of names")
        return Country(
            alpha3=alpha3, numeric=numeric, name=str(raw["name"]), n=n, year=int(raw["year"]),
            region=str(raw["region"]), urban=_share(raw["urban"], where, "urban"),
            tertiary=_share(raw["tertiary"], where, "tertiary"),
            median_age=float(raw["median_age"]), immigrant=_share(raw["immigrant"], where, "immigrant"),
            trad_secular=float(raw["trad_secular"]), surv_selfexp=float(raw["surv_selfexp"]),
            languages=languages, religion=MappingProxyType(dict(sorted(religion.items()))),
        )
    except KeyError as e:
        raise CountryError(f"{where}: missing field {e.args[0]!r}") from None


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    path = resources.files("raysim.survey") / "data" / _FILE
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load_countries() -> dict[str, Country]:
    """alpha3 -> Country for the 66 WVS-7 countries, in alpha3 order."""
    data = _data()
    countries: dict[str, Country] = {}
    for i, raw in enumerate(data.get("countries") or []):
        c = _parse(raw, f"{_FILE} entry {i}")
        if c.alpha3 in countries:
            raise CountryError(f"{_FILE}: duplicate country {c.alpha3}")
        countries[c.alpha3] = c
    numerics = [c.numeric for c in countries.values()]
    if len(set(numerics)) != len(numerics):
        raise CountryError(f"{_FILE}: duplicate numeric codes")
    return dict(sorted(countries.items()))


def get_country(alpha3: str) -> Country:
    """The country with this ISO alpha-3 code (clear error for an unknown one)."""
    countries = load_countries()
    try:
        return countries[alpha3]
    except KeyError:
        raise CountryError(f"unknown WVS-7 country code {alpha3!r}; known are {', '.join(countries)}") from None


def country_name(alpha3: str) -> str:
    """English name for use in a sentence, e.g. ``country_name("USA") == "the United States"``;
    also knows the few non-WVS-7 countries other data sources bring (Norway, Sweden)."""
    countries = load_countries()
    if alpha3 in countries:
        return countries[alpha3].name
    others = _data().get("other_names") or {}
    if alpha3 in others:
        return str(others[alpha3])
    return get_country(alpha3).name  # raises the unknown-code error
