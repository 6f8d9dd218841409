"""Frozen dataclasses from YAML mappings, with errors that name the offending key."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], raw: Any, where: str, error: type[ValueError] = ValueError) -> T:
    """``cls(**raw)``, rejecting a non-mapping and unknown keys; a bad value's TypeError or
    ValueError becomes ``error`` prefixed with ``where`` (an ``error`` raised inside passes as is)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**raw)
    except error:
        raise
    except (TypeError, ValueError) as e:
        raise error(f"{where}: {e}") from None
