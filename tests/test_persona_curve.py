"""The persona-count curve (raysim.metrics.persona_curve) on real carData respondents: personas
that answer exactly as their humans did reach zero error once every respondent is drawn, the error
falls with the number drawn, and the columns the experiment reads give the same curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysim.metrics.persona_curve import CURVE_COLUMNS, persona_curve, summarise
from raysim.runs.results import read_results, results_batches, write_results_shard
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import load_codebook

CARDATA = load_codebook("cardata")


@pytest.fixture(scope="module")
def people():
    p = load_cardata()
    return p.groupby("country").head(30).reset_index(drop=True)   # 30 real respondents per country


def echoing(people: pd.DataFrame, qids=("POVERTY", "RELIGION")) -> pd.DataFrame:
    """Result rows of personas that put all probability on their human's answer."""
    frames = []
    for q in qids:
        codes = list(CARDATA[q].codes)
        probs = [np.eye(len(codes), dtype=np.float32)[codes.index(a)] for a in people[q]]
        frames.append(pd.DataFrame({"run_id": "r", "method": "echo", "config_hash": "h", "qid": q,
                                    "respondent_id": people["respondent_id"].to_numpy(),
                                    "country": people["country"].to_numpy(), "weight": 1.0,
                                    "option_codes": [codes] * len(people), "probs": probs,
                                    "sampled_code": None, "raw_text": "", "valid": True}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("metric", ["w1", "kl"])
def test_personas_that_echo_their_humans_reach_zero_error_with_everyone_drawn(people, metric):
    curve = persona_curve(echoing(people), people, CARDATA, [1, 5, 30, 31], draws=8, seed=2, metric=metric)
    means = summarise(curve).set_index("n_personas")["mean"]
    assert set(means.index) == {1, 5, 30}                  # no country has 31 respondents: N=31 is left out
    assert means[30] == pytest.approx(0, abs=1e-6)         # all 30 drawn: the human distribution itself
    assert means[1] > means[5] > means[30]
    assert (curve["countries"] == 4).all()


def test_a_run_scanned_in_batches_of_the_columns_it_reads_gives_the_same_curve(tmp_path, people):
    rows = echoing(people).sample(frac=1, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    rows["probs"] = [rng.dirichlet(np.ones(len(c))).astype(np.float32) for c in rows["option_codes"]]   # noisy personas
    for i, at in enumerate(np.array_split(np.arange(len(rows)), 3)):
        write_results_shard(rows.iloc[at], tmp_path / "results", f"part-{i}")
    whole = persona_curve(read_results(tmp_path / "results"), people, CARDATA, [2, 10], draws=5, seed=1)
    assert (whole["error"] > 0).all()
    for batch_rows in (7, 1000):   # batches that split questions and countries, and whole shards
        batches = results_batches(tmp_path / "results", columns=CURVE_COLUMNS, batch_rows=batch_rows)
        pd.testing.assert_frame_equal(persona_curve(batches, people, CARDATA, [2, 10], draws=5, seed=1), whole)
