"""Unique respondent ids from the ids a source file gives its rows.

Published files break their own rules: the WVS-7 v6.0 release repeats some ``D_INTERVIEW``
values inside one country, and a user's survey may number its rows per region or use text
ids. A population's ``respondent_id`` must be unique per row whatever the source does, so:

- the source's own id is kept in the ``source_id`` column (int64 where every id is an
  integer, text otherwise);
- an integer source id that appears once becomes the ``respondent_id`` unchanged;
- every row of a repeated integer id, and every row with a text id, gets a derived id:
  ``2**62 + blake2b-64(country, source id, occurrence) mod 2**62``, where ``occurrence`` counts
  that (country, source id) pair's rows in file order from 1. It depends on nothing else in the
  file, so a row keeps its id when other rows are added or removed, and it lies above any id a
  real survey uses (derived ids that meet a source id or each other are an error, never a
  silent merge);
- a file without an id column numbers its rows from 1 in file order.

``assign_ids`` works on the whole id column (one pass reading only the id and country columns),
so an import that streams the other columns in chunks slices its result per chunk.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SOURCE_ID = "source_id"
DERIVED_BASE = 1 << 62
_MAX_LISTED_ROWS = 20
_MAX_PRINTED = 30


class RespondentIdError(ValueError):
    """Source ids that cannot become unique respondent ids (the message names the row)."""


def derived_id(country: str, source_id: object, occurrence: int) -> int:
    """The derived respondent id of a (country, source id, occurrence) triple."""
    key = f"{country}\x1f{source_id}\x1f{occurrence}".encode()
    return DERIVED_BASE + int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % DERIVED_BASE


@dataclass(frozen=True)
class Repeat:
    """A source id given to more than one row."""

    source_id: object
    count: int
    countries: dict[str, int]
    """country -> rows with this id there."""
    rows: list[int]
    """The first rows (numbered from 1, header not counted) holding it."""

    def to_json(self) -> dict:
        sid = self.source_id
        return {"source_id": sid.item() if isinstance(sid, np.generic) else sid, "count": self.count,
                "countries": self.countries, "rows": self.rows}


@dataclass(frozen=True)
class IdAssignment:
    respondent_ids: np.ndarray
    """int64, one per row, unique."""
    source_ids: np.ndarray | None
    """int64 or object (text) source ids, None where the file had no id column."""
    repeats: list[Repeat] = field(default_factory=list)
    derived: int = 0
    """Rows whose respondent id is derived (repeated or text source ids)."""

    def summary(self, column: str) -> list[str]:
        """Printed after an import: what was derived and every repeated id."""
        if self.source_ids is None:
            return [f"no id column: respondents numbered 1..{len(self.respondent_ids)} in file order"]
        lines = []
        if self.derived:
            lines.append(f"{self.derived} respondent id(s) derived from (country, {column}, occurrence); "
                         f"{column} kept in column {SOURCE_ID}")
        if self.repeats:
            lines.append(f"{len(self.repeats)} {column} value(s) repeated, every row kept:")
            lines += [f"  {column} {r.source_id}: {r.count} rows ("
                      + ", ".join(f"{c} {n}" for c, n in r.countries.items()) + ")"
                      for r in self.repeats[:_MAX_PRINTED]]
            if len(self.repeats) > _MAX_PRINTED:   # a file numbered per region repeats thousands
                lines.append(f"  ... and {len(self.repeats) - _MAX_PRINTED} more: every one is in "
                             "import_report.json (repeated_ids)")
        return lines


def _integer_ids(values: pd.Series) -> np.ndarray | None:
    """The ids as int64 when every one is an integer (numeric or canonical digits), else None."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return None
    if pd.api.types.is_numeric_dtype(values.dtype):
        nums = values.to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_integer_dtype(values.dtype):
            return values.to_numpy(dtype=np.int64)
    else:
        text = values.astype("string").str.strip()
        # "007" or "12.0" are labels, not numbers: keep them as text so no two collapse
        if not text.str.fullmatch(r"-?(0|[1-9][0-9]*)").all():
            return None
        nums = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    if not (np.isfinite(nums) & (nums == np.floor(nums))).all():
        return None
    too_big = np.flatnonzero(np.abs(nums) >= DERIVED_BASE)
    if too_big.size:
        raise RespondentIdError(f"id {nums[too_big[0]]:.17g} at row {too_big[0] + 1} is out of range "
                                f"(|id| < 2**62)")
    return nums.astype(np.int64)


def assign_ids(source_ids: pd.Series | None, countries: pd.Series | np.ndarray, column: str = "id") -> IdAssignment:
    """Respondent ids for the rows of a file, from its id column (None: no such column) and
    country column, both whole. Empty ids are an error naming the first such row."""
    countries = np.asarray(countries, dtype=object)
    n = len(countries)
    if source_ids is None:
        return IdAssignment(np.arange(1, n + 1, dtype=np.int64), None)
    source_ids = source_ids.reset_index(drop=True)
    empty = source_ids.isna().to_numpy() | (source_ids.astype("string").str.strip() == "").fillna(True).to_numpy()
    if empty.any():
        raise RespondentIdError(f"{column} is empty at row {int(np.argmax(empty)) + 1}")
    ints = _integer_ids(source_ids)
    keys = ints if ints is not None else source_ids.astype("string").str.strip().to_numpy(dtype=object)
    counts = Counter(keys.tolist())
    repeated = {k for k, c in counts.items() if c > 1}
    ids = np.empty(n, dtype=np.int64)
    occurrence: Counter = Counter()
    where: dict[object, list[int]] = defaultdict(list)
    for i, (key, country) in enumerate(zip(keys.tolist(), countries.tolist())):
        if ints is not None and key not in repeated:
            ids[i] = key
            continue
        occurrence[(country, key)] += 1
        ids[i] = derived_id(country, key, occurrence[(country, key)])
        if key in repeated:
            where[key].append(i)
    derived = n - (int(sum(c for c in counts.values() if c == 1)) if ints is not None else 0)
    clash = Counter(ids.tolist())
    if len(clash) != n:
        twice = next(v for v, c in clash.items() if c > 1)
        rows = np.flatnonzero(ids == twice)[:2] + 1
        raise RespondentIdError(f"rows {rows[0]} and {rows[1]} would share respondent id {twice}: "
                                f"give another {column} column")
    repeats = [Repeat(source_id=key, count=len(rows), rows=[r + 1 for r in rows[:_MAX_LISTED_ROWS]],
                      countries=dict(Counter(countries[rows].tolist())))
               for key, rows in where.items()]
    return IdAssignment(ids, keys if ints is not None else keys.astype(object), repeats, derived)
