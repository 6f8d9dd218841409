"""Scores by any group of respondents (`by`): per answer to an item of the population, pooled
over the groups, with the respondents in no group counted (docs/design.md, "Scores")."""

import numpy as np
import pandas as pd
import pytest

from raysim.cli import main
from raysim.metrics import distributions as D
from raysim.metrics.scores import METRICS, POOLED, ScoreError, score, to_markdown
from survey_helpers import uniform_results
from raysim.pipeline.config import ConfigError
from raysim.pipeline.experiment import parse_experiment
from raysim.runs.results import write_results_shard
from raysim.report.tables import experiment_tables
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import load_codebook, parse_codebook
from raysim.survey.population import write_population

QUESTIONS = ("Q1", "Q57")


def codebook():
    """Two opinion items, and three to group by: sex (labelled), age (numeric, no labels), and
    a country item whose labels are the country codes."""
    return parse_codebook({
        "sections": {"S": ["Q1", "Q290"]},
        "categories": {"Alpha": {"a": ["Q1", "Q1"]}, "Beta": {"b": ["Q57", "Q57"]}},
        "items": [
            {"id": "Q1", "text": "t", "kind": "ordinal", "options": [[c, str(c)] for c in (1, 2, 3, 4)]},
            {"id": "Q57", "text": "t", "kind": "nominal", "options": [[1, "trust"], [2, "careful"]]},
            {"id": "Q260", "text": "Sex", "kind": "nominal", "options": [[1, "Male"], [2, "Female"]]},
            {"id": "Q262", "text": "Age", "kind": "numeric", "range": [16, 99]},
            {"id": "Q270", "text": "Country", "kind": "nominal", "options": [[1, "NOR"], [2, "SWE"]]},
        ]}, "test")


def run(n=60, seed=0, probs=None):
    """Respondents of NOR and SWE, sexes interleaved in population order (so a group's rows are
    not contiguous) and answering differently by sex; a simulator with random probs, or the
    ``probs`` of a function of the population."""
    rng = np.random.default_rng(seed)
    cb = codebook()
    sex = np.tile([1, 2], n)[: 2 * n]
    pop = pd.DataFrame({"respondent_id": np.arange(2 * n), "country": np.repeat(["NOR", "SWE"], n),
                        "weight": rng.uniform(0.5, 2.0, 2 * n)})
    pop["Q1"] = pd.array(np.where(sex == 1, rng.integers(1, 3, 2 * n), rng.integers(3, 5, 2 * n)), dtype="Int32")
    pop["Q57"] = pd.array(rng.integers(1, 3, 2 * n), dtype="Int32")
    pop["Q260"] = pd.array(sex, dtype="Int32")
    pop["Q262"] = pd.array(rng.choice([30, 45], 2 * n), dtype="Int32")
    pop["Q270"] = pd.array(np.repeat([1, 2], n), dtype="Int32")
    rows = []
    for q in QUESTIONS:
        k = len(cb[q].options)
        pr = probs(pop, q, cb) if probs else rng.dirichlet(np.ones(k), size=2 * n)
        rows.append(pd.DataFrame({
            "method": "m", "config_hash": "h", "respondent_id": pop["respondent_id"], "country": pop["country"],
            "qid": q, "option_codes": [list(cb[q].codes)] * (2 * n), "probs": list(pr),
            "sampled_code": pd.array([None] * (2 * n), dtype="Int32"), "valid": True}))
    return pop, pd.concat(rows, ignore_index=True), cb


def one_hot(pop, q, cb):
    """Each respondent's real answer as probabilities: a perfect simulator."""
    return np.eye(len(cb[q].options))[pop[q].to_numpy(dtype=int) - 1]


def overall(s, metric, group, column):
    t = s.table
    return t[(t.metric == metric) & (t[column] == group) & (t.category == "Overall")].iloc[0]


def test_one_group_per_label_with_its_respondents_and_a_pooled_mean():
    pop, res, cb = run()
    s = score(res, pop, cb, n_boot=20, by="Q260")
    assert "Q260" in s.table.columns and "country" not in s.table.columns
    assert "Q260" in s.per_question.columns and "country" not in s.per_question.columns
    assert set(s.table.Q260) == {"Male", "Female", POOLED}
    for label, code in (("Male", 1), ("Female", 2)):
        assert overall(s, "kl", label, "Q260")["n_respondents"] == (pop.Q260 == code).sum()
    assert overall(s, "kl", POOLED, "Q260")["n_respondents"] == len(pop)
    wide = s.table.pivot(index=["metric", "category"], columns="Q260", values="value")
    assert set(wide.index.get_level_values("metric")) == set(METRICS) and len(wide) > len(METRICS)
    assert np.allclose(wide[POOLED], (wide["Male"] + wide["Female"]) / 2, equal_nan=True)
    assert s.ungrouped == {"m": 0}


def test_a_groups_p_and_q_are_its_own_respondents():
    pop, res, cb = run()
    # Some women have no Q1 answer: the man before each in population order must not stand in.
    silent = pop.respondent_id[(pop.Q260 == 2) & (pop.index % 3 == 0)]
    res = res[~((res.qid == "Q1") & res.respondent_id.isin(silent))]
    s = score(res, pop, cb, n_boot=5, by="Q260")
    women = pop[pop.Q260 == 2]
    w = women.weight.to_numpy()
    p = np.bincount(women.Q1.to_numpy(dtype=int) - 1, weights=w, minlength=4) / w.sum()
    answered = women[~women.respondent_id.isin(silent)]
    q1 = res[res.qid == "Q1"].set_index("respondent_id").loc[answered.respondent_id, "probs"]
    wa = answered.weight.to_numpy()
    q = (np.stack(q1.to_numpy()) * wa[:, None]).sum(0) / wa.sum()
    f = s.per_question
    assert f[(f.Q260 == "Female") & (f.qid == "Q1") & (f.metric == "kl")]["value"].item() == pytest.approx(D.kl(p, q))


def test_a_perfect_simulator_scores_zero_kl_in_every_group():
    pop, res, cb = run(probs=one_hot)
    s = score(res, pop, cb, n_boot=10, by="Q260")
    kl = s.per_question[s.per_question.metric == "kl"]
    assert set(kl.Q260) == {"Male", "Female"} and np.allclose(kl.value, 0, atol=1e-9)
    assert overall(s, "kl", POOLED, "Q260")["value"] == pytest.approx(0, abs=1e-9)
    # The same simulator scored with the wrong respondents' answers would not be perfect.
    shuffled = res.assign(probs=res.groupby("qid")["probs"].transform(lambda c: c.iloc[::-1].to_numpy()))
    assert overall(score(shuffled, pop, cb, n_boot=10, by="Q260"), "kl", "Male", "Q260")["value"] > 0.1


def test_by_country_is_the_default_and_an_item_of_the_same_groups_scores_the_same():
    pop, res, cb = run(seed=2)
    default = score(res, pop, cb, n_boot=30, seed=4)
    pd.testing.assert_frame_equal(score(res, pop, cb, n_boot=30, seed=4, by="country").table, default.table)
    # Q270's labels are the country codes: the same groups, the same seeds, so the same figures.
    by_item = score(res, pop, cb, n_boot=30, seed=4, by="Q270")
    pd.testing.assert_frame_equal(by_item.table.rename(columns={"Q270": "country"}), default.table)
    pd.testing.assert_frame_equal(by_item.per_question.rename(columns={"Q270": "country"}), default.per_question)


def test_nulls_are_in_no_group_and_counted_and_unlabelled_codes_name_groups():
    pop, res, cb = run()
    pop["Q262"] = pop["Q262"].astype("Int32").mask(pop.index % 7 == 0)
    left_out = int(pop.Q262.isna().sum())
    s = score(res, pop, cb, n_boot=10, by="Q262")
    assert s.ungrouped == {"m": left_out}
    assert set(s.table.Q262) == {"30", "45", POOLED}
    assert overall(s, "kl", "30", "Q262")["n_respondents"] == (pop.Q262 == 30).sum()
    assert overall(s, "kl", POOLED, "Q262")["n_respondents"] == len(pop) - left_out
    with pytest.raises(ScoreError, match="every matched respondent has a null in Q262"):
        score(res, pop.assign(Q262=pd.array([None] * len(pop), dtype="Int32")), cb, n_boot=5, by="Q262")


def test_a_bad_by_is_one_line_naming_it_and_the_choices():
    pop, res, cb = run(n=5)
    for by in ("Q999", "region"):
        with pytest.raises(ScoreError) as err:
            score(res, pop, cb, by=by)
        message = str(err.value)
        assert "\n" not in message and repr(by) in message
        assert "country, sample" in message and "Q260" in message
    with pytest.raises(ScoreError, match="got 'Q262'"):   # an item, but not a column of this population
        score(res, pop.drop(columns="Q262"), cb, by="Q262")


def test_markdown_and_experiment_tables_name_the_group_column():
    pop, res, cb = run()
    s = score(res, pop, cb, n_boot=10, by="Q260")
    md = to_markdown(s).splitlines()
    assert md[0].startswith("| method | Q260 | category |")
    assert [line.split(" | ")[1] for line in md[2:]] == ["Male"] * 3 + ["Female"] * 3 + [POOLED] * 3
    text = experiment_tables(s.table, {"methods": ["m"]}, {"experiment": "x", "score_by": "Q260"})
    assert "Pooled = mean of the per-Q260 figures." in text
    assert "### Overall KL per Q260" in text and "| method | Female | Male |" in text


def test_experiment_score_by_an_item_is_checked_before_anything_runs():
    doc = {"name": "t", "population": {"cardata": True}, "sampling": {"n": 4, "seed": 0}, "questions": 0,
           "methods": ["uniform"]}
    assert parse_experiment({**doc, "score_by": "Q260"}).score_by == "Q260"
    with pytest.raises(ConfigError, match="score_by must be one of .*Q260.*got 'Q999'"):
        parse_experiment({**doc, "score_by": "Q999"})


# ---------------------------------------------------------------- raysim score --by

def test_score_command_by_an_item_writes_the_per_question_table(tmp_path, capsys):
    cb = load_codebook("cardata")
    people = load_cardata().groupby("country").head(30).reset_index(drop=True)
    people["Q260"] = people["Q260"].mask(people.index < 3)   # three respondents in no group
    write_population(people, tmp_path / "pop", cb)
    run_dir = tmp_path / "run"
    (run_dir / "results").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"codebook: cardata\npopulation: {tmp_path / 'pop'}\nanswer: logprob\n")
    write_results_shard(uniform_results(people, cb, cb.question_ids, run_id="r", config_hash="h"),
                        run_dir / "results", "part-0")

    assert main(["score", str(run_dir), "--by", "Q260", "--boot", "3"]) == 0
    out = capsys.readouterr().out
    assert "scores_by_question.parquet" in out.splitlines()[-1]
    assert "3 respondents with no answer to Q260 are in no group." in out
    per_question = pd.read_parquet(run_dir / "scores_by_question.parquet")
    assert list(per_question.columns) == ["method", "Q260", "qid", "metric", "value", "floor"]
    assert set(per_question.Q260) == {"Male", "Female"}
    scores = pd.read_csv(run_dir / "scores.csv")
    assert set(scores.Q260) == {"Male", "Female", POOLED}
    assert scores[scores.Q260 == POOLED].n_respondents.max() == len(people) - 3

    assert main(["score", str(run_dir), "--by", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("raysim: error: by must be one of") and "'nope'" in captured.err


def test_item_sets_are_scored_like_categories_and_leave_the_rest_unchanged():
    pop, res, cb = run(seed=3)
    plain = score(res, pop, cb, n_boot=25, seed=1)
    sets = {"fitted items": ["Q1"], "both": ["Q1", "Q57"], "unasked": ["Q260"]}
    s = score(res, pop, cb, n_boot=25, seed=1, item_sets=sets)
    t = s.table
    assert "unasked" not in set(t.category)   # a set with no scored item is left out
    pd.testing.assert_frame_equal(t[~t.category.isin(sets)].reset_index(drop=True), plain.table)
    cols = ["metric", "country", "value", "ci_low", "ci_high", "floor", "n_questions"]

    def rows(category):
        return t[t.category == category][cols].reset_index(drop=True)

    pd.testing.assert_frame_equal(rows("fitted items"), rows("Alpha"))   # Alpha holds Q1 alone
    pd.testing.assert_frame_equal(rows("both"), rows("Overall"))
    with pytest.raises(ScoreError, match="Q999"):
        score(res, pop, cb, n_boot=5, item_sets={"x": ["Q999"]})


def test_score_command_shows_a_mixture_runs_fitted_and_held_out_items(tmp_path, capsys):
    from raysim.fits import write_fit

    cb = load_codebook("cardata")
    people = load_cardata().groupby("country").head(30).reset_index(drop=True)
    write_population(people, tmp_path / "pop", cb)
    scored = [q for q in cb.question_ids if cb[q].has_options]
    fitted = scored[0]
    fit = write_fit(tmp_path / "fit", fitter="mixture", params={}, run={},
                    result={"scenario": {"targets": [fitted], "heldout": []}})
    run_dir = tmp_path / "run"
    (run_dir / "results").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"codebook: cardata\npopulation: {tmp_path / 'pop'}\nanswer: logprob\n"
                                         f"fit: {{path: {fit.path.parent}}}\n")
    write_results_shard(uniform_results(people, cb, cb.question_ids, run_id="r", config_hash="h"),
                        run_dir / "results", "part-0")
    assert main(["score", str(run_dir), "--boot", "3"]) == 0
    scores = pd.read_csv(run_dir / "scores.csv")
    at = scores[(scores.country == POOLED) & (scores.metric == "kl")].set_index("category")
    assert at.loc["fitted items", "n_questions"] == 1
    assert scored == [fitted] and "held-out items" not in at.index   # carData's one opinion item: none held out
    assert "fitted items" in (run_dir / "scores.md").read_text()
