"""What a Tune search varies (``space:`` of a ``configs/tune`` YAML), and how a sampled point
becomes a PSII preset. No Ray here: the search (``raysim.tune.search``) turns the ranges into
Tune domains.

    space:
      sigma: [0.0, 0.8]                        # noise sigma (continuous)
      layers: {per: group, range: [12, 30]}    # per: group | attribute; range default: the whole model
      vector_scale: {per: group, range: [0.5, 4.0], log: true}   # per: group | all
      language_scale: [0.0, 2.0]               # the value vector's scale
      language_mix: [en, zh, ar, es, ru]       # prompt-language weights on the simplex

A range is ``[low, high]`` or ``{low, high, log}``. Parameter names are flat: ``sigma``,
``layer.<group or attribute>``, ``scale.<group>`` (``scale.all``: the one vector_scale),
``language_scale``, ``mix.<language>``. Mixture weights are sampled as one uniform u per
language and mapped to w = −log u / Σ(−log u): a flat Dirichlet on the simplex, and a space
the samplers can search coordinate-wise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..identity.injection import PsiiPreset

PER = ("group", "attribute")
SCALE_PER = ("group", "all")
MIX_LOW = 1e-6   # u > 0: −log u stays finite


class SpaceError(ValueError):
    """A search space that cannot be searched; the message names the key."""


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise SpaceError(f"range low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise SpaceError(f"a log range needs low > 0, got {self.low}")

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class SearchSpace:
    sigma: Range | None = None
    layers: Range | None = None
    layers_per: str = "group"
    vector_scale: Range | None = None
    scale_per: str = "group"
    language_scale: Range | None = None
    language_mix: tuple[str, ...] = ()

    def parameters(self, base: PsiiPreset, attributes: tuple[str, ...]) -> dict[str, Range]:
        """Every searched parameter and its range, for the ``attributes`` a population has (a
        group none of them is in has nothing to tune)."""
        if not attributes:
            raise SpaceError("the population has none of the vector library's attributes: nothing to inject")
        groups = tuple(g for g in base.attribute_groups if set(base.attribute_groups[g]) & set(attributes))
        out: dict[str, Range] = {}
        if self.sigma:
            out["sigma"] = self.sigma
        if self.layers:
            for name in (groups if self.layers_per == "group" else attributes):
                out[f"layer.{name}"] = self.layers
        if self.vector_scale:
            for name in (groups if self.scale_per == "group" else ("all",)):
                out[f"scale.{name}"] = self.vector_scale
        if self.language_scale:
            out["language_scale"] = self.language_scale
        for language in self.language_mix:
            out[f"mix.{language}"] = Range(MIX_LOW, 1.0)
        if not out:
            raise SpaceError("space: searches nothing (give sigma, layers, vector_scale, language_scale "
                             "or language_mix)")
        return out

    def preset(self, base: PsiiPreset, params: Mapping[str, Any]) -> PsiiPreset:
        """The preset a sampled point stands for: the base with the searched values replaced."""
        layers, attribute_layers = dict(base.layers), dict(base.attribute_layers)
        group_scales, changes = dict(base.group_scales), {}
        mix = {}
        for name, value in params.items():
            kind, _, key = name.partition(".")
            if kind == "layer":
                (layers if key in layers else attribute_layers)[key] = int(value)
            elif kind == "scale":
                if key == "all":
                    changes["vector_scale"] = float(value)
                else:
                    group_scales[key] = float(value)
            elif kind == "mix":
                mix[key] = -math.log(float(value))
            elif name in ("sigma", "language_scale"):
                changes[name] = float(value)
            else:
                raise SpaceError(f"unknown search parameter {name!r}")
        if mix:
            total = sum(mix.values())
            changes["language_weights"] = ({k: v / total for k, v in mix.items()} if total > 0
                                           else {k: 1.0 / len(mix) for k in mix})
        return base.with_(layers=layers, attribute_layers=attribute_layers, group_scales=group_scales, **changes)

    def point(self, base: PsiiPreset, parameters: Mapping[str, Range]) -> dict[str, float] | None:
        """The base preset as a point of the space (a search's first trial, so the untuned preset
        is among those compared), or None where a base value lies outside its range."""
        point: dict[str, float] = {}
        weights = base.language_weights or {lang: 1.0 for lang in self.language_mix}
        total = sum(weights.get(lang, 0.0) for lang in self.language_mix) or 1.0
        for name in parameters:
            kind, _, key = name.partition(".")
            if kind == "layer":
                point[name] = base.layers[key] if key in base.layers else base.layer_of(key)
            elif kind == "scale":
                point[name] = base.vector_scale if key == "all" else base.group_scales.get(key, base.vector_scale)
            elif kind == "mix":
                point[name] = math.exp(-weights.get(key, 0.0) / total)
            else:
                point[name] = getattr(base, name)
        if all(value in parameters[name] for name, value in point.items()):
            return point
        return None


def _range(raw: Any, where: str, integer: bool = False) -> Range:
    if isinstance(raw, (list, tuple)) and len(raw) == 2:
        low, high, log = raw[0], raw[1], False
    elif isinstance(raw, Mapping) and {"low", "high"} <= set(raw) and set(raw) <= {"low", "high", "log"}:
        low, high, log = raw["low"], raw["high"], raw.get("log", False)
    else:
        raise SpaceError(f"{where}: a range is [low, high] or {{low, high, log}}, got {raw!r}")
    wanted = (int,) if integer else (int, float)
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, wanted):
            raise SpaceError(f"{where}: bounds are {'integers' if integer else 'numbers'}, got {bound!r}")
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log is true or false, got {log!r}")
    # every searched quantity (a noise sigma, a scale, a layer) is non-negative
    if low < 0:
        raise SpaceError(f"{where}: must be >= 0, got [{low}, {high}]")
    try:
        cast = int if integer else float
        return Range(cast(low), cast(high), log=log, integer=integer)
    except SpaceError as e:
        raise SpaceError(f"{where}: {e}") from None


def _per(raw: Mapping, where: str, allowed: tuple[str, ...]) -> str:
    per = raw.get("per", allowed[0])
    if per not in allowed:
        raise SpaceError(f"{where}.per must be one of {list(allowed)}, got {per!r}")
    return per


def parse_space(raw: Any, n_layers: int, languages: tuple[str, ...]) -> SearchSpace:
    """``space:`` of a tune config, checked against the model's depth and the prompt languages."""
    if not isinstance(raw, Mapping):
        raise SpaceError("space: must be a mapping")
    unknown = set(raw) - {"sigma", "layers", "vector_scale", "language_scale", "language_mix"}
    if unknown:
        raise SpaceError(f"space: unknown keys {sorted(unknown)}")
    fields: dict[str, Any] = {}
    if raw.get("sigma") is not None:
        fields["sigma"] = _range(raw["sigma"], "space.sigma")
    if raw.get("language_scale") is not None:
        fields["language_scale"] = _range(raw["language_scale"], "space.language_scale")
    for key, per_key, allowed, integer in (("layers", "layers_per", PER, True),
                                           ("vector_scale", "scale_per", SCALE_PER, False)):
        spec = raw.get(key)
        if spec is None:
            continue
        if not isinstance(spec, Mapping) or set(spec) - {"per", "range", "log"}:
            raise SpaceError(f"space.{key}: a mapping {{per, range}}, got {spec!r}")
        fields[per_key] = _per(spec, f"space.{key}", allowed)
        rng = spec.get("range", [1, n_layers] if key == "layers" else None)
        if rng is None:
            raise SpaceError(f"space.{key}: needs a range")
        if spec.get("log") and isinstance(rng, (list, tuple)):
            rng = {"low": rng[0], "high": rng[1], "log": True}
        fields[key] = _range(rng, f"space.{key}.range", integer=integer)
    layers = fields.get("layers")
    if layers and not (1 <= layers.low and layers.high <= n_layers):
        raise SpaceError(f"space.layers.range [{layers.low:g}, {layers.high:g}] is outside the model's "
                         f"layers 1..{n_layers}")
    if raw.get("language_mix") is not None:
        mix = tuple(raw["language_mix"])
        bad = [lang for lang in mix if lang not in languages]
        if bad or len(mix) < 2 or len(set(mix)) != len(mix):
            raise SpaceError(f"space.language_mix: two or more distinct languages of {list(languages)}, got {list(mix)}")
        fields["language_mix"] = mix
    return SearchSpace(**fields)
