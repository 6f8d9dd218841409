"""``population: {aligned: {pool: SOURCE, target: SOURCE | {marginals: FILE}, by: [ATTR, ...],
method: ipf, per_country: false, size: N, cap: C, seed: S}}``: an aligned persona set
(raysim.align.aligned_set), made once into the directory of the run that uses it. A country can
so be simulated from published marginals alone; with a target of people, the run's scores compare
the simulation with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..mappings import from_mapping
from ..survey.sources import PopulationSource, SourceError, parse_source, register_source
from .aligned_set import POPULATION_DIR
from .build import MARGINALS, AlignSpec, make_aligned_set

SET_DIR = "aligned"


@register_source
class AlignedSource(PopulationSource):
    key = "aligned"

    def __init__(self, spec: AlignSpec):
        self.spec = spec

    @classmethod
    def parse(cls, value: Any, where: str) -> "AlignedSource":
        spec = from_mapping(AlignSpec, value, where, SourceError)
        try:
            spec.to_config()   # the pool and target sources checked with the config, not at run time
        except (ValueError, OSError) as e:
            raise SourceError(f"{where}: {e}") from None
        return cls(spec)

    def to_config(self) -> dict[str, Any]:
        return self.spec.to_config()

    def describe(self) -> str:
        target = (f"the marginals in {self.spec.target[MARGINALS]}" if MARGINALS in self.spec.target
                  else parse_source(self.spec.target, "target").describe())
        return (f"personas of {parse_source(self.spec.pool, 'pool').describe()} aligned to {target} over "
                f"{', '.join(self.spec.by)} ({self.spec.method}{', per country' if self.spec.per_country else ''})")

    def location(self, directory: str | Path) -> Path:
        return Path(directory).resolve() / SET_DIR / POPULATION_DIR

    def write(self, out: Path) -> None:
        make_aligned_set(self.spec, out.parent)
