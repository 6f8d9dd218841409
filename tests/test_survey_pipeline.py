"""A survey that is not WVS, end to end as a user runs it: `raysim data import --codebook`,
`raysim simulate` with Direct and PE on the embedded model, `raysim score --by region`."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from pipeline_helpers import ROOT, check_rows, env
from survey_helpers import write_survey
from raysim.runs.results import read_results

SAMPLE = 9


def raysim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysim.cli", *args], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)


def run_config(path, population: dict, method: str):
    path.write_text(yaml.safe_dump({
        "population": population, "sampling": {"n": SAMPLE, "seed": 0}, "questions": 0, "method": method,
        "answer": "logprob", "model": {"name_or_path": "embedded", "dtype": "float32", "device": "cpu"},
        "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 5}}))
    return path


@pytest.mark.timeout(900)
def test_survey_from_import_to_scores_by_region(tmp_path):
    data, codebook = write_survey(tmp_path / "in")
    p = raysim("data", "import", str(data), "--codebook", str(codebook), "--id", "rid", "--country-code", "NZL",
               "--weight", "wt", "-o", str(tmp_path / "pop"))
    assert p.returncode == 0, p.stderr[-2000:]
    # Direct names the survey file itself (imported into its run directory); PE the imported population
    runs = {"direct": {"survey": {"file": str(data), "codebook": str(codebook), "id": "rid",
                                  "country_code": "NZL", "weight": "wt"}},
            "pe": {"path": str(tmp_path / "pop")}}
    for method, population in runs.items():
        run_dir = tmp_path / method
        p = raysim("simulate", "--config", str(run_config(tmp_path / f"{method}.yaml", population, method)),
                   "-o", str(run_dir))
        assert p.returncode == 0, p.stderr[-3000:]
        check_rows(run_dir, respondents=SAMPLE, questions=2)
        rows = read_results(run_dir / "results")
        assert set(rows["country"]) == {"NZL"} and rows["probs"].map(lambda q: abs(sum(q) - 1) < 1e-6).all()
        if method == "direct":   # scoring reads the copy of the codebook in the run's population
            codebook.rename(codebook.with_suffix(".moved"))
        p = raysim("score", str(run_dir), "--by", "region", "--boot", "20")
        assert p.returncode == 0, p.stderr[-3000:]
        scores = pd.read_csv(run_dir / "scores.csv")
        regions = set(scores["region"])
        assert regions <= {"North", "South", "East", "ALL"} and "ALL" in regions and len(regions) >= 3
        per_question = pd.read_parquet(run_dir / "scores_by_question.parquet")
        assert set(per_question["qid"]) == {"trust", "satisfaction"}
        overall = scores[(scores["region"] == "ALL") & (scores["category"] == "Overall") & (scores["metric"] == "kl")]
        assert len(overall) == 1 and overall["value"].iloc[0] > 0
    codebook.with_suffix(".moved").rename(codebook)
    # PE's system prompt carries the codebook's profile, Direct's none: their answers differ
    direct, pe = (read_results(tmp_path / m / "results").sort_values(["respondent_id", "qid"]) for m in runs)
    assert direct["respondent_id"].tolist() == pe["respondent_id"].tolist()
    assert any(abs(a - b).max() > 1e-4 for a, b in zip(direct["probs"], pe["probs"]))
    resolved = yaml.safe_load((tmp_path / "direct" / "config.yaml").read_text())
    assert resolved["population_source"]["survey"]["codebook_sha256"] == resolved["codebook_sha256"]


@pytest.mark.timeout(600)
def test_experiment_on_a_survey_source_scores_by_region(tmp_path):
    """An experiment reads the survey through its source (imported once into the experiment's
    directory) and writes its tables per region."""
    data, codebook = write_survey(tmp_path / "in")
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "population": {"survey": {"file": str(data), "codebook": str(codebook), "id": "rid",
                                  "country_code": "NZL", "weight": "wt"}},
        "sampling": {"n": 40, "seed": 1}, "questions": 0, "methods": ["uniform"], "score_by": "region",
        "boot": 20, "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 20}}))
    p = raysim("experiment", str(config), "-o", str(tmp_path / "exp"))
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "exp" / "population" / "codebook.yaml").read_text() == codebook.read_text()
    scores = pd.read_csv(tmp_path / "exp" / "scores.csv")
    assert set(scores["region"]) == {"North", "South", "East", "ALL"}
    tables = (tmp_path / "exp" / "tables.md").read_text()
    assert "region" in tables and "the survey" in tables
