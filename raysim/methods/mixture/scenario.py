"""What a prompt mixture is fitted to: targets of a population (one ordinal item each, or a scale
score summed over several items with the reverse-keyed ones reversed) and their observed
weighted human distributions, per country or pooled.

Every target is a distribution over positions 0..K−1 (an item's scale order; a scale's sum of
positions), so one Wasserstein distance (normalised by K − 1, ``metrics.distributions.w1``)
serves them all; ``label`` turns a position back into what a reader knows (the option's label,
the scale score).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...survey.codebook import Codebook, Item
from ...survey.columns import COUNTRY, WEIGHT

POOLED = "ALL"


class ScenarioError(ValueError):
    """A scenario that cannot be fitted: the message names the target or item at fault."""


@dataclass(frozen=True)
class Target:
    name: str
    items: tuple[Item, ...]
    reverse: frozenset[str] = frozenset()
    title: str = ""
    """A scale's name (its targets are described to the crafter by it)."""

    @property
    def is_scale(self) -> bool:
        return len(self.items) > 1 or bool(self.title)

    @property
    def size(self) -> int:
        return sum(len(it.codes) - 1 for it in self.items) + 1

    def label(self, position: int) -> str:
        if not self.is_scale:
            item = self.items[0]
            order = item.scale or item.codes
            return item.labels[order[position]]
        return str(self.offset + position)

    @property
    def offset(self) -> int:
        """The scale score of position 0: the sum of the items' lowest codes."""
        return sum(min(it.codes) for it in self.items)

    def positions(self, answers: pd.DataFrame) -> np.ndarray:
        """Per respondent, the target's position (NaN where an item is unanswered or off the scale)."""
        total = np.zeros(len(answers))
        for item in self.items:
            where = item.scale_positions()
            k = len(where) - 1
            pos = answers[item.id].map(lambda a: where.get(int(a), np.nan) if pd.notna(a) else np.nan)
            pos = pos.to_numpy(dtype=np.float64)
            total += (k - pos) if item.id in self.reverse else pos
        return total

    def distribution(self, item_probs: dict[str, np.ndarray]) -> np.ndarray:
        """The target's distribution from each item's option distribution (scale order) under one
        prompt: a scale's items answered independently given the prompt, so its sum's
        distribution is their convolution."""
        out = np.ones(1)
        for item in self.items:
            p = np.asarray(item_probs[item.id], dtype=np.float64)
            out = np.convolve(out, p[::-1] if item.id in self.reverse else p)
        total = out.sum()
        return out / total if total > 0 else np.full(self.size, 1.0 / self.size)


@dataclass(frozen=True)
class Observed:
    """A group's real respondents on the targets: positions [respondents, targets] (NaN: missing),
    their weights, and each target's weighted distribution."""

    group: str
    positions: np.ndarray
    weights: np.ndarray
    distributions: list[np.ndarray] = field(default_factory=list)


def parse_targets(raw: list, codebook: Codebook, where: str) -> list[Target]:
    """``[Q1, {scale: agreeableness, items: [A1, ..., A5], reverse: [A1]}, ...]``."""
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{where}: targets must be a non-empty list of item ids or scales")
    out = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            out.append(Target(entry, (_ordinal(codebook, entry, where),)))
            continue
        if not isinstance(entry, dict) or set(entry) - {"scale", "items", "reverse"} or "scale" not in entry:
            raise ScenarioError(f"{where}[{i}]: a target is an item id or {{scale: NAME, items: [...], reverse: [...]}}")
        items = entry.get("items")
        reverse = entry.get("reverse") or []
        if not isinstance(items, list) or not items or not isinstance(reverse, list):
            raise ScenarioError(f"{where}[{i}]: scale {entry['scale']!r} needs a list of items (and reverse: a list)")
        stray = sorted(set(map(str, reverse)) - set(map(str, items)))
        if stray:
            raise ScenarioError(f"{where}[{i}]: reverse-keyed {stray} are not items of scale {entry['scale']!r}")
        out.append(Target(str(entry["scale"]), tuple(_ordinal(codebook, str(q), where) for q in items),
                          frozenset(map(str, reverse)), title=str(entry["scale"])))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{where}: target names repeat: {names}")
    return out


def _ordinal(codebook: Codebook, qid: str, where: str) -> Item:
    if qid not in codebook.items:
        raise ScenarioError(f"{where}: {qid!r} is not an item of the codebook")
    item = codebook[qid]
    if not item.ordinal:
        raise ScenarioError(f"{where}: {qid} is {item.kind}; a mixture is fitted to ordinal items "
                            "(the Wasserstein distance needs an order)")
    return item


def observe(targets: list[Target], people: pd.DataFrame, group: str) -> Observed:
    """The respondents of ``group`` (a country code, or POOLED for all) on ``targets``."""
    mine = people if group == POOLED else people[people[COUNTRY] == group]
    positions = np.stack([t.positions(mine) for t in targets], axis=1) if len(mine) else np.empty((0, len(targets)))
    weights = mine[WEIGHT].to_numpy(dtype=np.float64)
    dists = []
    for j, t in enumerate(targets):
        ok = ~np.isnan(positions[:, j])
        counts = np.bincount(positions[ok, j].astype(int), weights=weights[ok], minlength=t.size)
        if counts.sum() <= 0:
            raise ScenarioError(f"group {group}: no real answers to target {t.name!r}")
        dists.append(counts / counts.sum())
    return Observed(group, positions, weights, dists)


def noise_floor(observed: Observed, j: int, draws: int = 50, seed: int = 0) -> float:
    """The distance a resample of the same respondents (same size, by weight) lies from the
    observed distribution of target ``j``, averaged over draws: what no simulator can beat."""
    from ...metrics.distributions import w1

    ok = ~np.isnan(observed.positions[:, j])
    pos, w = observed.positions[ok, j].astype(int), observed.weights[ok]
    rng = np.random.default_rng(seed)
    size = len(observed.distributions[j])
    picks = rng.choice(len(pos), size=(draws, len(pos)), p=w / w.sum())
    resampled = np.stack([np.bincount(pos[p], minlength=size) / len(p) for p in picks])
    return float(np.mean(w1(resampled, np.broadcast_to(observed.distributions[j], resampled.shape))))
