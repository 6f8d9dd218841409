"""``raysim personas descriptors``: a local instruct model writes value descriptors (one per option
of the Inglehart–Welzel items) in a variant of the shipped set's style, as a descriptors YAML the
``value_persona`` kind reads (``descriptors: FILE``).

Variants: ``composable`` (a standalone sentence that hedges against what the answer does not
imply, like the shipped set), ``modular`` (a standalone sentence naming its topic, no hedge
required) and ``no_hedge`` (the answer plainly, nothing about what it does not imply).

Every option is one request asking for a JSON object ``{"descriptor": "You ..."}``; the reply is
parsed with ``json`` (never eval) and checked: a string, second person (starts with "You"), one
sentence, 6–45 words. Options whose reply fails are asked again with a new seed, up to
``max_retries`` times; one that still fails keeps the shipped descriptor (counted and listed in the
file's ``fallback:``), or with ``strict`` fails the command naming the option and the last reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..atomic import write_text_atomic
from ..engine.base import LM, Decoding, Option, Request
from ..engine.noise import derive_seed
from ..metrics.iw_map import MAP_ITEMS
from ..survey.codebook import Codebook
from .kinds.value_persona import DESCRIPTORS_FORMAT, SHIPPED, load_descriptors

VARIANTS = {
    "composable": ("Write one sentence in the second person that describes a person who gave this answer, "
                   "and add a short clause saying what the answer does NOT imply about their other views."),
    "modular": ("Write one sentence in the second person that describes a person who gave this answer, "
                "naming the topic of the question."),
    "no_hedge": "Write one plain sentence in the second person that states this answer as a fact about the person.",
}
SYSTEM = "You write short persona descriptions for a survey simulation. Reply with JSON only."


class DescriptorError(ValueError):
    """An option the generator did not describe validly within the retries (strict mode)."""


def parse_descriptor(text: str) -> str | None:
    """The ``descriptor`` of the first JSON object in a reply, if it passes the checks."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    sentence = value.get("descriptor") if isinstance(value, dict) else None
    if not isinstance(sentence, str):
        return None
    sentence = " ".join(sentence.split())
    words = len(sentence.split())
    enders = len(re.findall(r"[.!?](\s|$)", sentence))
    if not sentence.startswith("You") or not 6 <= words <= 45 or enders > 1:
        return None
    return sentence if sentence[-1] in ".!?" else sentence + "."


def _request(codebook: Codebook, qid: str, code: int, variant: str, seed: int) -> Request:
    item = codebook[qid]
    label = dict(item.options)[code]
    prompt = (f"Survey question: {item.text}\nThe person's answer: {label}\n\n{VARIANTS[variant]} "
              'Reply with a JSON object: {"descriptor": "You ..."}')
    return Request(prefix=({"role": "system", "content": SYSTEM},), question=prompt, options=(Option(0, "-"),),
                   qid=qid, seed=seed)


@dataclass
class Generated:
    descriptors: dict[str, dict[int, str]]
    attempts: int = 0
    fallback: list[str] = field(default_factory=list)


def generate_descriptors(engine: LM, codebook: Codebook, variant: str, *, seed: int = 0, max_retries: int = 3,
                         strict: bool = False, max_new_tokens: int = 80) -> Generated:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {list(VARIANTS)}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    shipped = load_descriptors(SHIPPED)
    todo = [(qid, code) for qid in MAP_ITEMS for code in codebook[qid].codes]
    out: dict[str, dict[int, str]] = {qid: {} for qid in MAP_ITEMS}
    last: dict[tuple[str, int], str] = {}
    result = Generated(out)
    decoding = Decoding(temperature=0.7, top_k=40, max_new_tokens=max_new_tokens)
    for attempt in range(max_retries + 1):
        if not todo:
            break
        requests = [_request(codebook, q, c, variant, derive_seed(seed, f"descriptor:{q}:{c}:{attempt}"))
                    for q, c in todo]
        result.attempts += len(requests)
        replies = engine.generate(requests, decoding)
        failed = []
        for (qid, code), reply in zip(todo, replies):
            sentence = parse_descriptor(reply.text)
            if sentence is None:
                failed.append((qid, code))
                last[(qid, code)] = reply.text
            else:
                out[qid][code] = sentence
        todo = failed
    for qid, code in todo:
        if strict:
            raise DescriptorError(f"{qid} option {code}: no valid descriptor after {max_retries + 1} attempts; "
                                  f"last reply: {last[(qid, code)][:200]!r}")
        out[qid][code] = shipped[qid][code]
        result.fallback.append(f"{qid}:{code}")
    return result


def write_descriptors(generated: Generated, codebook: Codebook, out: str | Path, *, variant: str,
                      generator: str) -> Path:
    doc = {"format": DESCRIPTORS_FORMAT, "variant": variant, "generator": generator,
           "fallback": generated.fallback,
           "items": {qid: {"text": codebook[qid].text, "descriptors": dict(sorted(d.items()))}
                     for qid, d in generated.descriptors.items()}}
    header = (f"# Value descriptors written by {generator} (variant {variant}); options listed under fallback "
              "kept the shipped descriptor.\n")
    return write_text_atomic(out, header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110))
