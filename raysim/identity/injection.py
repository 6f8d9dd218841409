"""From a respondent's demographics to the injection plan PSII gives them.

Each demographic attribute the respondent answered contributes ``scale · vector(attribute, value)``
at that attribute's layer (the vector taken at the same layer), with noise σ per term; the
respondent's prompt language contributes its language vector at the final decoder block.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from ..yamlfile import load_yaml

from ..engine.base import LM
from ..engine.noise import derive_seed
from ..engine.plan import InjectionPlan, PlanError, Term
from ..survey.codebook import Codebook, id_sort_key
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
    group_scales: Mapping[str, float] = field(default_factory=dict)
    """Per-group vector scales overriding ``vector_scale`` (a tune's result)."""
    attribute_scales: Mapping[str, float] = field(default_factory=dict)
    """Per-attribute scales overriding the group's; 0 switches an attribute off (a layer sweep)."""
    language_weights: Mapping[str, float] = field(default_factory=dict)
    """A mixed-language method's prompt-language mixture (empty: uniform over the languages)."""

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
        unknown = set(self.group_scales) - set(self.layers)
        if unknown:
            raise PlanError(f"group_scales names unknown groups {sorted(unknown)} (groups: {sorted(self.layers)})")
        for name, values in (("group_scales", self.group_scales), ("attribute_scales", self.attribute_scales),
                             ("language_weights", self.language_weights)):
            if any(v < 0 for v in values.values()):
                raise PlanError(f"{name} must be >= 0, got {dict(values)}")
        if self.language_weights and not sum(self.language_weights.values()) > 0:
            raise PlanError(f"language_weights must have a positive sum, got {dict(self.language_weights)}")

    @classmethod
    def from_dict(cls, psii: Mapping[str, Any]) -> PsiiPreset:
        unknown = set(psii) - set(cls.__dataclass_fields__) - {"decoding"}
        if unknown:
            raise PlanError(f"unknown psii preset keys {sorted(unknown)}")
        for key in ("layers", "attribute_groups"):
            if not isinstance(psii.get(key), Mapping):
                raise PlanError(f"the psii preset needs a mapping {key!r}")

        def mapping(key: str, cast) -> dict:
            return {str(k): cast(v) for k, v in (psii.get(key) or {}).items()}

        return cls(layers=mapping("layers", int), attribute_groups=mapping("attribute_groups", tuple),
                   attribute_layers=mapping("attribute_layers", int), group_scales=mapping("group_scales", float),
                   attribute_scales=mapping("attribute_scales", float),
                   language_weights=mapping("language_weights", float),
                   **{k: float(psii[k]) for k in ("sigma", "vector_scale", "language_scale") if k in psii})

    def to_dict(self) -> dict[str, Any]:
        """The ``psii`` block of a preset YAML (``from_dict`` reads it back); empty overrides left out."""
        out = {"layers": dict(self.layers), "attribute_groups": {g: list(a) for g, a in self.attribute_groups.items()},
               "sigma": self.sigma, "vector_scale": self.vector_scale, "language_scale": self.language_scale}
        for key in ("attribute_layers", "group_scales", "attribute_scales", "language_weights"):
            if getattr(self, key):
                out[key] = dict(getattr(self, key))
        return out

    @classmethod
    def for_model(cls, preset: str) -> PsiiPreset:
        from ..engine.loading import model_preset

        psii = model_preset(preset).get("psii")
        if not psii:
            raise PlanError(f"model preset {preset!r} has no psii block")
        return cls.from_dict(psii)

    def group_of(self, attribute: str) -> str:
        for group, attributes in self.attribute_groups.items():
            if attribute in attributes:
                return group
        raise PlanError(f"attribute {attribute} is in no layer group of the preset")

    def layer_of(self, attribute: str) -> int:
        if attribute in self.attribute_layers:
            return self.attribute_layers[attribute]
        return self.layers[self.group_of(attribute)]

    def scale_of(self, attribute: str) -> float:
        if attribute in self.attribute_scales:
            return self.attribute_scales[attribute]
        return self.group_scales.get(self.group_of(attribute), self.vector_scale)

    def with_(self, **changes: Any) -> PsiiPreset:
        return replace(self, **changes)

    @property
    def attributes(self) -> tuple[str, ...]:
        """Every attribute the preset injects, in questionnaire order (which fixes each term's
        index, and so its noise)."""
        return tuple(sorted((a for g in self.attribute_groups.values() for a in g), key=id_sort_key))

    def for_codebook(self, codebook: Codebook) -> PsiiPreset:
        """The preset for respondents of ``codebook``: its attributes are the codebook's own
        (``attributes:``, group -> items) where it declares them, else the preset's (a respondent
        without an answer to one gets no term for it)."""
        if not codebook.attributes:
            return self
        unknown = sorted(set(codebook.attributes) - set(self.layers))
        if unknown:
            raise PlanError(f"codebook {codebook.name!r} puts attributes in layer group(s) {unknown}, which the "
                            f"model preset has no layer for (groups: {sorted(self.layers)})")
        return self.with_(attribute_groups=dict(codebook.attributes))


def load_preset(name_or_path: str) -> PsiiPreset:
    """A model preset by name (``configs/models/<name>.yaml``) or a YAML file with a ``psii`` block."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"preset file {name_or_path!r} does not exist")
        data = load_yaml(path)
        if not isinstance(data, dict) or not data.get("psii"):
            raise PlanError(f"{path}: no psii block")
        return PsiiPreset.from_dict(data["psii"])
    return PsiiPreset.for_model(name_or_path)


def check_setup(engine: LM, library: VectorLibrary, preset: PsiiPreset) -> None:
    """Refuse a library built for another model, and a preset injecting outside the model."""
    library.check_model(engine.name, engine.fingerprint, engine.n_layers, engine.hidden_size)
    check_preset_layers(preset, library, engine.n_layers, engine.name)


def check_preset_layers(preset: PsiiPreset, library: VectorLibrary, n_layers: int, model: str) -> None:
    """Refuse a preset injecting the library's attributes outside the model's layers 1..n_layers."""
    used = {a: preset.layer_of(a) for a in preset.attributes if a in library.attributes}
    bad = {a: layer for a, layer in used.items() if not 1 <= layer <= n_layers}
    if bad:
        raise PlanError(f"the preset injects {bad} but model {model} has layers 1..{n_layers}")


def respondent_seed(seed: int, respondent_id: int) -> int:
    """The noise seed of one respondent: a pure function of (seed, id), whatever the batch."""
    return derive_seed(seed, f"respondent:{int(respondent_id)}")


def _answered(value: Any) -> bool:
    # Missing answers (negative WVS codes, None/NaN/pd.NA) contribute no vector.
    if value is None or pd.isna(value):
        return False
    return int(value) >= 0


def psii_plan(library: VectorLibrary, respondent: Mapping[str, Any], preset: PsiiPreset, seed: int,
              language: str | None = None, attributes: tuple[str, ...] | None = None,
              sigma: float | None = None, demographic: bool = True,
              skip_unknown: bool = False) -> InjectionPlan:
    """The plan for one respondent: a term per answered attribute (of its scale, none at scale 0),
    noise σ (the preset's unless given), and the language vector of ``language`` at the final
    block (none if None).

    ``demographic=False`` keeps the terms but zeroes their vectors (noise only: an ablation).
    A value the library has no vector for (e.g. an "Other" code) raises, or with
    ``skip_unknown`` contributes no term, as an unanswered item. ``attributes``: the preset's
    unless given."""
    terms = []
    for attribute in preset.attributes if attributes is None else attributes:
        value = respondent.get(attribute)
        if not _answered(value):
            continue
        if attribute not in library.attributes:
            raise LibraryError(f"the vector library has no attribute {attribute}")
        if skip_unknown and int(value) not in library.attributes[attribute]:
            continue
        scale = preset.scale_of(attribute)
        if scale == 0:   # an attribute switched off (a layer sweep injects one at a time)
            continue
        layer = preset.layer_of(attribute)
        vector = (library.vector(attribute, int(value), layer) if demographic
                  else np.zeros(library.manifest.hidden_size, np.float32))
        terms.append(Term(layer, vector, scale))
    final = None
    if language is not None and preset.language_scale:
        final = library.language(language) * preset.language_scale
    return InjectionPlan(tuple(terms), preset.sigma if sigma is None else sigma, seed, final)
