"""Simulation methods as data: ``configs/methods/<name>.yaml``, validated into a ``MethodSpec``.

    name: high_temp
    description: Direct at temperature 2.
    kind: prompt            # a registered method kind (raysim.methods.kinds): prompt | simvbg | uniform | ...
    system: direct          # the rest are the kind's parameters
    logprob: {temperature: 2.0}
    generate: {temperature: 2.0, top_k: 20, max_new_tokens: 10}

Adding a method is a new YAML file; a new kind of method is one module (``raysim.methods.kinds``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


from ..mappings import from_mapping
from ..shipped import config_dir
from ..survey.codebook import Codebook
from ..survey.columns import BASE_COLUMNS
from .kinds import ANSWER_MODES, KINDS, MethodError, MethodKind
from ..yamlfile import YAMLFileError, load_yaml

__all__ = ["ANSWER_MODES", "MethodError", "MethodSpec", "available_methods", "get_method", "parse_method"]

# Method configs: configs/methods/*.yaml, shipped as package data ($RAYSIM_METHOD_CONFIGS points elsewhere).
METHOD_CONFIGS = config_dir("methods")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    kind: str
    params: Any
    """The kind's ``Params``; its fields also read as attributes of the spec (``spec.language``)."""
    description: str = ""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key == "params":   # unpickling asks before params is set
            raise AttributeError(key)
        return getattr(self.params, key)

    @property
    def kind_class(self) -> type[MethodKind]:
        return KINDS.get(self.kind)

    @property
    def needs_model(self) -> bool:
        return self.kind_class.needs_model

    def resources(self) -> dict[str, bool]:
        """Resource name → required (raysim.methods.resources)."""
        return self.kind_class.resources(self.params)

    def columns(self, codebook: Codebook) -> list[str]:
        """The population columns the method reads: base columns and what its kind reads."""
        wanted = self.kind_class.columns(self.params, codebook)
        return list(BASE_COLUMNS) + list(dict.fromkeys(c for c in wanted if c not in BASE_COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        """What a run's hash covers."""
        return {**self.kind_class.hash_defaults(), "name": self.name, "kind": self.kind,
                "description": self.description, **dataclasses.asdict(self.params)}


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), if any."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), None)
    return None


def build_params(cls: type, raw: Any, where: str) -> Any:
    """``cls`` from a mapping, nested dataclass fields from nested mappings (errors name the key)."""
    if not isinstance(raw, dict):
        raise MethodError(f"{where}: expected a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    for name, hint in typing.get_type_hints(cls).items():
        inner = _dataclass_in(hint)
        if inner is None or name not in raw:
            continue
        if raw[name] is None:
            if hint is inner:   # an empty mapping: the defaults
                del raw[name]
            continue
        raw[name] = build_params(inner, raw[name], f"{where} {name}")
    return from_mapping(cls, raw, where, MethodError)


def parse_method(raw: Any, where: str) -> MethodSpec:
    """A method config document (``where`` names it in errors)."""
    if not isinstance(raw, dict):
        raise MethodError(f"{where}: a method config is a YAML mapping")
    raw = dict(raw)
    name, kind, description = raw.pop("name", None), raw.pop("kind", "prompt"), raw.pop("description", "")
    if not name:
        raise MethodError(f"{where}: no 'name'")
    if not isinstance(kind, str):
        raise MethodError(f"{where}: kind must be a name, got {kind!r}")
    kind_class = KINDS.get(kind, where)
    params = build_params(kind_class.Params, raw, where)
    kind_class.check(params, where)
    return MethodSpec(name=str(name), kind=kind, params=params, description=str(description or ""))


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
        data = load_yaml(path)
    except YAMLFileError as e:
        raise MethodError(str(e)) from None
    return parse_method(data, str(path))
