"""``population: {path: DIR}``: a canonical population already on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import PopulationSource, SourceError, register_source


@register_source
class PathSource(PopulationSource):
    key = "path"
    generated = False

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def parse(cls, value: Any, where: str) -> "PathSource":
        if not isinstance(value, str) or not value:
            raise SourceError(f"{where} must be a path, got {value!r}")
        return cls(value)

    @classmethod
    def from_text(cls, text: str) -> "PathSource | None":
        return cls(text) if Path(text).exists() else None

    def to_config(self) -> str:
        return str(Path(self.path).resolve())

    def describe(self) -> str:
        return str(self.path)

    def location(self, directory: str | Path) -> Path:
        """A relative path resolves against the current directory (the repository root, locally
        and under ``ray job submit --working-dir .``), not the run's."""
        return Path(self.path).resolve()
