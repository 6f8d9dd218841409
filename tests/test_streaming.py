"""Scores and the completeness check read a run's results shard by shard, in batches (issue
"Full-population scale"): the figures equal those of the rows held in memory, whatever the batch
size, and a respondent answering twice is found across batches and shards."""

import numpy as np
import pandas as pd
import pytest

import raysim.metrics.scores as S
from raysim.runs.coverage import question_counts
from raysim.runs.results import read_results, results_dataset, write_results_shard
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import load_codebook

CARDATA = load_codebook("cardata")
NUMBERS = ["value", "ci_low", "ci_high", "floor", "floor_ratio"]


def results(people, seed=0, methods=("a", "b")):
    """Random answers of two methods to two carData items, probabilities and samples both."""
    rng = np.random.default_rng(seed)
    frames = []
    for m in methods:
        for q in ("POVERTY", "RELIGION"):
            codes = list(CARDATA[q].codes)
            probs = rng.dirichlet(np.ones(len(codes)), size=len(people)).astype(np.float32)
            frames.append(pd.DataFrame({
                "run_id": "r", "method": m, "config_hash": f"h{m}", "respondent_id": people["respondent_id"].to_numpy(),
                "country": people["country"].to_numpy(), "weight": 1.0, "qid": q, "option_codes": [codes] * len(people),
                "probs": list(probs), "raw_text": None,
                "sampled_code": pd.array(rng.choice(codes + [-1], len(people)), dtype="Int32"),
                "valid": rng.random(len(people)) > 0.1}))
    return pd.concat(frames, ignore_index=True).sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def people():
    p = load_cardata()
    return p.groupby("country").head(40).reset_index(drop=True)


def shards(rows, directory, n):
    for i, at in enumerate(np.array_split(np.arange(len(rows)), n)):
        write_results_shard(rows.iloc[at], directory, f"part-{i}")
    return results_dataset(directory)


@pytest.mark.parametrize("mode", ["probs", "sampled"])
def test_scores_scanned_in_batches_equal_the_rows_held_in_memory(tmp_path, people, mode, monkeypatch):
    rows = results(people)
    ds = shards(rows, tmp_path / "results", 5)
    monkeypatch.setattr(S, "BATCH_ROWS", 1 << 30)
    whole = S.score(rows, people, CARDATA, mode=mode, n_boot=30, seed=2)
    monkeypatch.setattr(S, "BATCH_ROWS", 7)
    scanned = S.score(ds, people, CARDATA, mode=mode, n_boot=30, seed=2)
    cols = [c for c in whole.table.columns if c not in NUMBERS]
    assert whole.table[cols].equals(scanned.table[cols]) and whole.unmatched_rows == scanned.unmatched_rows
    assert np.allclose(whole.table[NUMBERS].to_numpy(), scanned.table[NUMBERS].to_numpy(), rtol=0, atol=1e-12,
                       equal_nan=True)
    assert whole.per_question.equals(scanned.per_question)
    # a row-local transform (post-processing) applied batch by batch equals it applied to all rows
    flatten = lambda r: r.assign(probs=[np.full(len(p), 1 / len(p), dtype=np.float32) for p in r["probs"]])  # noqa: E731
    if mode == "probs":
        a = S.score(flatten(rows), people, CARDATA, n_boot=10)
        b = S.score(ds, people, CARDATA, n_boot=10, transform=flatten)
        assert np.allclose(a.table["value"], b.table["value"], atol=1e-12)


def test_a_respondent_answering_twice_is_found_across_shards_and_batches(tmp_path, people, monkeypatch):
    rows = results(people, methods=("a",))
    again = rows[(rows["respondent_id"] == rows["respondent_id"].iloc[-1]) & (rows["qid"] == "POVERTY")]
    ds = shards(pd.concat([again, rows], ignore_index=True), tmp_path / "results", 3)
    monkeypatch.setattr(S, "BATCH_ROWS", 5)
    with pytest.raises(S.ScoreError, match="answers POVERTY more than once"):
        S.score(ds, people, CARDATA, n_boot=5)


def test_question_counts_scanned_in_batches_equal_a_groupby(tmp_path, people):
    rows = results(people, seed=3)
    rows = pd.concat([rows, rows.iloc[:9]], ignore_index=True)          # 9 duplicated rows
    rows = rows.drop(index=rows.index[rows["respondent_id"].isin(people["respondent_id"].iloc[:4])
                                      & (rows["qid"] == "RELIGION")][:3])  # 3 answers missing
    shards(rows, tmp_path / "results", 4)
    want = (rows.groupby(["method", "respondent_id"]).agg(rows=("qid", "size"), qids=("qid", "nunique"))
            .reset_index().sort_values(["method", "respondent_id"]).reset_index(drop=True))
    for batch in (1, 7, 1 << 20):
        got = question_counts(tmp_path / "results", batch_rows=batch)
        got = got.sort_values(["method", "respondent_id"]).reset_index(drop=True)
        assert got.astype({"rows": int, "qids": int}).equals(want.astype({"rows": int, "qids": int})), batch
    assert (want["rows"] - want["qids"]).sum() == 9 and (want["qids"] < 2).sum() == 3
    assert question_counts(tmp_path / "none").empty


def test_reading_some_questions_reads_exactly_their_rows(tmp_path, people):
    rows = results(people, seed=5)
    shards(rows, tmp_path / "results", 3)
    key = ["method", "respondent_id", "qid"]
    got = read_results(tmp_path / "results", qids=["RELIGION"]).sort_values(key).reset_index(drop=True)
    want = rows[rows["qid"] == "RELIGION"].sort_values(key).reset_index(drop=True)
    assert len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got[key + ["weight", "valid"]], want[key + ["weight", "valid"]])
    assert read_results(tmp_path / "results", qids=["NOT_ASKED"]).empty
