"""Experiments: every method through the Ray pipeline on the embedded default (synthetic and
carData populations, both answer modes), the paper-style tables, config parsing and overrides."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import ray
import yaml

from pipeline_helpers import ROOT
from raysim.metrics.scores import OVERALL, POOLED, TABLE_COLUMNS, score
from raysim.methods.spec import available_methods, get_method
from survey_helpers import uniform_results
from raysim.pipeline.config import ConfigError, parse_config
from raysim.pipeline.experiment import apply_overrides, load_experiment, parse_experiment, run_experiment
from raysim.runs.results import read_results
from raysim.pipeline.simulate import run_many
from raysim.report.tables import experiment_tables
from raysim.survey.cardata import load_cardata, write_cardata
from raysim.survey.codebook import load_codebook

pytestmark = pytest.mark.usefixtures("one_thread")
PAPER = ROOT / "configs" / "experiments" / "paper_table1.yaml"
# Methods that simulate with a fit need one made first (test_mixture_fit.py runs those).
# (methods needing a fit, or narrative personas' text, which these populations lack, run in their own tests)
ALL_METHODS = [m for m in available_methods()
               if not get_method(m).kind_class.resources(get_method(m).params).get("fit")
               and getattr(get_method(m).params, "system", None) != "narrative"]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def experiment_doc(population, answer, sample, questions):
    return {"name": "t", "population": population, "sampling": {"n": sample, "seed": 0},
            "questions": questions, "answer": answer, "model": {"name_or_path": "embedded"},
            "methods": {"reference": ["uniform"], "baselines": [m for m in ALL_METHODS if not m.startswith(("psii", "uniform"))],
                        "psii": [m for m in ALL_METHODS if m.startswith("psii")]},
            "boot": 20, "score_by": "sample", "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 2}}


# --------------------------------------------------------------------------- end to end (Ray)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("population, answer, questions", [
    ({"synthetic": {"n": 200, "seed": 4}}, "logprob", 2),
    ({"synthetic": {"n": 200, "seed": 4}}, "generate", 2),
    ({"cardata": True}, "logprob", 0),
    ({"cardata": True}, "generate", 0),
])
def test_every_method_runs_through_the_pipeline(ray_local, tmp_path, population, answer, questions):
    experiment = parse_experiment(experiment_doc(population, answer, 2, questions))
    tables = run_experiment(experiment, tmp_path, command="raysim experiment t.yaml -o out")
    n_q = 2 if questions else 1
    for method in experiment.methods:
        rows = read_results(tmp_path / "runs" / method / "results")
        assert len(rows) == 2 * n_q and rows["respondent_id"].nunique() == 2, method
        assert not rows.duplicated(["respondent_id", "qid"]).any()
        for r in rows.itertuples():
            if answer == "logprob":
                assert abs(sum(r.probs) - 1) < 1e-5 and len(r.probs) == len(r.option_codes), method
            else:
                assert r.probs is None and (isinstance(r.raw_text, str) or method == "uniform"), method
                assert (r.valid and r.sampled_code in list(r.option_codes)) or not r.valid, method
    text = tables.read_text()
    assert "raysim experiment t.yaml -o out" in text and "human noise floor" in text
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert set(scores["country"]) == {POOLED}
    for method in experiment.methods:
        assert f"| {method} |" in text
        # with 2 respondents a generating method may give no parseable answer: then it is said so
        assert method in set(scores["method"]) or f"{method} not scored: " in text, method
    if answer == "generate":
        assert "Valid (parsed) answers: uniform 100%" in text
    if answer == "generate":
        # every method's runs were scored from their sampled answers
        assert all(yaml.safe_load((tmp_path / "runs" / m / "config.yaml").read_text())["answer"] == "generate"
                   for m in experiment.methods)


@pytest.mark.timeout(600)
def test_an_experiment_resumes_and_redoes_nothing(ray_local, tmp_path):
    doc = experiment_doc({"synthetic": {"n": 200, "seed": 4}}, "logprob", 3, 2)
    doc["methods"] = {"m": ["uniform", "pe"]}
    doc["persona_curve"] = {"counts": [1], "draws": 3, "metric": "w1"}
    lines = []
    run_experiment(parse_experiment(doc), tmp_path, emit=lines.append)
    curve = pd.read_csv(tmp_path / "persona_curve.csv")   # read from the runs batch by batch
    assert set(curve["method"]) == {"uniform", "pe"} and len(curve) == 2 * 3 and (curve["error"] > 0).all()
    assert (tmp_path / "persona_curve.png").stat().st_size > 0
    before = {m: sorted(p.name for p in (tmp_path / "runs" / m / "results").glob("*.parquet")) for m in ("uniform", "pe")}
    lines.clear()
    run_experiment(parse_experiment(doc), tmp_path, emit=lines.append)
    assert sum("3 already complete, 0 to do" in line for line in lines) == 2
    after = {m: sorted(p.name for p in (tmp_path / "runs" / m / "results").glob("*.parquet")) for m in ("uniform", "pe")}
    assert before == after


def test_runs_of_one_pass_must_share_the_sample(tmp_path):
    base = {"population": {"path": str(write_cardata(tmp_path / "pop"))}, "method": "uniform"}
    a = parse_config({**base, "sampling": {"n": 2}})
    b = parse_config({**base, "sampling": {"n": 3}})
    with pytest.raises(ValueError, match="must share their sampling: b differs from a"):
        run_many([(a, tmp_path / "a"), (b, tmp_path / "b")])


# --------------------------------------------------------------------------- configs


def test_paper_config_is_the_full_design_and_overrides_apply(tmp_path):
    paper = load_experiment(PAPER)
    assert set(paper.methods) == {"direct", "high_temp", "multilingual", "divreq", "pe", "simvbg", "psii",
                                  "psii_no_value", "psii_no_demographic", "psii_no_profile", "psii_no_noise",
                                  "psii_no_layerwise"}
    cfg = paper.runs["psii"]
    assert cfg.sampling.n == 100 and cfg.questions == 0 and cfg.model.name_or_path == "embedded"
    small = load_experiment(PAPER, population="cardata", sample=8, questions=8, answer="generate")
    cfg = small.runs["pe"]
    assert cfg.population.to_mapping() == {"cardata": True} and cfg.sampling.n == 8 and cfg.questions == 8 and cfg.answer == "generate"
    assert load_experiment(PAPER, population="synthetic:300").runs["pe"].population.n == 300
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_experiment(PAPER, population=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="synthetic:N"):
        load_experiment(PAPER, population="synthetic:lots")
    # another model without a vector library: PSII says what is missing
    with pytest.raises(ConfigError, match="method psii.*set vectors:"):
        load_experiment(PAPER, model="Qwen/Qwen2.5-7B-Instruct")
    raw = apply_overrides(yaml.safe_load(PAPER.read_text()), model="Qwen/Qwen2.5-7B-Instruct")
    raw["vectors"] = str(tmp_path)
    qwen = parse_experiment(raw)
    assert qwen.runs["psii"].preset_name() == "qwen2.5-7b"


@pytest.mark.parametrize("change, message", [
    ({"methods": None}, "'methods' must map table groups"),
    ({"methods": {"a": ["pe", "pe"]}}, "listed twice"),
    ({"methods": {"a": ["pe", "nope"]}}, "method nope: method: unknown method 'nope'"),
    ({"boot": 0}, "boot must be a positive integer"),
    ({"score_by": "region"}, "score_by must be one of"),
    ({"method": "pe"}, "lists 'methods', not 'method'"),
    ({"answer": "vote"}, "answer must be one of"),
    ({"sampling": {"n": 3, "per_country": 2}}, "per_country or n, not both"),
])
def test_bad_experiment_configs_name_the_problem(change, message):
    doc = {**experiment_doc({"cardata": True}, "logprob", 2, 0), **change}
    with pytest.raises(ConfigError, match=message):
        parse_experiment(doc)


# --------------------------------------------------------------------------- scoring and tables (no Ray)


def test_scoring_a_sample_as_one_group():
    codebook = load_codebook("cardata")
    people = load_cardata()
    results = uniform_results(people, codebook, list(codebook.question_ids), run_id="r", config_hash="h")
    by_country = score(results, people, codebook, n_boot=5).table
    as_sample = score(results, people, codebook, n_boot=5, by="sample").table
    assert set(by_country["country"]) == set(people["country"]) | {POOLED}
    assert set(as_sample["country"]) == {POOLED}
    assert as_sample["n_respondents"].max() == len(people)


def test_tables_show_every_method_category_and_floor():
    rows = []
    for m, base in (("a", 0.5), ("b", 0.25)):
        for c in ("Cat one", "Cat two", OVERALL):
            for metric in ("kl", "ed", "js", "mae", "entropy_sim", "entropy_human"):
                floor = math.nan if metric.startswith("entropy") else 0.05
                rows.append({"method": m, "country": POOLED, "category": c, "metric": metric, "value": base,
                             "ci_low": base - 0.1, "ci_high": base + 0.1, "floor": floor, "floor_ratio": base / floor,
                             "n_questions": 3, "n_respondents": 10})
    scores = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    text = experiment_tables(scores, {"baselines": ["a"], "psii": ["b"]},
                             {"experiment": "x", "model": "m", "answer": "logprob", "questions": 3, "boot": 5,
                              "command": "raysim experiment x.yaml -o d"}, notes=["a note"])
    for title in ("Table 1", "Table 2", "Table 5", "Table 6"):
        assert title in text
    assert "| Cat one | Cat two | Overall |" in text
    assert "| a | 0.500 [0.400, 0.600] ×10.0 |" in text and "| *psii* |" in text
    assert text.count("| human noise floor | 0.050 | 0.050 | 0.050 |") == 4
    assert "    raysim experiment x.yaml -o d" in text and "- a note" in text
