"""Generate a demographic dataset with a local instruct model.

The model writes the probing questions (per attribute) and the persona instructions (per value) as
JSON lists, a few items per request so that a small model can manage. Each request shows one
worked example (a turn for an attribute outside the 13: age) before the real one: models down to
the embedded 135M one then mostly answer with a bare JSON list, where without it they do not.

Every reply is parsed with ``json`` (never eval), element by element so that a list cut off by
the token limit keeps its complete elements, and its items are checked: non-empty, single-line
strings of sensible length (questions end in "?"), distinct, repeating no item already accepted
for the attribute, the survey item itself or the example's items; at most as many as asked are
kept (extras are dropped). The valid items of a short reply are kept and the rest asked for
again; a reply with none is asked again with a new seed, and after ``max_retries`` such retries in
a row the generation stops with an error naming the attribute, the value and the last reply.

All open requests of a round go to the engine in one ``generate`` call (on a GPU they batch), and
each request's sampling seed is derived from (seed, what it asks, its number), so a run is
deterministic given its seed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from raysim.engine.base import LM, Option, Request, Decoding
from raysim.engine.noise import derive_seed
from raysim.survey.codebook import Codebook, Item, load_codebook

from .dataset import (ATTRIBUTES, FULL_INSTRUCTIONS, FULL_QUESTIONS, AttributeSet,
                      DemographicDataset, normalize_text, save_dataset, validate)

log = logging.getLogger(__name__)

CHUNK = 10
"""Items asked for per request."""
TOKENS_PER_ITEM = 64
"""max_new_tokens per item asked for (an item is one or two sentences), plus room for the JSON."""
MIN_CHARS, MAX_CHARS = 10, 400
TEMPERATURE, TOP_K = 0.7, 40

_EXAMPLE_ITEM = "How old are you?"
_EXAMPLE_ANSWER = "18-29 years"
_EXAMPLE_QUESTIONS = ("How do you usually spend your weekends?",
                      "What worries you most about your health?",
                      "How do you keep up with new technology?")
_EXAMPLE_INSTRUCTIONS = ("You are a young adult between 18 and 29 years old.",
                         "Speak as someone who is in their twenties and just starting out in life.",
                         "Imagine you recently turned 25 and are finding your feet in your first "
                         "job; answer as that person.")
_EXAMPLE_TEXTS = frozenset(normalize_text(t) for t in _EXAMPLE_QUESTIONS + _EXAMPLE_INSTRUCTIONS)


class GenerationError(RuntimeError):
    """The model did not produce a valid list for some attribute or value within the retries."""


# --------------------------------------------------------------------------- prompts
# Kept short on purpose: the embedded 135M model answers these with a usable list roughly every
# other time, and each added constraint we tried (option lists, style rules) made it drift from
# the JSON format.


def _question_prompt(item_text: str, k: int) -> str:
    return (f"Write {k} open questions about everyday life that a person answers differently depending "
            f'on their answer to the survey question "{item_text}". Reply with a JSON list of {k} strings.')


def _instruction_prompt(item_text: str, answer: str, k: int) -> str:
    return (f"Write {k} persona instructions, one sentence each, that tell an assistant to answer as a "
            f'person whose answer to the survey question "{item_text}" is: {answer}. '
            f"Reply with a JSON list of {k} strings.")


def _shot(prompt: str, example: Sequence[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": json.dumps(list(example))}]


def question_messages(item: Item, k: int, taken: Sequence[str]) -> tuple[dict[str, str], ...]:
    """The chat turns asking for ``k`` probing questions for ``item``."""
    prompt = _question_prompt(item.text, k)
    if taken:
        prompt += f" Do not repeat any of these: {json.dumps(list(taken))}"
    example = _shot(_question_prompt(_EXAMPLE_ITEM, len(_EXAMPLE_QUESTIONS)), _EXAMPLE_QUESTIONS)
    return tuple(example + [{"role": "user", "content": prompt}])


def instruction_messages(item: Item, code: int, k: int) -> tuple[dict[str, str], ...]:
    """The chat turns asking for ``k`` persona instructions for value ``code`` of ``item``."""
    prompt = _instruction_prompt(item.text, item.labels[code], k)
    example = _shot(_instruction_prompt(_EXAMPLE_ITEM, _EXAMPLE_ANSWER, len(_EXAMPLE_INSTRUCTIONS)),
                    _EXAMPLE_INSTRUCTIONS)
    return tuple(example + [{"role": "user", "content": prompt}])


# --------------------------------------------------------------------------- replies


def parse_list(text: str) -> list | None:
    """The JSON list in a reply, element by element with ``json``: text around it is ignored,
    and a list cut off (by the token limit) or broken after some elements yields the elements
    before the break. None where no list with at least one element starts."""
    start = text.find("[")
    if start < 0:
        return None
    decoder = json.JSONDecoder()
    items: list = []
    pos = start + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        items.append(value)
    return items or None


def accept_items(reply: list, k: int, taken: set[str], question: bool,
                 forbidden: frozenset[str] = frozenset()) -> list[str]:
    """The valid new items of a parsed reply, at most ``k`` (extras are dropped). Valid: a single-line string of sensible length (a question ends in "?"), not in ``taken``
    (normalised texts already used), ``forbidden`` or the worked example."""
    out: list[str] = []
    seen = set(taken) | forbidden | _EXAMPLE_TEXTS
    for entry in reply:
        if not isinstance(entry, str):
            continue
        text = entry.strip()
        key = normalize_text(text)
        if (not MIN_CHARS <= len(text) <= MAX_CHARS or "\n" in text or key in seen
                or (question and not text.endswith("?"))):
            continue
        seen.add(key)
        out.append(text)
    return out[:k]


# --------------------------------------------------------------------------- generation


@dataclass
class _Job:
    """One list to fill: an attribute's questions (value None) or one value's instructions."""

    item: Item
    value: int | None
    target: int
    taken: set[str]
    """Normalised texts this list may not repeat (shared by all values of an attribute)."""
    items: list[str] = field(default_factory=list)
    requests: int = 0
    failures: int = 0

    @property
    def open(self) -> int:
        return self.target - len(self.items)

    @property
    def name(self) -> str:
        if self.value is None:
            return f"{self.item.id} questions"
        return f"{self.item.id} value {self.value} ({self.item.labels[self.value]}) instructions"

    def request(self, seed: int) -> Request:
        k = min(CHUNK, self.open)
        if self.value is None:
            messages = question_messages(self.item, k, self.items)
        else:
            messages = instruction_messages(self.item, self.value, k)
        key = f"{self.item.id}/{'q' if self.value is None else self.value}/{self.requests}"
        self.requests += 1
        # Options only parse an answer code; here only the text is used.
        return Request(prefix=(), question=messages, options=(Option(0, "-"),), qid=key,
                       seed=derive_seed(seed, key))


def default_attributes(codebook: Codebook) -> list[str]:
    """The attributes a dataset for ``codebook`` covers unless told: those it declares, else the
    WVS-7 13 it has."""
    declared = [a for items in codebook.attributes.values() for a in items]
    return declared or [a for a in ATTRIBUTES if a in codebook]


def generate_dataset(engine: LM, codebook: Codebook, n_questions: int = FULL_QUESTIONS,
                     n_instructions: int = FULL_INSTRUCTIONS, seed: int = 0, max_retries: int = 3,
                     attributes: Sequence[str] | None = None, version: str = "generated") -> DemographicDataset:
    """Have ``engine``'s model write ``n_questions`` probing questions per attribute and
    ``n_instructions`` persona instructions per value of each attribute (by default the codebook's
    ``attributes:``, else the WVS-7 13 it has).

    A reply with no valid new item is retried with a new seed, at most ``max_retries`` times in a
    row for the same list; then `GenerationError` names it and shows the last reply. The result
    is validated against the schema with these counts as minimums."""
    attributes = default_attributes(codebook) if attributes is None else list(attributes)
    unknown = [a for a in attributes if a not in codebook.attribute_candidates]
    if unknown or not attributes:
        raise ValueError(f"attributes {unknown or attributes} are not demographic items with options of codebook "
                         f"{codebook.name!r} ({codebook.attribute_candidates})")
    if n_questions < 1 or n_instructions < 1 or max_retries < 0:
        raise ValueError("n_questions and n_instructions must be ≥ 1, max_retries ≥ 0")

    jobs: list[_Job] = []
    for attr in attributes:
        item = codebook[attr]
        jobs.append(_Job(item, None, n_questions, set()))
        shared: set[str] = set()     # no instruction may serve two values
        jobs += [_Job(item, code, n_instructions, shared) for code in item.codes]

    rounds = 0
    while pending := [j for j in jobs if j.open > 0]:
        rounds += 1
        requests = [j.request(seed) for j in pending]
        most = max(min(CHUNK, j.open) for j in pending)
        sampling = Decoding(temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=TOKENS_PER_ITEM * most + 32)
        results = engine.generate(requests, sampling)
        accepted = 0
        for job, result in zip(pending, results):
            k = min(CHUNK, job.open)
            reply = parse_list(result.text)
            taken = job.taken | {normalize_text(t) for t in job.items}
            # A question that is the survey item itself probes nothing.
            items = [] if reply is None else accept_items(reply, k, taken, job.value is None,
                                                            frozenset({normalize_text(job.item.text)}))
            if not items:
                job.failures += 1
                if job.failures > max_retries:
                    raise GenerationError(
                        f"{job.name}: no JSON list with a valid new item after {max_retries + 1} "
                        f"attempts in a row (asked for {k}); last reply: {result.text!r}")
                continue
            # A short reply still counts: its items are kept and the rest asked for next round.
            job.failures = 0
            job.items += items
            job.taken.update(normalize_text(t) for t in items)
            accepted += 1
        log.info("round %d: %d of %d replies added items", rounds, accepted, len(pending))

    sets = {}
    for attr in attributes:
        questions = next(j.items for j in jobs if j.item.id == attr and j.value is None)
        instructions = {j.value: j.items for j in jobs if j.item.id == attr and j.value is not None}
        sets[attr] = AttributeSet(attr, tuple(questions), instructions)
    ds = DemographicDataset(sets, version)
    validate(ds, codebook, attributes=attributes, min_questions=n_questions, min_instructions=n_instructions)
    return ds


def main_dataset(generator: str, out: str | Path, n_questions: int = FULL_QUESTIONS,
                 n_instructions: int = FULL_INSTRUCTIONS, seed: int = 0, *, max_retries: int = 3,
                 attributes: Sequence[str] | None = None, device: str = "auto",
                 dtype: str = "float32", codebook: str = "wvs7") -> DemographicDataset:
    """``raysim identity dataset``: load ``generator`` (a hub id, a local path, or ``embedded``),
    generate a dataset for ``codebook``'s attributes (a shipped name or a YAML path) and write it to
    ``out`` atomically (nothing is written if it fails)."""
    from raysim.engine.backends import make_engine
    from raysim.engine.loading import ModelSpec

    cb = load_codebook(codebook)   # a bad codebook fails before the model loads
    attributes = default_attributes(cb) if attributes is None else list(attributes)
    engine = make_engine(ModelSpec(name_or_path=generator, device=device, dtype=dtype))
    ds = generate_dataset(engine, cb, n_questions, n_instructions, seed, max_retries,
                          attributes, version=f"generated:{engine.name}:seed{seed}")
    header = (f"Demographic dataset generated by raysim with {engine.name} (seed {seed}):\n"
              f"{n_questions} questions per attribute, {n_instructions} instructions per value.")
    save_dataset(ds, out, header, cb, attributes=attributes,
                 min_questions=n_questions, min_instructions=n_instructions)
    return ds
