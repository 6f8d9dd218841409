"""Scoring at full-population scale in bounded memory (issue "Full-population scale").

    python bench/score_scale.py                       # 97,220 respondents x 259 questions (25.2 M rows)
    python bench/score_scale.py --respondents 5000    # a quick look

Writes a synthetic WVS-7 population and a results set of one method over all its respondents and
every opinion item with options, probabilities drawn at random (no model), as Parquet shards of
a run's size; then scores it by country with bootstrap intervals the way ``raysim score`` does
(the shards scanned batch by batch). Prints rows, seconds for each phase and the process's peak
resident memory; the last line is ``peak_rss_gib: <x>`` (target: <= 4 on the 2-core machine).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysim.metrics.scores import score
from raysim.runs.results import RESULT_SCHEMA, results_dataset
from raysim.survey.codebook import load_codebook
from raysim.survey.population import read_population
from raysim.survey.synthetic import write_synthetic


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB


def write_results(people, codebook, out: Path, seed: int, per_shard: int) -> int:
    """One shard per ``per_shard`` respondents, every question, a random distribution per row."""
    rng = np.random.default_rng(seed)
    qids = codebook.question_ids
    codes = [np.asarray(codebook[q].codes, dtype=np.int32) for q in qids]
    k = np.array([len(c) for c in codes])
    out.mkdir(parents=True)
    rows = 0
    for shard, start in enumerate(range(0, len(people), per_shard)):
        part = people.iloc[start:start + per_shard]
        n = len(part) * len(qids)
        lengths = np.tile(k, len(part))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        flat_codes = pa.array(np.tile(np.concatenate(codes), len(part)))
        raw = rng.gamma(1.0, size=int(lengths.sum())).astype(np.float32)
        sums = np.add.reduceat(raw, offsets.to_numpy()[:-1])
        probs = raw / np.repeat(sums, lengths)
        table = pa.table({
            "run_id": pa.array(["bench"] * n), "method": pa.array(["random"] * n), "config_hash": pa.array(["0"] * n),
            "respondent_id": pa.array(np.repeat(part["respondent_id"].to_numpy(), len(qids))),
            "country": pa.array(np.repeat(part["country"].to_numpy(), len(qids))),
            "weight": pa.array(np.repeat(part["weight"].to_numpy(dtype=np.float64), len(qids))),
            "qid": pa.array(np.tile(np.asarray(qids, dtype=object), len(part))),
            "option_codes": pa.ListArray.from_arrays(offsets, flat_codes),
            "probs": pa.ListArray.from_arrays(offsets, pa.array(probs)),
            "sampled_code": pa.nulls(n, pa.int32()), "raw_text": pa.nulls(n, pa.string()),
            "valid": pa.array(np.ones(n, dtype=bool))}, schema=RESULT_SCHEMA)
        pq.write_table(table, out / f"part-{shard:05d}.parquet")
        rows += n
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=97_220)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-shard", type=int, default=2_000, help="respondents per results shard")
    ap.add_argument("--dir", help="work directory (default: a temporary one, removed after)")
    a = ap.parse_args()
    work = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="raysim-score-scale-"))
    try:
        codebook = load_codebook("wvs7")
        t0 = time.perf_counter()
        write_synthetic(a.respondents, work / "population", seed=a.seed)
        people = read_population(work / "population")
        rows = write_results(people[["respondent_id", "country", "weight"]], codebook, work / "results", a.seed,
                             a.per_shard)
        t1 = time.perf_counter()
        print(f"wrote {len(people):,} respondents and {rows:,} result rows "
              f"({len(codebook.question_ids)} questions) in {t1 - t0:.1f} s; peak so far {peak_rss_gib():.2f} GiB")
        scores = score(results_dataset(work / "results"), people, codebook, n_boot=a.boot, seed=a.seed)
        t2 = time.perf_counter()
        countries = scores.table["country"].nunique() - 1
        print(f"scored {rows:,} rows by country ({countries} countries, {a.boot} bootstrap replicates) in "
              f"{t2 - t1:.1f} s: {rows / (t2 - t1):,.0f} rows/s")
        print(f"peak_rss_gib: {peak_rss_gib():.2f}")
    finally:
        if not a.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
