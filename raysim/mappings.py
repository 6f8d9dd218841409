"""Frozen dataclasses from YAML mappings, with errors that name the offending key.

Every field's value is checked against the field's annotation with pydantic in strict mode:
``"no"`` is not a boolean, ``2.5`` and ``"abc"`` are not integers (an integer is a float). The
value passed on is the one given (a YAML list for a tuple field is accepted as the tuple it is),
so what a run's hash covers is exactly what the file says.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError

T = TypeVar("T")


def from_mapping(cls: type[T], raw: Any, where: str, error: type[ValueError] = ValueError) -> T:
    """``cls(**raw)``, rejecting a non-mapping, unknown keys and values not of their field's
    type; a bad value's TypeError or ValueError becomes ``error`` prefixed with ``where`` (an
    ``error`` raised inside passes as is)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    hints = _hints(cls)
    for key, value in raw.items():
        problem = type_problem(hints.get(key), value)
        if problem:
            raise error(f"{where}: {key}: {problem}")
    try:
        return cls(**raw)
    except error:
        raise
    except (TypeError, ValueError) as e:
        raise error(f"{where}: {e}") from None


def type_problem(hint: Any, value: Any) -> str | None:
    """Why ``value`` is not of type ``hint`` (None: it is, or the hint is not checkable)."""
    if hint is None or hint is Any:
        return None
    adapter = _adapter(hint)
    if adapter is None:
        return None if not isinstance(hint, type) or isinstance(value, hint) else \
            f"expected {hint.__name__}, got {type(value).__name__}"
    try:
        adapter.validate_python(value, strict=True)
        return None
    except ValidationError as e:
        try:   # YAML has lists where the dataclass keeps tuples
            adapter.validate_python(_tuples(value), strict=True)
            return None
        except ValidationError:
            pass
        first = e.errors()[0]
        at = ".".join(map(str, first["loc"]))
        return f"expected {_name(hint)}, got {value!r}" + (f" ({at}: {first['msg']})" if at else "")


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):   # an annotation only a type checker resolves: unchecked
        return {}


@lru_cache(maxsize=None)
def _adapter(hint: Any) -> TypeAdapter | None:
    """A strict validator of ``hint``; None for classes pydantic has no schema for (checked by
    isinstance instead). Dataclass fields are checked where the dataclass is built."""
    if dataclasses.is_dataclass(hint):
        return None
    try:
        if any(dataclasses.is_dataclass(a) for a in typing.get_args(hint)):
            return None
        return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except (PydanticSchemaGenerationError, TypeError, NameError):
        return None
