"""From a respondent's demographics to the injection plan PSII gives them.

Each demographic attribute the respondent answered contributes ``scale · vector(attribute, value)``
at that attribute's layer (the vector taken at the same layer), with noise σ per term; the
respondent's prompt language contributes its language vector at the final decoder block.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..engine.base import LM
from ..engine.noise import derive_seed
from ..engine.plan import InjectionPlan, PlanError, Term
from .dataset import ATTRIBUTES
from .library import LibraryError, VectorLibrary


@dataclass(frozen=True)
class PsiiPreset:
    """Where and how strongly PSII injects, for one model (``configs/models/*.yaml``, ``psii``)."""

    layers: Mapping[str, int]
    """layer group (low/mid/high) → layer (hidden_states indexing, 1..n_layers)."""
    attribute_groups: Mapping[str, tuple[str, ...]]
    sigma: float
    vector_scale: float = 2.0
    language_scale: float = 1.0
    attribute_layers: Mapping[str, int] = field(default_factory=dict)
    """Per-attribute layers overriding the groups (a layer sweep's or a tune's result)."""

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for group, attributes in self.attribute_groups.items():
            if group not in self.layers:
                raise PlanError(f"attribute group {group!r} has no layer (layers: {dict(self.layers)})")
            for a in attributes:
                if a in seen:
                    raise PlanError(f"attribute {a} is in groups {seen[a]!r} and {group!r}")
                seen[a] = group
        if self.sigma < 0 or self.vector_scale < 0:
            raise PlanError("sigma and vector_scale must be >= 0")

    @classmethod
    def from_dict(cls, psii: Mapping[str, Any]) -> PsiiPreset:
        known = set(cls.__dataclass_fields__) - {"attribute_groups", "layers", "attribute_layers"}
        unknown = set(psii) - known - {"attribute_groups", "layers", "attribute_layers", "decoding"}
        if unknown:
            raise PlanError(f"unknown psii preset keys {sorted(unknown)}")
        return cls(layers={str(k): int(v) for k, v in psii["layers"].items()},
                   attribute_groups={str(k): tuple(v) for k, v in psii["attribute_groups"].items()},
                   attribute_layers={str(k): int(v) for k, v in (psii.get("attribute_layers") or {}).items()},
                   **{k: float(psii[k]) for k in known if k in psii})

    @classmethod
    def for_model(cls, preset: str) -> PsiiPreset:
        from ..engine.loading import model_preset

        psii = model_preset(preset).get("psii")
        if not psii:
            raise PlanError(f"model preset {preset!r} has no psii block")
        return cls.from_dict(psii)

    def layer_of(self, attribute: str) -> int:
        if attribute in self.attribute_layers:
            return self.attribute_layers[attribute]
        for group, attributes in self.attribute_groups.items():
            if attribute in attributes:
                return self.layers[group]
        raise PlanError(f"attribute {attribute} is in no layer group of the preset")

    def with_(self, **changes: Any) -> PsiiPreset:
        return replace(self, **changes)


def check_setup(engine: LM, library: VectorLibrary, preset: PsiiPreset) -> None:
    """Refuse a library built for another model, and a preset injecting outside the model."""
    loaded = engine.loaded
    library.check_model(loaded.name, loaded.fingerprint, loaded.n_layers, loaded.hidden_size)
    used = {a: preset.layer_of(a) for a in library.attributes}
    bad = {a: layer for a, layer in used.items() if not 1 <= layer <= loaded.n_layers}
    if bad:
        raise PlanError(f"the preset injects {bad} but model {loaded.name} has layers 1..{loaded.n_layers}")


def respondent_seed(seed: int, respondent_id: int) -> int:
    """The noise seed of one respondent: a pure function of (seed, id), whatever the batch."""
    return derive_seed(seed, f"respondent:{int(respondent_id)}")


def _answered(value: Any) -> bool:
    # Missing answers (negative WVS codes, None/NaN/pd.NA) contribute no vector.
    if value is None or pd.isna(value):
        return False
    return int(value) >= 0


def psii_plan(library: VectorLibrary, respondent: Mapping[str, Any], preset: PsiiPreset, seed: int,
              language: str | None = None, attributes: tuple[str, ...] = ATTRIBUTES,
              sigma: float | None = None, demographic: bool = True,
              skip_unknown: bool = False) -> InjectionPlan:
    """The plan for one respondent: a term per answered attribute, noise σ (the preset's unless
    given), and the language vector of ``language`` at the final block (none if None).

    ``demographic=False`` keeps the terms but zeroes their vectors (noise only: an ablation).
    A value the library has no vector for (e.g. an "Other" code) raises, or with
    ``skip_unknown`` contributes no term, as an unanswered item."""
    terms = []
    for attribute in attributes:
        value = respondent.get(attribute)
        if not _answered(value):
            continue
        if attribute not in library.attributes:
            raise LibraryError(f"the vector library has no attribute {attribute}")
        if skip_unknown and int(value) not in library.attributes[attribute]:
            continue
        layer = preset.layer_of(attribute)
        vector = (library.vector(attribute, int(value), layer) if demographic
                  else np.zeros(library.manifest.hidden_size, np.float32))
        terms.append(Term(layer, vector, preset.vector_scale))
    final = None
    if language is not None and preset.language_scale:
        final = library.language(language) * preset.language_scale
    return InjectionPlan(tuple(terms), preset.sigma if sigma is None else sigma, seed, final)
