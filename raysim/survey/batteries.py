"""Question batteries: runs of consecutive items asked with one stem and one option list
("For each of the following, indicate how important it is in your life ... Family / Friends /
..."). Found from the codebook itself: the same options and a shared opening of the wording,
cut at the last sentence boundary, so the stem is whole sentences and every item keeps its own
sub-item text."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .codebook import Codebook

_MIN_STEM = 40          # characters: shorter shared openings are coincidences ("How ")
_BOUNDARY = re.compile(r"[.?:!]\s")


@dataclass(frozen=True)
class BatteryItem:
    stem: str
    subitem: str


def _stem(texts: list[str]) -> str | None:
    common = os.path.commonprefix(texts)
    cuts = [m.end() for m in _BOUNDARY.finditer(common)]
    if not cuts or cuts[-1] < _MIN_STEM or any(not t[cuts[-1]:].strip() for t in texts):
        return None
    return common[: cuts[-1]]


def battery_items(codebook: Codebook) -> dict[str, BatteryItem]:
    """qid → (stem, sub-item) for every scored question that belongs to a battery."""
    runs: list[list[str]] = []
    for q in codebook.question_ids:
        prev = runs[-1][-1] if runs else None
        if prev and codebook[prev].options == codebook[q].options and \
                len(os.path.commonprefix([codebook[prev].text, codebook[q].text])) >= _MIN_STEM:
            runs[-1].append(q)
        else:
            runs.append([q])
    out: dict[str, BatteryItem] = {}
    for run in runs:
        texts = [codebook[q].text for q in run]
        stem = _stem(texts) if len(run) > 1 else None
        if stem:
            out.update({q: BatteryItem(stem.strip(), t[len(stem):].strip()) for q, t in zip(run, texts)})
    return out
