"""The result-row contract (docs/design.md, "Results"): one row per respondent × question.

Pure pyarrow: the Ray pipeline, local jobs and the scorer all read and write it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..atomic import write_atomic

RESULT_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("method", pa.string(), nullable=False),
    pa.field("config_hash", pa.string(), nullable=False),
    pa.field("respondent_id", pa.int64(), nullable=False),
    pa.field("country", pa.string(), nullable=False),
    pa.field("weight", pa.float64(), nullable=False),
    pa.field("qid", pa.string(), nullable=False),
    pa.field("option_codes", pa.list_(pa.int32()), nullable=False),
    pa.field("probs", pa.list_(pa.float32())),
    pa.field("sampled_code", pa.int32()),
    pa.field("raw_text", pa.string()),
    pa.field("valid", pa.bool_(), nullable=False),
])
RESULT_COLUMNS = tuple(RESULT_SCHEMA.names)


class ResultsError(ValueError):
    """Result rows that do not follow the contract."""


def result_rows(respondents: pd.DataFrame, qids: list[str], *, run_id: str, method: str,
                config_hash: str, option_codes: list[list[int]], probs: list[list[float]] | None,
                sampled_code: list[int | None] | None = None, raw_text: list[str] | None = None,
                valid: list[bool] | bool = True) -> pd.DataFrame:
    """Rows for every respondent × question, respondent-major (all of one respondent's
    questions, then the next's); the per-row lists follow that order."""
    n, k = len(respondents), len(qids)
    return pd.DataFrame({
        "run_id": run_id,
        "method": method,
        "config_hash": config_hash,
        "respondent_id": np.repeat(respondents["respondent_id"].to_numpy(dtype=np.int64), k),
        "country": np.repeat(respondents["country"].to_numpy(dtype=object), k),
        "weight": np.repeat(respondents["weight"].to_numpy(dtype=np.float64), k),
        "qid": np.tile(np.array(qids, dtype=object), n),
        "option_codes": option_codes,
        "probs": probs,
        "sampled_code": pd.array(sampled_code if sampled_code is not None else [None] * (n * k), dtype="Int32"),
        "raw_text": raw_text,
        "valid": valid,
    })


def results_table(df: pd.DataFrame) -> pa.Table:
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"result rows lack column(s) {missing}")
    return pa.Table.from_pandas(df[list(RESULT_COLUMNS)], schema=RESULT_SCHEMA, preserve_index=False)


def write_results_shard(df: pd.DataFrame, results_dir: str | Path, name: str) -> Path:
    """Write one shard atomically: readers never see a partial ``name.parquet``."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(df)
    return write_atomic(results_dir / f"{name}.parquet", lambda tmp: pq.write_table(table, tmp))


def results_dataset(results_dir: str | Path) -> pads.Dataset:
    """A run's result shards as one Arrow dataset, to scan in batches (hidden partial writes excluded)."""
    results_dir = Path(results_dir)
    files = sorted(str(p) for p in results_dir.glob("*.parquet"))
    if not files:
        raise ResultsError(f"{results_dir}: no result shards")
    return pads.dataset(files, format="parquet", schema=RESULT_SCHEMA)


def results_batches(results_dir: str | Path, columns: list[str] | None = None,
                    batch_rows: int = 1 << 18) -> Iterator[pd.DataFrame]:
    """A run's rows a batch at a time, in the order ``read_results`` gives them."""
    for batch in results_dataset(results_dir).to_batches(columns=columns, batch_size=batch_rows):
        yield batch.to_pandas()


def read_results(results_dir: str | Path, columns: list[str] | None = None,
                 qids: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
    """A run's rows; with ``qids``, only those questions' rows are read (the scan filters them,
    so a reader of a few items of a full-population run holds only theirs)."""
    where = pads.field("qid").isin(list(qids)) if qids is not None else None
    return results_dataset(results_dir).to_table(columns=columns, filter=where).to_pandas()
