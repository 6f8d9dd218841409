"""What ``raysim data describe PATH`` prints: size, countries and missing answers of a
canonical population, computed batch by batch with pyarrow (null counts and a value count
of the country column), so the full 97k population is never materialised in pandas."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc

from .codebook import load_codebook
from .population import COUNTRY, codebook_of, dataset

WORST_ITEMS = 10


@dataclass(frozen=True)
class PopulationSummary:
    path: str
    codebook: str
    respondents: int
    countries: dict[str, int]
    """Respondents per country, most first (ties by code)."""
    missing: dict[str, float]
    """Item -> share of respondents without an answer, in questionnaire order."""

    @property
    def overall_missing(self) -> float:
        """Share of all item cells without an answer."""
        return sum(self.missing.values()) / len(self.missing) if self.missing else 0.0

    def worst(self, n: int = WORST_ITEMS) -> list[tuple[str, float]]:
        """The n items with the most missing answers (ties in questionnaire order)."""
        return sorted(self.missing.items(), key=lambda kv: -kv[1])[:n]

    def format(self, worst: int = WORST_ITEMS) -> str:
        codebook = load_codebook(self.codebook)
        width = max((len(c) for c in self.countries), default=0)
        lines = [f"population: {self.path}",
                 f"codebook: {self.codebook} ({len(self.missing)} items)",
                 f"respondents: {self.respondents}", f"countries: {len(self.countries)}"]
        lines += [f"  {c:<{width}} {n:>7} {n / self.respondents:7.1%}"
                  for c, n in self.countries.items()]
        lines.append(f"missing answers: {self.overall_missing:.1%} of all item cells")
        empty = [q for q, r in self.missing.items() if r == 1.0]
        if empty:
            lines.append(f"items with no answers at all: {len(empty)}")
        lines.append("items with most missing answers:")
        qwidth = max((len(q) for q in self.missing), default=0)
        for q, rate in self.worst(worst):
            item = codebook.items.get(q)
            label = (item.short or item.text) if item else ""
            lines.append(f"  {q:<{qwidth}} {rate:7.1%}  {label}".rstrip())
        return "\n".join(lines)


def describe_population(path: str | Path) -> PopulationSummary:
    """Summarise a canonical population (a Parquet file or shard directory)."""
    codebook = codebook_of(path)
    ds = dataset(path)
    items = [name for name in ds.schema.names if name in codebook]
    rows = 0
    countries: Counter[str] = Counter()
    nulls = dict.fromkeys(items, 0)
    for batch in ds.to_batches(columns=[COUNTRY] + items):
        rows += batch.num_rows
        for entry in pc.value_counts(batch.column(0)).to_pylist():
            countries[entry["values"]] += entry["counts"]
        for i, q in enumerate(items, start=1):
            nulls[q] += batch.column(i).null_count
    return PopulationSummary(
        path=str(path), codebook=codebook.name, respondents=rows,
        countries=dict(sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))),
        missing={q: n / rows if rows else 0.0 for q, n in nulls.items()},
    )
