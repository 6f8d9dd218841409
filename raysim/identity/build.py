"""Demographic vectors from a dataset: generate, take response means, subtract (no Ray here).

For each attribute, value and persona instruction (a *unit*), the model answers every probing
question of the attribute with the instruction as its system turn (one shared prefix, so the
engine computes it once); the mean hidden state over the response tokens is taken at every
layer. vector(attribute, value) = mean over the value's responses − mean over all of the
attribute's responses, at every layer (docs/design.md, "Identity construction").

Sampling seeds are keyed by the (instruction, question) text, so identical prompts give
identical responses whichever value or unit they belong to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from ..engine.base import LM, Option, Request, Decoding
from ..engine.noise import derive_seed
from .dataset import DemographicDataset, dataset_hash
from .library import Manifest, VectorLibrary

ANSWER_STYLE = " Answer in one or two sentences, in the first person."
"""Appended to every instruction: short, personal answers keep the build cheap and on topic."""


@dataclass(frozen=True)
class BuildParams:
    max_new_tokens: int = 32
    temperature: float = 0.7
    top_k: int = 20
    seed: int = 0

    def sampling(self) -> Decoding:
        return Decoding(temperature=self.temperature, top_k=self.top_k, max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class Unit:
    """One (attribute, value, instruction): answered on every question of the attribute."""

    attribute: str
    value: int
    index: int
    instruction: str
    questions: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.attribute}-{self.value}-{self.index}"


@dataclass
class UnitResult:
    unit: str
    attribute: str
    value: int
    sum: np.ndarray
    """[n_layers+1, hidden] float64: the sum of the response means."""
    count: int
    """Responses with at least one token (an empty response has no mean)."""
    texts: list[str]


def units(dataset: DemographicDataset) -> list[Unit]:
    """Every unit of the dataset in a fixed order."""
    out = []
    for attribute, aset in dataset.attributes.items():
        for value, instructions in aset.instructions.items():
            out += [Unit(attribute, int(value), i, text, tuple(aset.questions)) for i, text in enumerate(instructions)]
    return out


def unit_requests(unit: Unit, params: BuildParams) -> list[Request]:
    # The instruction travels in the question turns, not a shared prefix: the engine then decodes
    # many units' requests in one batch (decoding is bound by reading the weights once per step,
    # so rows per step are what make it fast), where a prefix per unit would decode 12 rows a step.
    system = {"role": "system", "content": unit.instruction + ANSWER_STYLE}
    # Options only parse an answer code; a free-text response has none (it is kept as text).
    return [Request(prefix=(), question=(system, {"role": "user", "content": q}), options=(Option(0, "-"),),
                    qid=f"{unit.name}#{k}", seed=derive_seed(params.seed, f"{unit.instruction}\x00{q}"))
            for k, q in enumerate(unit.questions)]


def run_units(engine: LM, batch: Sequence[Unit], params: BuildParams, n_layers: int) -> list[UnitResult]:
    """Generate the units' responses (one batch) and sum each unit's per-layer response means."""
    requests = [unit_requests(u, params) for u in batch]
    generated, means = engine.generate_with_means([r for rs in requests for r in rs], params.sampling(),
                                                  list(range(n_layers + 1)))
    results, at = [], 0
    for unit, reqs in zip(batch, requests):
        kept = [at + k for k in range(len(reqs)) if generated[at + k].token_ids]   # empty: no mean
        results.append(UnitResult(unit.name, unit.attribute, unit.value, means[kept].astype(np.float64).sum(axis=0),
                                  len(kept), [g.text for g in generated[at: at + len(reqs)]]))
        at += len(reqs)
    return results


def demographic_vectors(results: Iterable[UnitResult]) -> tuple[dict[tuple[str, int], np.ndarray],
                                                                 dict[str, dict[int, int]]]:
    """vector(attribute, value) = mean of the value's responses − mean of the attribute's, and
    the response counts per (attribute, value)."""
    sums: dict[str, dict[int, np.ndarray]] = {}
    counts: dict[str, dict[int, int]] = {}
    for r in results:
        if not r.count:
            continue
        by_value = sums.setdefault(r.attribute, {})
        by_value[r.value] = by_value.get(r.value, 0) + r.sum
        counts.setdefault(r.attribute, {})[r.value] = counts.get(r.attribute, {}).get(r.value, 0) + r.count
    vectors = {}
    for attribute, by_value in sums.items():
        pooled = sum(by_value.values()) / sum(counts[attribute].values())
        for value, s in by_value.items():
            vectors[(attribute, value)] = (s / counts[attribute][value] - pooled).astype(np.float32)
    return vectors, counts


def assemble(dataset: DemographicDataset, results: Sequence[UnitResult], *, model: str, fingerprint: str,
             n_layers: int, hidden_size: int, dtype: str, params: BuildParams) -> VectorLibrary:
    """The library from all units' results; every value of the dataset must have responses."""
    vectors, counts = demographic_vectors(results)
    missing = [f"{a}={v}" for a, aset in dataset.attributes.items() for v in aset.instructions
               if (a, int(v)) not in vectors]
    if missing:
        raise ValueError(f"no non-empty responses for {missing}: cannot build their vectors")
    empty = sum(len(r.texts) - r.count for r in results)
    manifest = Manifest(
        model=model, fingerprint=fingerprint, hidden_size=hidden_size, n_layers=n_layers, dtype=dtype,
        dataset_hash=dataset_hash(dataset),
        attributes={a: [int(v) for v in aset.instructions] for a, aset in dataset.attributes.items()},
        parameters={"generation": asdict(params), "answer_style": ANSWER_STYLE.strip(),
                    "responses": {a: {str(v): n for v, n in c.items()} for a, c in counts.items()},
                    "empty_responses": empty, "units": len(results)})
    return VectorLibrary(manifest, vectors)
