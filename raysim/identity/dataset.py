"""Demographic-vector datasets: probing questions per attribute, persona instructions per value.

A dataset is YAML::

    version: "1"
    attributes:
      Q286:
        questions: ["How do you handle an unexpected expense of a month's income?", ...]
        instructions:
          1: ["You are part of a family that saved money over the past year. ...", ...]
          2: [...]

The model answers every (instruction, question) of an attribute; the vector of a value is the mean
hidden state over its answers minus the mean over all of the attribute's answers. Instructions of
different values should differ mainly in the value, so that difference isolates it.

The packaged default (``data/demographic_dataset.yaml``) was written for raysim; a larger one can
be generated with a local instruct model (`raysim.identity.dataset_gen`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from raysim.atomic import write_text_atomic
from raysim.survey.codebook import Codebook, load_codebook

ATTRIBUTES = ("Q260", "Q263", "Q271", "Q273", "Q275", "Q279", "Q281", "Q284", "Q285",
              "Q286", "Q287", "Q288", "Q289")
"""The 13 WVS-7 demographic items PSII builds vectors for, in this order everywhere."""

MIN_QUESTIONS = 12
MIN_INSTRUCTIONS = 3
"""What every dataset must hold at least (the packaged default has exactly this)."""

FULL_QUESTIONS = 40
FULL_INSTRUCTIONS = 5
"""The generator's full size."""

DEFAULT_FILE = "demographic_dataset.yaml"


class DatasetError(ValueError):
    """A dataset file or object that does not follow the schema."""


@dataclass(frozen=True)
class AttributeSet:
    attribute: str
    questions: tuple[str, ...]
    instructions: Mapping[int, tuple[str, ...]]
    """Persona instructions by value code, in ascending code order."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "questions", tuple(self.questions))
        object.__setattr__(self, "instructions",
                           {int(code): tuple(texts) for code, texts in sorted(self.instructions.items())})

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(self.instructions)


@dataclass(frozen=True)
class DemographicDataset:
    attributes: Mapping[str, AttributeSet]
    version: str

    def __post_init__(self) -> None:
        # ATTRIBUTES order first, so iteration (and the hash) never depends on input order.
        order = {a: i for i, a in enumerate(ATTRIBUTES)}
        ordered = sorted(self.attributes.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        object.__setattr__(self, "attributes", dict(ordered))
        object.__setattr__(self, "version", str(self.version))

    def __getitem__(self, attribute: str) -> AttributeSet:
        try:
            return self.attributes[attribute]
        except KeyError:
            raise KeyError(f"dataset has no attribute {attribute!r}; it has {list(self.attributes)}") from None


# --------------------------------------------------------------------------- dict form


def from_dict(data: Any, where: str = "dataset") -> DemographicDataset:
    """Build a dataset from its parsed YAML, naming the place of any structural problem."""
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: expected a mapping with 'version' and 'attributes'")
    unknown = set(data) - {"version", "attributes"}
    if unknown:
        raise DatasetError(f"{where}: unknown top-level keys {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, (str, int)) or isinstance(version, bool) or str(version).strip() == "":
        raise DatasetError(f"{where}: 'version' must be a non-empty string or integer")
    attrs = data.get("attributes")
    if not isinstance(attrs, dict) or not attrs:
        raise DatasetError(f"{where}: 'attributes' must be a non-empty mapping of attribute id → set")
    sets = {}
    for attr, body in attrs.items():
        here = f"{where}: {attr}"
        if not isinstance(body, dict) or set(body) != {"questions", "instructions"}:
            raise DatasetError(f"{here}: expected exactly the keys 'questions' and 'instructions'")
        questions = _texts(body["questions"], f"{here}.questions")
        raw = body["instructions"]
        if not isinstance(raw, dict) or not raw:
            raise DatasetError(f"{here}.instructions: expected a mapping of value code → list of texts")
        instructions = {}
        for code, texts in raw.items():
            if isinstance(code, bool) or not isinstance(code, int):
                raise DatasetError(f"{here}.instructions: value code {code!r} is not an integer")
            instructions[code] = _texts(texts, f"{here}.instructions.{code}")
        sets[str(attr)] = AttributeSet(str(attr), questions, instructions)
    return DemographicDataset(sets, str(version))


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DatasetError(f"{where}: expected a list of texts")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise DatasetError(f"{where}[{i}]: expected a text, got {type(text).__name__}")
    return tuple(value)


# --------------------------------------------------------------------------- validation


def validate(ds: DemographicDataset, codebook: Codebook | None = None, *,
             attributes: Sequence[str] | None = ATTRIBUTES, min_questions: int = MIN_QUESTIONS,
             min_instructions: int = MIN_INSTRUCTIONS) -> None:
    """Check ``ds`` against the schema: exactly ``attributes`` (None: those it holds), each a
    demographic item with options of ``codebook`` (default WVS-7), every substantive value of
    each and nothing else, at least the minimum numbers of questions and of instructions per
    value, no empty or duplicate text (within an attribute's questions, and across all of its
    instructions). Raises `DatasetError` listing every problem."""
    codebook = codebook or load_codebook("wvs7")
    attributes = list(ds.attributes) if attributes is None else attributes
    known = codebook.attribute_candidates
    problems = []
    for attr in attributes:
        if attr not in known:
            problems.append(f"{attr}: not a demographic item with options of codebook {codebook.name!r}")
        elif attr not in ds.attributes:
            problems.append(f"{attr}: missing")
    for attr, aset in ds.attributes.items():
        if attr not in known:
            problems.append(f"{attr}: unknown attribute (not a demographic item with options of codebook "
                            f"{codebook.name!r})")
        elif attr not in attributes:
            problems.append(f"{attr}: attribute not expected here (expected {list(attributes)})")
        else:
            problems += _attribute_problems(aset, codebook[attr].options, min_questions, min_instructions)
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DatasetError(f"invalid demographic dataset ({len(problems)} problem(s)):\n  {shown}")


def _attribute_problems(aset: AttributeSet, options: Sequence[tuple[int, str]],
                        min_questions: int, min_instructions: int) -> list[str]:
    attr = aset.attribute
    labels = dict(options)
    problems = []
    for code in aset.instructions:
        if code not in labels:
            problems.append(f"{attr}: value {code} is not a substantive option (codes {sorted(labels)})")
    for code, label in options:
        if code not in aset.instructions:
            problems.append(f"{attr}: value {code} ({label}) has no instructions")
    if len(aset.questions) < min_questions:
        problems.append(f"{attr}: {len(aset.questions)} questions, at least {min_questions} needed")
    problems += _text_problems(aset.questions, f"{attr}.questions")
    seen: dict[str, int] = {}
    for code, texts in aset.instructions.items():
        if code in labels and len(texts) < min_instructions:
            problems.append(f"{attr}: value {code} ({labels[code]}) has {len(texts)} instructions, "
                            f"at least {min_instructions} needed")
        problems += _text_problems(texts, f"{attr}.instructions.{code}")
        # The same instruction under two values would blur the difference the vectors measure.
        for text in texts:
            key = normalize_text(text)
            if key and key in seen and seen[key] != code:
                problems.append(f"{attr}: instruction under values {seen[key]} and {code}: {text!r}")
            seen.setdefault(key, code)
    return problems


def _text_problems(texts: Sequence[str], where: str) -> list[str]:
    problems, seen = [], set()
    for i, text in enumerate(texts):
        key = normalize_text(text)
        if not key:
            problems.append(f"{where}[{i}]: empty text")
        elif key in seen:
            problems.append(f"{where}[{i}]: duplicate {text!r}")
        seen.add(key)
    return problems


def normalize_text(text: str) -> str:
    """What counts as the same text: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


# --------------------------------------------------------------------------- files


def default_path() -> Path:
    return Path(str(resources.files("raysim.identity") / "data" / DEFAULT_FILE))


def load_dataset(path: str | Path | None = None, codebook: Codebook | None = None, *,
                 attributes: Sequence[str] | None = ATTRIBUTES, min_questions: int = MIN_QUESTIONS,
                 min_instructions: int = MIN_INSTRUCTIONS) -> DemographicDataset:
    """Load and validate a dataset file (``None``: the packaged default)."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise DatasetError(f"no dataset file {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise DatasetError(f"{path}: not valid YAML: {err}") from err
    ds = from_dict(data, where=str(path))
    try:
        validate(ds, codebook, attributes=attributes, min_questions=min_questions,
                 min_instructions=min_instructions)
    except DatasetError as err:
        raise DatasetError(f"{path}: {err}") from None
    return ds


def to_yaml(ds: DemographicDataset, header: str = "", codebook: Codebook | None = None) -> str:
    """YAML text of ``ds``: ``header`` as leading comment lines, each value code annotated with its
    codebook label. Strings are written JSON-quoted (valid YAML, no surprises with colons)."""
    codebook = codebook or load_codebook("wvs7")
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"version: {json.dumps(ds.version)}", "attributes:"]
    for attr, aset in ds.attributes.items():
        labels = codebook[attr].labels if attr in codebook else {}
        short = f"  # {codebook[attr].short}" if attr in codebook and codebook[attr].short else ""
        lines += [f"  {attr}:{short}", "    questions:"]
        lines += [f"      - {json.dumps(q, ensure_ascii=False)}" for q in aset.questions]
        lines.append("    instructions:")
        for code, texts in aset.instructions.items():
            label = f"  # {labels[code]}" if code in labels else ""
            lines.append(f"      {code}:{label}")
            lines += [f"        - {json.dumps(t, ensure_ascii=False)}" for t in texts]
    return "\n".join(lines) + "\n"


def save_dataset(ds: DemographicDataset, path: str | Path, header: str = "",
                 codebook: Codebook | None = None, *, attributes: Sequence[str] | None = ATTRIBUTES,
                 min_questions: int = MIN_QUESTIONS, min_instructions: int = MIN_INSTRUCTIONS) -> Path:
    """Validate ``ds`` and write it atomically: an invalid dataset raises and leaves any existing
    file at ``path`` untouched, and so does a failure while writing."""
    validate(ds, codebook, attributes=attributes, min_questions=min_questions,
             min_instructions=min_instructions)
    path = Path(path)
    text = to_yaml(ds, header, codebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, text)


# --------------------------------------------------------------------------- identity


def dataset_hash(ds: DemographicDataset) -> str:
    """sha256 (hex) of the dataset's canonical JSON: attributes in `ATTRIBUTES` order, values
    ascending, texts in order. Equal datasets hash equal in any process and on any machine."""
    canonical = {
        "version": ds.version,
        "attributes": [[a.attribute, list(a.questions), [[c, list(t)] for c, t in a.instructions.items()]]
                       for a in ds.attributes.values()],
    }
    blob = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def pairs(ds: DemographicDataset, attribute: str) -> Iterator[tuple[int, str, str]]:
    """Every (value code, instruction, question) of ``attribute``: values ascending, then
    instructions, then questions in dataset order."""
    aset = ds[attribute]
    for code, texts in aset.instructions.items():
        for instruction in texts:
            for question in aset.questions:
                yield code, instruction, question
