"""``population: {synthetic: {n: N, seed: S}}``: a generated WVS-7-shaped population."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...mappings import from_mapping
from ..codebook import Codebook, load_codebook
from ..synthetic import write_synthetic
from .base import PopulationSource, SourceError, register_source

PREFIX = "synthetic:"


@dataclasses.dataclass(frozen=True)
class _Size:
    n: int
    seed: int = 0


@register_source
class SyntheticSource(PopulationSource):
    key = "synthetic"

    def __init__(self, n: int, seed: int = 0):
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise SourceError(f"population.synthetic.n must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SourceError(f"population.synthetic.seed must be an integer, got {seed!r}")
        self.n, self.seed = n, seed

    @classmethod
    def parse(cls, value: Any, where: str) -> "SyntheticSource":
        size = from_mapping(_Size, value, where, SourceError)
        return cls(size.n, size.seed)

    @classmethod
    def from_text(cls, text: str) -> "SyntheticSource | None":
        if not text.startswith(PREFIX):
            return None
        n = text.removeprefix(PREFIX)
        if not n.isdigit() or int(n) < 1:
            raise SourceError(f"--population {text!r}: expected {PREFIX}N with N a positive integer")
        return cls(int(n))

    def to_config(self) -> dict[str, int]:
        return {"n": self.n, "seed": self.seed}

    def describe(self) -> str:
        return f"a synthetic WVS-7 population of {self.n} (seed {self.seed})"

    def write(self, out: Path) -> None:
        write_synthetic(self.n, out, seed=self.seed)

    def codebook(self, directory: str | Path = ".") -> Codebook:
        return load_codebook("wvs7")
