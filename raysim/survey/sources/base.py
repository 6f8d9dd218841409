"""The population-source interface and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from ...registry import Registry
from ..codebook import Codebook
from ..population import codebook_of

ENTRY_POINT_GROUP = "raysim.population_sources"
GENERATED_DIR = "population"
"""Where a generated source is written inside the directory of the run (or search) using it."""


class SourceError(ValueError):
    """A population source that cannot be resolved; the message names the key or text at fault."""


class PopulationSource(ABC):
    """One way to get a canonical population. ``generated`` sources are written once into
    the directory of the run that uses them; the others name a population on disk."""

    key: ClassVar[str]
    """The name in ``population: {<key>: ...}``."""
    generated: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def parse(cls, value: Any, where: str) -> "PopulationSource":
        """The source from the value under its key in a config (``where`` names that key)."""

    @classmethod
    def from_text(cls, text: str) -> "PopulationSource | None":
        """The source from a command line's ``--population`` text, if it is this kind's."""
        return None

    @abstractmethod
    def to_config(self) -> Any:
        """The value under the key that ``parse`` reads back; a run's hash covers it."""

    @abstractmethod
    def describe(self) -> str:
        """A phrase naming the population for reports ("the real carData::WVS respondents")."""

    def write(self, out: Path) -> None:
        """Write the population to ``out`` (generated sources)."""
        raise NotImplementedError(f"population source {self.key!r} is not generated")

    def location(self, directory: str | Path) -> Path:
        """Where the population lies for a run in ``directory``."""
        return Path(directory).resolve() / GENERATED_DIR

    def ensure(self, directory: str | Path) -> Path:
        """The population's path; a generated one is written there once (atomically)."""
        path = self.location(directory)
        if self.generated and not path.exists():
            self.write(path)
        return path

    def codebook(self, directory: str | Path = ".") -> Codebook:
        """The codebook of the population's items, read from the population (a generated one
        is written first; sources that know their codebook beforehand say so)."""
        return codebook_of(self.ensure(directory))

    def to_mapping(self) -> dict[str, Any]:
        return {self.key: self.to_config()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PopulationSource) and self.to_mapping() == other.to_mapping()

    def __hash__(self) -> int:
        return hash(repr(self.to_mapping()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_config()!r})"


SOURCES: Registry[type[PopulationSource]] = Registry("population source", ENTRY_POINT_GROUP,
                                                    ("raysim.survey.sources", "raysim.align.aligned_source"),
                                                    SourceError)


def register_source(cls: type[PopulationSource]) -> type[PopulationSource]:
    """Class decorator: make a source available under its ``key``."""
    return SOURCES.register(cls.key)(cls)


def registered_sources() -> dict[str, type[PopulationSource]]:
    """Every source by key, the entry-point group's included."""
    return SOURCES.all()


def parse_source(raw: Any, where: str = "population") -> PopulationSource:
    """A config's ``population`` value: a mapping with exactly one source key."""
    sources = registered_sources()
    if not isinstance(raw, dict) or len(raw) != 1:
        given = sorted(map(str, raw)) if isinstance(raw, dict) else raw
        raise SourceError(f"{where} needs exactly one of {sorted(sources)}; got {given!r}")
    (key, value), = raw.items()
    return SOURCES.get(key, where).parse(value, f"{where}.{key}")


def source_from_text(text: str) -> PopulationSource:
    """``--population`` text: the first source that reads it (``cardata``, ``synthetic:N``, a path)."""
    for cls in registered_sources().values():
        source = cls.from_text(text)
        if source is not None:
            return source
    raise SourceError(f"--population {text!r}: no such file or directory (or give synthetic:N or cardata)")
