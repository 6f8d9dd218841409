"""Which questions each respondent of a run has answered: rows and distinct questions per (method,
respondent), counted shard by shard from three columns, so the completeness and uniqueness check
of a full-population run (25 M rows per method) never holds the rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..survey.columns import ID
from .results import ResultsError, results_dataset

BATCH_ROWS = 1 << 20


def _codes(column: pa.ChunkedArray | pa.Array, known: dict[str, int]) -> np.ndarray:
    """Each value's index in ``known``, new values appended."""
    enc = pc.dictionary_encode(column)
    for value in enc.dictionary.to_pylist():
        known.setdefault(value, len(known))
    lookup = np.array([known[v] for v in enc.dictionary.to_pylist()], dtype=np.int64)
    return lookup[enc.indices.to_numpy(zero_copy_only=False)]


class _Answered:
    """A [respondent, method, question] bitmap and per-(respondent, method) row counts, grown as
    respondents, methods and questions appear."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.seen = np.zeros((0, 0, 0), dtype=bool)
        self.rows = np.zeros((0, 0), dtype=np.int64)

    def _grow(self, ids: np.ndarray, n_methods: int, n_qids: int) -> None:
        new = np.setdiff1d(ids, self.ids)
        shape = self.seen.shape
        if not new.size and n_methods <= shape[1] and n_qids <= shape[2]:
            return
        all_ids = np.union1d(self.ids, new)
        at = np.searchsorted(all_ids, self.ids)
        grown = lambda n, have: have if n <= have else max(n, 2 * have)   # noqa: E731  (amortised)
        seen = np.zeros((len(all_ids), grown(n_methods, shape[1]), grown(n_qids, shape[2])), dtype=bool)
        seen[at, :shape[1], :shape[2]] = self.seen
        rows = np.zeros((len(all_ids), seen.shape[1]), dtype=np.int64)
        rows[at, :shape[1]] = self.rows
        self.ids, self.seen, self.rows = all_ids, seen, rows

    def add(self, ids: np.ndarray, methods: np.ndarray, qids: np.ndarray, n_methods: int, n_qids: int) -> None:
        self._grow(ids, n_methods, n_qids)
        r = np.searchsorted(self.ids, ids)
        np.add.at(self.rows, (r, methods), 1)
        self.seen[r, methods, qids] = True


def question_counts(results_dir: str | Path, batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """Per (method, respondent_id): ``rows`` (result rows) and ``qids`` (distinct questions)."""
    try:
        dataset = results_dataset(results_dir)
    except ResultsError:   # no shard yet
        return pd.DataFrame({"method": [], ID: [], "rows": [], "qids": []})
    methods: dict[str, int] = {}
    qids: dict[str, int] = {}
    answered = _Answered()
    for batch in dataset.to_batches(columns=["method", ID, "qid"], batch_size=batch_rows):
        if batch.num_rows:
            m, q = _codes(batch.column(0), methods), _codes(batch.column(2), qids)
            answered.add(batch.column(1).to_numpy(zero_copy_only=False), m, q, len(methods), len(qids))
    frames = []
    for name, m in methods.items():
        has = answered.rows[:, m] > 0
        frames.append(pd.DataFrame({"method": name, ID: answered.ids[has], "rows": answered.rows[has, m],
                                    "qids": answered.seen[has, m].sum(axis=1)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"method": [], ID: [], "rows": [], "qids": []})
