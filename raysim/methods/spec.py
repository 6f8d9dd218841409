"""Simulation methods as data: ``configs/methods/<name>.yaml``, validated into a ``MethodSpec``.

A method decides, for each respondent and question, the system turn (which template, with or
without the profile), the prompt language, the injection plan and the decoding. Three kinds of
recipe run them (``raysim.methods.simulator``): ``prompt`` (one prompt per question, optionally
injected: Direct, High-Temp, Multilingual, DivReq, PE, PSII and its ablations), ``simvbg`` (a
background story first, then three framed answers aggregated) and ``uniform`` (no model).
Adding a method is a new YAML file; a new kind of recipe is one small module.

    name: high_temp
    description: Direct at temperature 2.
    kind: prompt            # prompt | simvbg | uniform
    system: direct          # direct | divreq | pe (pe carries the respondent's profile)
    language: en            # en | zh | ar | es | ru | mixed (drawn per respondent, seeded)
    logprob: {temperature: 2.0}
    generate: {temperature: 2.0, top_k: 20, max_new_tokens: 10}
    injection: {demographic: true, language_vector: true, noise: true, layerwise: true}
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ..engine.base import Sampling
from ..engine.plan import NOISE_SCOPES
from ..mappings import from_mapping
from .templates import LANGUAGES

KINDS = ("prompt", "simvbg", "uniform")
SYSTEMS = ("direct", "divreq", "pe")
MIXED = "mixed"
ANSWER_MODES = ("logprob", "generate")

# Method configs live beside the package in the repository (configs/methods/*.yaml), as the model
# presets do; RAYSIM_METHOD_CONFIGS points elsewhere for installs without the repository.
METHOD_CONFIGS = Path(
    os.environ.get("RAYSIM_METHOD_CONFIGS", Path(__file__).resolve().parents[2] / "configs" / "methods"))


class MethodError(ValueError):
    """A method config that cannot be run; the message names the file and key."""


@dataclass(frozen=True)
class Logprob:
    temperature: float = 1.0
    """Options are scored under softmax(logits / T): 1 is the model's own distribution."""


@dataclass(frozen=True)
class Generate:
    temperature: float = 0.7
    top_k: int = 20
    max_new_tokens: int = 10

    def sampling(self) -> Sampling:
        return Sampling(temperature=self.temperature, top_k=self.top_k, max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class Injection:
    """PSII's injection, each part switchable for the ablations."""

    demographic: bool = True
    """The attribute vectors; False keeps noise-only terms at the same layers."""
    language_vector: bool = True
    """The value (language) vector of the prompt language at the final block."""
    noise: bool = True
    """Gaussian noise of the preset's σ on every term."""
    layerwise: bool = True
    """Each attribute at its preset layer; False: all at ``flat_depth`` of the model's depth."""
    flat_depth: float = 0.7
    noise_scope: str = "respondent"
    """One noise seed per respondent (a stable individual) or per question (the reference's way)."""

    def flat_layer(self, n_layers: int) -> int:
        return max(1, min(n_layers, round(self.flat_depth * n_layers)))


@dataclass(frozen=True)
class MethodSpec:
    name: str
    kind: str = "prompt"
    description: str = ""
    system: str = "pe"
    language: str = "en"
    logprob: Logprob = field(default_factory=Logprob)
    generate: Generate = field(default_factory=Generate)
    injection: Injection | None = None
    background_tokens: int = 96
    """simvbg: the length limit of the background story."""

    @property
    def needs_model(self) -> bool:
        return self.kind != "uniform"

    @property
    def profile(self) -> bool:
        """Reads the demographic items a profile is rendered from."""
        return self.kind == "simvbg" or (self.kind == "prompt" and self.system == "pe")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(spec: MethodSpec, where: str) -> MethodSpec:
    def bad(msg: str) -> MethodError:
        return MethodError(f"{where}: {msg}")

    if spec.kind not in KINDS:
        raise bad(f"kind {spec.kind!r} is not one of {list(KINDS)}")
    if spec.system not in SYSTEMS:
        raise bad(f"system {spec.system!r} is not one of {list(SYSTEMS)}")
    if spec.language not in (*LANGUAGES, MIXED):
        raise bad(f"language {spec.language!r} is not one of {[*LANGUAGES, MIXED]}")
    if not spec.logprob.temperature > 0 or not spec.generate.temperature > 0:
        raise bad("temperatures must be > 0")
    if spec.generate.top_k < 0 or spec.generate.max_new_tokens < 1 or spec.background_tokens < 1:
        raise bad("generate.top_k must be >= 0, generate.max_new_tokens and background_tokens >= 1")
    inj = spec.injection
    if inj is not None:
        if spec.kind != "prompt":
            raise bad(f"injection is supported for kind 'prompt' only, not {spec.kind!r}")
        if inj.noise_scope not in NOISE_SCOPES:
            raise bad(f"injection.noise_scope {inj.noise_scope!r} is not one of {list(NOISE_SCOPES)}")
        if not 0 < inj.flat_depth <= 1:
            raise bad(f"injection.flat_depth must be in (0, 1], got {inj.flat_depth}")
    return spec


def _build(cls, raw: Any, where: str):
    return from_mapping(cls, raw, where, MethodError)


def parse_method(raw: Any, where: str) -> MethodSpec:
    """A method config document (``where`` names it in errors)."""
    if not isinstance(raw, dict):
        raise MethodError(f"{where}: a method config is a YAML mapping")
    raw = dict(raw)
    if not raw.get("name"):
        raise MethodError(f"{where}: no 'name'")
    parts = {"logprob": _build(Logprob, raw.pop("logprob", None), f"{where} logprob"),
             "generate": _build(Generate, raw.pop("generate", None), f"{where} generate")}
    if raw.get("injection") is not None:
        parts["injection"] = _build(Injection, raw.pop("injection"), f"{where} injection")
    return _check(_build(MethodSpec, {**raw, **parts}, where), where)


def available_methods() -> list[str]:
    return sorted(p.stem for p in METHOD_CONFIGS.glob("*.yaml"))


@lru_cache(maxsize=None)
def get_method(name: str) -> MethodSpec:
    """A method by name (``configs/methods/<name>.yaml``) or by the path of a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = METHOD_CONFIGS / f"{name}.yaml"
        if not path.is_file():
            raise MethodError(f"unknown method {name!r}; known: {available_methods()} (in {METHOD_CONFIGS})")
    elif not path.is_file():
        raise MethodError(f"method config {name!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise MethodError(f"{path}: not valid YAML ({e})") from None
    return parse_method(data, str(path))


def method_from_dict(data: dict[str, Any]) -> MethodSpec:
    """Back from ``MethodSpec.to_dict`` (a run directory's resolved config)."""
    return parse_method(data, "resolved method")
