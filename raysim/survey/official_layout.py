"""The official WVS-7 file layout, and canonical populations written in it.

``data/wvs7_columns.txt`` lists the 611 columns of the v6.0 cross-national release in file
order (its header says what that list rests on). ``to_official_frame`` lays a canonical
population out in those columns, and ``write_official`` writes such a frame as CSV, SPSS
``.sav`` or Stata ``.dta``: for tests of the importer, and for users who hand a synthetic
population to tools that expect the official files.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from ..atomic import write_atomic

from .codebook import MISSING_CODES, Codebook, CodebookError, Item, load_codebook
from .countries import load_countries
from .population import BASE_COLUMNS, COUNTRY, ID, WEIGHT, PopulationError

LAYOUT_FILE = "wvs7_columns.txt"
ID_COLUMN, COUNTRY_COLUMN, WEIGHT_COLUMN = "D_INTERVIEW", "B_COUNTRY_ALPHA", "W_WEIGHT"
NOT_AVAILABLE = -5
EXPORT_MISSING = np.array([-1, -2, -5], dtype=np.int32)
"""Null answers are written as this deterministic mix of don't know / no answer / missing."""

STRING_COLUMNS = frozenset({
    "version", "doi", "B_COUNTRY_ALPHA", "C_COW_ALPHA", "N_REGION_NUTS2", "N_REGION_NUTS1",
    "N_TOWN", "LNGE_ISO", "Q223_ABREV", "Q223_LOCAL", "X002_02B", "V002A_01", "V001A_01",
    "Partyname", "Partyabb", "CPARTY", "CPARTYABB",
})
"""Text columns of the release; every other column is numeric."""

Labels = dict[str, dict[int, str]]
"""Value labels, {column: {code: label}}."""

EXPORT_VERSION = "raysim export (not WVS data)"
_DTA_LABEL_MAX = 80  # Stata's limit on variable labels; also plenty for SPSS
_BASE_LABELS = {ID_COLUMN: "Interview ID", COUNTRY_COLUMN: "ISO 3166-1 alpha-3 country code",
                WEIGHT_COLUMN: "Weight", "S018": "Equilibrated weight-1000"}


@lru_cache(maxsize=1)
def official_columns() -> tuple[str, ...]:
    """The official WVS-7 column names in file order."""
    path = resources.files("raysim.survey") / "data" / LAYOUT_FILE
    names = [s for line in path.read_text(encoding="utf-8").splitlines()
             if (s := line.strip()) and not s.startswith("#")]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CodebookError(f"{LAYOUT_FILE}: duplicate column(s) {dup}")
    return tuple(names)


def _layout_for(codebook: Codebook) -> tuple[str, ...]:
    cols = official_columns()
    absent = [q for q in codebook.items if q not in cols]
    if absent:
        raise CodebookError(f"codebook {codebook.name!r} item(s) {absent} have no column in the "
                            f"official WVS-7 layout ({LAYOUT_FILE})")
    return cols


def _item_column(values: pd.Series | None, ids: np.ndarray, position: int) -> np.ndarray:
    """Codes with nulls replaced by the missing-code mix, a pure function of (respondent,
    column) so an export is reproducible."""
    fill = EXPORT_MISSING[(ids + position) % len(EXPORT_MISSING)]
    if values is None:
        return fill
    data = pd.array(values, dtype="Int32")
    return np.where(data.isna(), fill, data.fillna(0).to_numpy(dtype=np.int32))


def to_official_frame(df: pd.DataFrame, codebook: Codebook | None = None) -> pd.DataFrame:
    """A canonical population frame laid out in every official column, in order.

    Identification columns are filled from what the population knows (interview id,
    country and its ISO numeric code and fieldwork year, weight, the per-country
    equilibrated weight S018); everything else the release holds but a population does not
    is written as -5 ("missing; not available") or an empty string for text columns.
    """
    codebook = codebook or load_codebook("wvs7")
    missing = [c for c in BASE_COLUMNS if c not in df.columns]
    if missing:
        raise PopulationError(f"population frame lacks column(s) {missing}")
    cols = _layout_for(codebook)
    n = len(df)
    ids = df[ID].to_numpy(dtype=np.int64)
    country = df[COUNTRY].astype(str).to_numpy()
    weight = df[WEIGHT].to_numpy(dtype=np.float64)
    known = load_countries()
    country_total = pd.Series(weight).groupby(country).transform("sum").to_numpy()
    numeric = np.array([known[c].numeric if c in known else NOT_AVAILABLE for c in country], np.int32)
    year = np.array([known[c].year if c in known else NOT_AVAILABLE for c in country], np.int32)
    s018 = np.divide(weight * 1000.0, country_total, out=np.zeros(n), where=country_total > 0)
    special: dict[str, object] = {
        "version": EXPORT_VERSION, "A_WAVE": 7, "A_YEAR": year, "A_STUDY": 2,
        "B_COUNTRY": numeric, COUNTRY_COLUMN: country, ID_COLUMN: ids, WEIGHT_COLUMN: weight,
        "S018": s018,
        "S025": np.where((numeric > 0) & (year > 0), numeric * 10000 + year, NOT_AVAILABLE),
    }
    out: dict[str, np.ndarray] = {}
    for pos, col in enumerate(cols):
        if col in codebook.items:
            out[col] = _item_column(df[col] if col in df.columns else None, ids, pos)
        else:
            value = special.get(col, "" if col in STRING_COLUMNS else NOT_AVAILABLE)
            out[col] = value if isinstance(value, np.ndarray) else _constant(value, n)
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _constant(value: object, n: int) -> np.ndarray:
    return np.full(n, value, dtype=object if isinstance(value, str) else np.int32)


def _value_labels(item: Item, extra: dict[int, str] | None) -> dict[int, str]:
    labels = dict(item.options) | dict(item.extra_codes) | dict(extra or {})
    return labels | MISSING_CODES


def _labels(frame: pd.DataFrame, codebook: Codebook,
            value_labels: Labels | None) -> tuple[dict[str, str], Labels]:
    column = {c: lab for c, lab in _BASE_LABELS.items() if c in frame.columns}
    values: Labels = {}
    for q, item in codebook.items.items():
        if q in frame.columns:
            column[q] = (item.short or item.text)[:_DTA_LABEL_MAX]
            values[q] = _value_labels(item, (value_labels or {}).get(q))
    return column, values


def write_official(frame: pd.DataFrame, path: str | Path, *, codebook: Codebook | None = None,
                   value_labels: Labels | None = None) -> Path:
    """Write an official-layout frame (``to_official_frame``) atomically as ``.csv``,
    ``.sav`` or ``.dta``. The SPSS and Stata files carry the codebook's variable and value
    labels (plus ``value_labels`` for country-specific codes, {qid: {code: label}}), and the
    SPSS file declares -5..-1 as user-missing, as the official one does."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".sav", ".dta"):
        raise ValueError(f"{path}: cannot write an official WVS-7 file as {suffix or 'no suffix'!r}; "
                         "use .csv, .sav or .dta")
    codebook = codebook or load_codebook("wvs7")
    path.parent.mkdir(parents=True, exist_ok=True)
    def write(tmp: Path) -> None:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            column_labels, variable_value_labels = _labels(frame, codebook, value_labels)
            if suffix == ".sav":
                missing = {q: [{"lo": min(MISSING_CODES), "hi": max(MISSING_CODES)}]
                           for q in variable_value_labels}
                pyreadstat.write_sav(frame, tmp, column_labels=column_labels,
                                     variable_value_labels=variable_value_labels, missing_ranges=missing)
            else:
                pyreadstat.write_dta(frame, tmp, column_labels=column_labels,
                                     variable_value_labels=variable_value_labels)

    return write_atomic(path, write, suffix=suffix)   # pyreadstat writes by the path's suffix
