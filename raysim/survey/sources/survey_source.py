"""``population: {survey: {file: F, codebook: CB.yaml, id: COL, country: COL | country_code: ISO3,
weight: COL, text: COL}}``: a survey file with its codebook (or a narrative persona file, ``text``
naming its persona column), imported into the run directory once (what ``raysim data import F
--codebook CB.yaml`` does by hand)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...mappings import from_mapping
from ..codebook import Codebook, load_codebook
from ..importer import Layout, import_survey
from .base import PopulationSource, SourceError, register_source


@dataclasses.dataclass(frozen=True)
class _Options:
    file: str
    codebook: str
    id: str | None = None
    country: str | None = None
    country_code: str | None = None
    weight: str | None = None
    text: str | None = None
    strict: bool = False


@register_source
class SurveySource(PopulationSource):
    key = "survey"

    def __init__(self, options: _Options):
        self.options = options
        try:
            self.layout = Layout(id=options.id, country=options.country, country_code=options.country_code,
                                 weight=options.weight, text=options.text)
        except ValueError as e:
            raise SourceError(f"population.survey: {e}") from None

    @classmethod
    def parse(cls, value: Any, where: str) -> "SurveySource":
        options = from_mapping(_Options, value, where, SourceError)
        for key in ("file", "codebook", "id", "country", "country_code", "weight", "text"):
            if getattr(options, key) is not None and not isinstance(getattr(options, key), str):
                raise SourceError(f"{where}.{key} must be text, got {getattr(options, key)!r}")
        if not isinstance(options.strict, bool):
            raise SourceError(f"{where}.strict must be true or false, got {options.strict!r}")
        for key in ("file", "codebook"):
            if not Path(getattr(options, key)).is_file():
                raise SourceError(f"{where}.{key}: {getattr(options, key)} is not a file")
        return cls(options)

    def to_config(self) -> dict[str, Any]:
        """Paths absolute and the codebook by content: a run is the same run only on the same
        file and the same codebook."""
        d = {k: v for k, v in dataclasses.asdict(self.options).items() if v not in (None, False)}
        d["file"] = str(Path(self.options.file).resolve())
        d["codebook"] = str(Path(self.options.codebook).resolve())
        d["codebook_sha256"] = self.codebook().sha256
        return d

    def describe(self) -> str:
        return f"the survey {self.options.file} ({self.codebook().title})"

    def write(self, out: Path) -> None:
        import_survey(self.options.file, self.codebook(), out, self.layout, strict=self.options.strict)

    def codebook(self, directory: str | Path = ".") -> Codebook:
        return load_codebook(self.options.codebook)
