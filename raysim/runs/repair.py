"""``raysim repair RUN``: make a damaged run directory consistent again.

A run directory is consistent when every (method, respondent) has its answers in one shard, for
every question of the run, stamped with the run's config hash. Runs that wrote into the same
directory at once (before directories were locked), or files copied in by hand, break that. The
repair keeps, per (method, respondent), the answers of the newest shard that holds all of them,
drops every other row of that respondent (duplicates, partial answer sets, rows of another
configuration), removes shards that cannot be read, and rewrites each changed shard atomically.
The next ``raysim simulate`` then simulates what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import write_atomic
from .lock import run_lock
from .results import RESULT_SCHEMA
from .rundir import config_hash, load_run_config, results_dir


@dataclass
class RepairReport:
    shards: int = 0
    unreadable: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    duplicate_rows: int = 0      # rows of a respondent whose newer complete answers were kept
    incomplete_rows: int = 0     # rows of a respondent whose answers in that shard lack questions
    foreign_rows: int = 0        # rows stamped with another configuration's hash
    temporary: int = 0           # temporary files of writers that died

    @property
    def changed(self) -> bool:
        return bool(self.unreadable or self.rewritten or self.emptied or self.temporary)

    def lines(self) -> list[str]:
        out = [f"{self.shards} shards checked"]
        for label, n in (("duplicate rows removed", self.duplicate_rows),
                         ("rows of incomplete answer sets removed", self.incomplete_rows),
                         ("rows of another configuration removed", self.foreign_rows),
                         ("temporary files of dead writers removed", self.temporary)):
            if n:
                out.append(f"{label}: {n}")
        for label, names in (("unreadable shards removed", self.unreadable), ("shards rewritten", self.rewritten),
                             ("shards left empty and removed", self.emptied)):
            if names:
                out.append(f"{label}: {len(names)} ({', '.join(names[:5])}{', …' if len(names) > 5 else ''})")
        if not self.changed:
            out.append("nothing to repair")
        return out


def repair_run(run_dir: str | Path) -> RepairReport:
    """Repair ``run_dir`` in place (holding its lock: no run may write meanwhile)."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    h, n_questions = config_hash(config), len(config["questions"])
    report = RepairReport()
    with run_lock(run_dir):
        shards_dir = results_dir(run_dir)
        for tmp in shards_dir.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)
            report.temporary += 1
        tables: dict[Path, pa.Table] = {}
        for path in shards_dir.glob("*.parquet"):
            report.shards += 1
            try:
                tables[path] = pq.read_table(path, schema=RESULT_SCHEMA)
            except (pa.ArrowException, OSError):
                path.unlink()
                report.unreadable.append(path.name)
        # Newest first: the first complete answer set met for a (method, respondent) is kept.
        newest_first = sorted(tables, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
        kept: set[tuple[str, int]] = set()
        for path in newest_first:
            keep = _keep_mask(tables[path], h, n_questions, kept, report)
            if keep.all():
                continue
            table = tables[path].filter(pa.array(keep))
            if table.num_rows:
                write_atomic(path, lambda tmp, t=table: pq.write_table(t, tmp))
                report.rewritten.append(path.name)
            else:
                path.unlink()
                report.emptied.append(path.name)
    return report


def _keep_mask(table: pa.Table, h: str, n_questions: int, kept: set[tuple[str, int]],
               report: RepairReport) -> np.ndarray:
    """Which rows of one shard stay; ``kept`` gains the respondents this shard keeps."""
    df = table.select(["method", "respondent_id", "qid", "config_hash"]).to_pandas()
    ours = (df["config_hash"] == h).to_numpy()
    report.foreign_rows += int((~ours).sum())
    keys = list(zip(df["method"], df["respondent_id"]))
    distinct = df[ours].groupby(["method", "respondent_id"])["qid"].agg(["nunique", "size"])
    complete = {k for k, row in distinct.iterrows() if row["nunique"] == n_questions == row["size"]}
    keep = []
    for key, own in zip(keys, ours):
        if not own:
            keep.append(False)
        elif key in kept:
            keep.append(False)
            report.duplicate_rows += 1
        elif key not in complete:
            keep.append(False)
            report.incomplete_rows += 1
        else:
            keep.append(True)
    kept.update(complete)
    return np.asarray(keep, dtype=bool)
