"""Distribution metrics and the score table (docs/design.md, "Scores")."""

import math

import numpy as np
import pandas as pd
import pytest

from raysim.metrics import distributions as D
from raysim.metrics.scores import METRICS, ScoreError, score, to_markdown
from raysim.survey.codebook import CodebookError, parse_codebook

EPS = 1e-6


def smoothed(v):
    """ε-smoothing written out: (v_k + ε) / (Σv + Kε)."""
    return [(x + EPS) / (sum(v) + len(v) * EPS) for x in v]


# ------------------------------------------------------------ distributions by hand

def test_kl_by_hand():
    p, q = smoothed([0.5, 0.5]), smoothed([0.9, 0.1])
    expected = p[0] * math.log(p[0] / q[0]) + p[1] * math.log(p[1] / q[1])  # ≈ 0.5 ln(0.5/0.9) + 0.5 ln 5 = 0.5108
    assert D.kl([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.5108256, abs=1e-5)


def test_js_by_hand_in_bits():
    p, q = smoothed([0.5, 0.5]), smoothed([0.9, 0.1])
    m = [(a + b) / 2 for a, b in zip(p, q)]  # ≈ [0.7, 0.3]
    kl2 = lambda a, b: sum(x * math.log2(x / y) for x, y in zip(a, b))  # noqa: E731
    assert D.js([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.5 * kl2(p, m) + 0.5 * kl2(q, m), rel=1e-9)


def test_mae_and_w1_by_hand():
    # p = [.5, 0, .5] has mean position 1, q = one-hot at 0 has mean 0; K-1 = 2.
    assert D.mae([0.5, 0, 0.5], [1, 0, 0]) == pytest.approx(1 / 2)
    # CDFs [.5, .5] vs [1, 1]: Σ|ΔCDF| = 1, / (K-1) = 0.5.
    assert D.w1([0.5, 0, 0.5], [1, 0, 0]) == pytest.approx(0.5)
    # Same mean (MAE 0) but the mass sits at the ends vs the middle: CDFs [.5, .5] vs [0, 1].
    assert D.mae([0.5, 0, 0.5], [0, 1, 0]) == pytest.approx(0.0)
    assert D.w1([0.5, 0, 0.5], [0, 1, 0]) == pytest.approx(0.5)


def test_variance_and_entropy_by_hand():
    assert D.norm_variance([0.5, 0, 0.5]) == pytest.approx(1.0)     # var 1 / ((3-1)²/4 = 1)
    assert D.norm_variance([0, 1, 0]) == pytest.approx(0.0)
    assert D.norm_variance([1 / 3] * 3) == pytest.approx(2 / 3)     # E[r²] - E[r]² = 5/3 - 1
    assert D.norm_variance([0.2] * 5) == pytest.approx(2 / 4)       # var 2, max (5-1)²/4 = 4
    assert D.norm_entropy([0.25] * 4) == pytest.approx(1.0)
    s = smoothed([0.5, 0.5, 0, 0])
    assert D.norm_entropy([0.5, 0.5, 0, 0]) == pytest.approx(-sum(x * math.log(x) for x in s) / math.log(4))


# ------------------------------------------------------------ distribution properties

@pytest.fixture
def dists():
    rng = np.random.default_rng(7)
    return rng.dirichlet(np.ones(5), size=(30, 3)), rng.dirichlet(np.ones(5) * 0.3, size=(30, 3))


def test_identity_and_symmetry(dists):
    p, q = dists
    assert np.allclose(D.kl(p, p), 0) and np.allclose(D.js(p, p), 0)
    assert np.allclose(D.w1(p, p), 0) and np.allclose(D.ed(p, p), 0)
    assert np.allclose(D.js(p, q), D.js(q, p))
    assert np.all((D.js(p, q) >= 0) & (D.js(p, q) <= 1))
    assert not np.allclose(D.kl(p, q), D.kl(q, p))  # KL is not symmetric


def test_js_of_equal_and_near_equal_inputs_is_zero_not_nan():
    # float32 probabilities from a model differ from p in the last bits; rounding must not
    # turn a zero divergence into NaN (scipy's jensenshannon does: sqrt of a negative).
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=2000)
    q = p.astype(np.float32).astype(np.float64)
    out = D.js(p, q)
    assert np.all(np.isfinite(out)) and np.allclose(out, 0, atol=1e-12)


def test_extremes():
    assert D.js([1, 0], [0, 1]) == pytest.approx(1.0, abs=1e-4)
    assert D.w1([1, 0, 0, 0], [0, 0, 0, 1]) == pytest.approx(1.0)
    assert D.mae([1, 0, 0, 0], [0, 0, 0, 1]) == pytest.approx(1.0)
    assert D.ed([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(1.0, abs=1e-3)


def test_batched_equals_one_at_a_time(dists):
    p, q = dists
    for fn in (D.kl, D.js, D.mae, D.w1, D.ed):
        batched = fn(p, q)
        assert batched.shape == (30, 3)
        assert batched[4, 2] == pytest.approx(float(fn(p[4, 2], q[4, 2])))
    assert D.w1(p, q[0, 0]).shape == (30, 3)  # broadcasting against one q


def test_w1_matches_scipy(dists):
    from scipy.stats import wasserstein_distance
    p, q = dists
    r = np.arange(5)
    assert D.w1(p[3, 1], q[3, 1]) == pytest.approx(wasserstein_distance(r, r, p[3, 1], q[3, 1]) / 4)


def test_single_option_rejected():
    with pytest.raises(ValueError, match="at least two options"):
        D.kl([1.0], [1.0])


# ------------------------------------------------------------ scoring fixtures

def codebook(q56_scale=True):
    """Q1 ordinal (4), Q56 out-of-order codes (better / worse / same), Q57 nominal, Q119 with
    an off-scale extra code 0."""
    q56 = ({"options": [[1, "Better off"], [2, "Worse off"], [3, "About the same"]], "scale": [1, 3, 2]}
           if q56_scale else {"options": [[1, "Better off"], [2, "About the same"], [3, "Worse off"]]})
    return parse_codebook({
        "sections": {"S": ["Q1", "Q290"]},
        "categories": {"Alpha": {"a": ["Q1", "Q57"]}, "Beta": {"b": ["Q100", "Q200"]}},
        "items": [
            {"id": "Q1", "text": "t", "kind": "ordinal", "options": [[c, str(c)] for c in (1, 2, 3, 4)]},
            {"id": "Q56", "text": "t", "kind": "ordinal", **q56},
            {"id": "Q57", "text": "t", "kind": "nominal", "options": [[1, "trust"], [2, "careful"]]},
            {"id": "Q119", "text": "t", "kind": "ordinal", "options": [[c, str(c)] for c in (1, 2, 3)],
             "extra_codes": [[0, "off-scale"]]},
        ]}, "test")


def population(answers: dict[str, list], country="NOR", weights=None, start=0):
    n = len(next(iter(answers.values())))
    df = pd.DataFrame({"respondent_id": np.arange(start, start + n), "country": country,
                       "weight": weights if weights is not None else 1.0})
    for q, a in answers.items():
        df[q] = pd.array(a, dtype="Int32")
    return df


def result_rows(pop, qid, codes, probs=None, sampled=None, method="m", valid=None):
    """One result row per respondent of pop for qid; probs[i] / sampled[i] per respondent."""
    n = len(pop)
    return pd.DataFrame({
        "run_id": "run", "method": method, "config_hash": "h" + method,
        "respondent_id": pop["respondent_id"].to_numpy(), "country": pop["country"].to_numpy(),
        "weight": pop["weight"].to_numpy(), "qid": qid, "option_codes": [list(codes)] * n,
        "probs": list(probs) if probs is not None else [None] * n,
        "sampled_code": pd.array(sampled if sampled is not None else [None] * n, dtype="Int32"),
        "raw_text": "", "valid": valid if valid is not None else True})


def per_q(s, metric, qid, country="NOR"):
    f = s.per_question
    return f[(f.metric == metric) & (f.qid == qid) & (f.country == country)]["value"].item()


def row(s, metric, country="NOR", category="Overall", method="m"):
    t = s.table
    return t[(t.metric == metric) & (t.country == country) & (t.category == category) & (t.method == method)].iloc[0]


# ------------------------------------------------------------ p and q as defined

def test_weighted_human_and_simulated_distributions():
    pop = population({"Q1": [1, 2, 2, 4]}, weights=[1.0, 1.0, 1.0, 3.0])
    probs = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0.5, 0.5]]
    s = score(result_rows(pop, "Q1", (1, 2, 3, 4), probs=probs), pop, codebook(), n_boot=20)
    p = np.array([1, 2, 0, 3]) / 6                              # weights 1+1+1+3 = 6
    q = (np.array(probs) * [[1], [1], [1], [3]]).sum(0) / 6     # = [1.5, .5, 1+1.5, 1.5] / 6
    assert q == pytest.approx([1.5 / 6, 0.5 / 6, 2.5 / 6, 1.5 / 6])
    assert per_q(s, "kl", "Q1") == pytest.approx(D.kl(p, q))
    assert per_q(s, "w1", "Q1") == pytest.approx(D.w1(p, q))
    assert per_q(s, "entropy_human", "Q1") == pytest.approx(D.norm_entropy(p))
    assert per_q(s, "variance_sim", "Q1") == pytest.approx(D.norm_variance(q))


def test_heavy_weight_pulls_p_towards_that_respondent():
    answers = {"Q1": [1, 1, 1, 4]}
    probs = [[0.25] * 4] * 4
    light_pop = population(answers)
    light = score(result_rows(light_pop, "Q1", (1, 2, 3, 4), probs=probs), light_pop, codebook(), n_boot=10)
    heavy_pop = population(answers, weights=[1.0, 1.0, 1.0, 1000.0])
    heavy = score(result_rows(heavy_pop, "Q1", (1, 2, 3, 4), probs=probs), heavy_pop, codebook(), n_boot=10)
    # p: [3/4, 0, 0, 1/4] unweighted, ≈ [0.003, 0, 0, 0.997] with the heavy weight on the '4'.
    assert per_q(light, "variance_human", "Q1") == pytest.approx(D.norm_variance([0.75, 0, 0, 0.25]))
    assert per_q(heavy, "variance_human", "Q1") == pytest.approx(D.norm_variance([3, 0, 0, 1000]))
    assert per_q(heavy, "entropy_human", "Q1") < per_q(light, "entropy_human", "Q1")


def test_extra_codes_nulls_and_missing_codes_are_excluded():
    pop = population({"Q119": [0, 1, None, 3, 3, 0]})
    # Simulated rows list the off-scale 0 and "don't know" -1 too; their mass is dropped.
    probs = [[0.5, 0.25, 0.25, 0.0, 0.0]] * 6
    s = score(result_rows(pop, "Q119", (0, 1, 2, 3, -1), probs=probs), pop, codebook(), n_boot=10)
    p = [1 / 3, 0, 2 / 3]         # substantive answers 1, 3, 3
    q = [0.5, 0.5, 0.0]           # [.25, .25, 0] renormalised
    assert per_q(s, "kl", "Q119") == pytest.approx(D.kl(p, q))
    assert per_q(s, "mae", "Q119") == pytest.approx(abs(4 / 3 - 0.5) / 2)  # E_p[r] = 2·2/3, E_q[r] = 0.5


def test_sampled_mode_counts_valid_substantive_answers():
    pop = population({"Q1": [1, 2, 3, 4, 4]})
    sampled = [1, 1, 2, -1, 4]                   # -1 "don't know" is not substantive
    valid = [True, True, True, True, False]      # the last answer did not parse
    s = score(result_rows(pop, "Q1", (1, 2, 3, 4), sampled=sampled, valid=valid), pop, codebook(),
              mode="sampled", n_boot=10)
    assert per_q(s, "kl", "Q1") == pytest.approx(D.kl([1, 1, 1, 2], [2, 1, 0, 0]))


def test_scale_order_not_code_order():
    """Q56 codes run better(1) / worse(2) / same(3); on the scale 'same' is the middle. A
    codebook that lists the same options in scale order under other codes gives the same
    MAE and W1, and option_codes may come in any order."""
    answers, probs = [1, 1, 2, 3, 3, 3], [0.6, 0.3, 0.1]   # probs over codes (1, 2, 3)
    pop = population({"Q56": answers})
    out_of_order = score(result_rows(pop, "Q56", (2, 3, 1), probs=[[0.3, 0.1, 0.6]] * 6), pop, codebook(), n_boot=10)
    swap = {1: 1, 2: 3, 3: 2}
    pop2 = population({"Q56": [swap[a] for a in answers]})
    in_order = score(result_rows(pop2, "Q56", (1, 2, 3), probs=[[0.6, 0.1, 0.3]] * 6), pop2,
                     codebook(q56_scale=False), n_boot=10)
    p_scale, q_scale = [2 / 6, 3 / 6, 1 / 6], [0.6, 0.1, 0.3]  # better, same, worse
    for m in ("mae", "w1", "variance_human"):
        assert per_q(out_of_order, m, "Q56") == pytest.approx(per_q(in_order, m, "Q56"))
    assert per_q(out_of_order, "w1", "Q56") == pytest.approx(D.w1(p_scale, q_scale))
    # Taking the codes as positions would give a different W1: the test can tell.
    assert not math.isclose(D.w1([2 / 6, 1 / 6, 3 / 6], probs), D.w1(p_scale, q_scale))


def test_ordinal_only_metrics_skip_nominal_items():
    pop = population({"Q1": [1, 2, 3, 4], "Q57": [1, 2, 2, 2]})
    res = pd.concat([result_rows(pop, "Q1", (1, 2, 3, 4), probs=[[0.25] * 4] * 4),
                     result_rows(pop, "Q57", (1, 2), probs=[[0.5, 0.5]] * 4)])
    s = score(res, pop, codebook(), n_boot=10)
    f = s.per_question
    assert set(f[f.qid == "Q57"].metric) == {"kl", "js", "ed", "entropy_sim", "entropy_human"}
    assert row(s, "w1")["n_questions"] == 1 and row(s, "kl")["n_questions"] == 2


# ------------------------------------------------------------ aggregation, floor, intervals

def random_run(n, countries=("NOR", "SWE"), seed=0, skew=1.0):
    """Random human answers on all four items, and a simulator whose probs lean towards
    option 1 by `skew` (0 = uniform)."""
    rng = np.random.default_rng(seed)
    cb = codebook()
    pops, rows = [], []
    for ci, c in enumerate(countries):
        pop = population({q: rng.integers(1, len(cb[q].options) + 1, n) for q in ("Q1", "Q56", "Q57", "Q119")},
                         country=c, weights=rng.uniform(0.5, 2.0, n), start=ci * n)
        pops.append(pop)
        for q in ("Q1", "Q56", "Q57", "Q119"):
            k = len(cb[q].options)
            logits = rng.normal(size=(n, k)) + skew * (np.arange(k) == 0)
            pr = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            rows.append(result_rows(pop, q, cb[q].codes, probs=list(pr)))
    return pd.concat(pops, ignore_index=True), pd.concat(rows, ignore_index=True), cb


def test_categories_overall_and_pooled_are_means_of_their_parts():
    pop, res, cb = random_run(80)
    s = score(res, pop, cb, n_boot=30)
    f = s.per_question[s.per_question.metric == "kl"].copy()
    f["category"] = f.qid.map(lambda q: cb[q].category)
    for c in ("NOR", "SWE"):
        fc = f[f.country == c]
        assert row(s, "kl", c)["value"] == pytest.approx(fc.value.mean())
        assert row(s, "kl", c, "Alpha")["value"] == pytest.approx(fc[fc.category == "Alpha"].value.mean())
        assert row(s, "kl", c, "Beta")["n_questions"] == 1
    per_country = [row(s, "kl", c)["value"] for c in ("NOR", "SWE")]
    assert row(s, "kl", "ALL")["value"] == pytest.approx(sum(per_country) / 2)
    assert row(s, "kl", "ALL")["n_respondents"] == 160
    assert set(s.table.metric) == set(METRICS)


def test_interval_contains_value_and_floor_ratio():
    for skew in (0.0, 2.0):   # near the floor, and far from it
        pop, res, cb = random_run(60, skew=skew, seed=3)
        t = score(res, pop, cb, n_boot=100).table
        assert (t.ci_low <= t.value + 1e-12).all() and (t.value <= t.ci_high + 1e-12).all()
        assert (t.ci_high > t.ci_low).all()
        cmp = t[t.metric.isin(["kl", "js", "w1", "mae", "ed"])]
        assert (cmp.floor > 0).all() and np.allclose(cmp.floor_ratio, cmp.value / cmp.floor)
        assert t[t.metric == "entropy_sim"].floor.isna().all()


def test_floor_shrinks_with_n_and_perfect_simulator_scores_zero():
    floors = {}
    for n in (40, 640):
        rng = np.random.default_rng(n)
        pop = population({"Q1": rng.integers(1, 5, n)})
        res = result_rows(pop, "Q1", (1, 2, 3, 4), sampled=pop["Q1"].to_numpy())  # reproduces every answer
        s = score(res, pop, codebook(), mode="sampled", n_boot=200)
        assert row(s, "kl")["value"] == pytest.approx(0.0, abs=1e-12)
        floors[n] = row(s, "kl")["floor"]
    # The floor behaves like (K-1)/(2n): 16x the respondents, about 1/16 the floor.
    assert floors[640] < floors[40] / 6
    assert floors[40] == pytest.approx(3 / 80, rel=0.5)


def test_deterministic_given_seed_and_independent_of_other_countries():
    pop, res, cb = random_run(50)
    a, b = score(res, pop, cb, n_boot=40, seed=5), score(res, pop, cb, n_boot=40, seed=5)
    pd.testing.assert_frame_equal(a.table, b.table)
    other = score(res, pop, cb, n_boot=40, seed=6).table
    assert not np.allclose(a.table.ci_low, other.ci_low)
    alone = score(res[res.country == "NOR"], pop, cb, n_boot=40, seed=5).table
    pd.testing.assert_frame_equal(alone[alone.country == "NOR"].reset_index(drop=True),
                                  a.table[a.table.country == "NOR"].reset_index(drop=True))


def test_methods_scored_separately_and_unmatched_rows_counted():
    pop, res, cb = random_run(30, countries=("NOR",))
    flat = res.assign(method="flat", config_hash="h2", probs=[np.full(len(c), 1 / len(c)) for c in res.option_codes])
    stray = res.iloc[:3].assign(respondent_id=10_000)
    s = score(pd.concat([res, flat, stray]), pop, cb, n_boot=10)
    assert set(s.table.method) == {"m", "flat"}
    assert row(s, "kl", method="m")["value"] != pytest.approx(row(s, "kl", method="flat")["value"])
    # The floor is a property of the human sample alone: the same for every simulator.
    assert row(s, "kl", method="m")["floor"] == pytest.approx(row(s, "kl", method="flat")["floor"])
    assert s.unmatched_rows == {"m": 3, "flat": 0}


# ------------------------------------------------------------ bad input

def test_bad_input_is_named():
    pop = population({"Q1": [1, 2, 3]})
    good = result_rows(pop, "Q1", (1, 2, 3, 4), probs=[[0.25] * 4] * 3)
    cb = codebook()
    with pytest.raises(ScoreError, match="code 7 is not an option"):
        score(result_rows(pop, "Q1", (1, 2, 3, 7), probs=[[0.25] * 4] * 3), pop, cb)
    with pytest.raises(ScoreError, match="each of the item's 4 substantive options once"):
        score(result_rows(pop, "Q1", (1, 2, 3), probs=[[0.3] * 3] * 3), pop, cb)
    with pytest.raises(ScoreError, match="answers Q1 more than once"):
        score(pd.concat([good, good.iloc[:1]]), pop, cb)
    with pytest.raises(CodebookError, match="Q999"):
        score(good.assign(qid="Q999"), pop, cb)
    with pytest.raises(ScoreError, match="lack column"):
        score(good.drop(columns="probs"), pop, cb)
    with pytest.raises(ScoreError, match="code 9 is not an option of Q1"):
        score(good, population({"Q1": [1, 9, 3]}), cb)
    with pytest.raises(ScoreError, match="no result row of a population respondent"):
        score(good.assign(country="SWE"), pop, cb)


# ------------------------------------------------------------ markdown

def test_markdown_table_has_a_row_per_country_and_category():
    pop, res, cb = random_run(40)
    s = score(res, pop, cb, n_boot=20)
    md = to_markdown(s).strip().splitlines()
    assert md[0].startswith("| method | country | category |")
    body = [line.split(" | ") for line in md[2:]]
    assert [(r[1], r[2]) for r in body] == [(c, g) for c in ("NOR", "SWE", "ALL") for g in ("Overall", "Alpha", "Beta")]
    kl = row(s, "kl", "SWE", "Alpha")
    assert f"{kl['value']:.3f} [{kl['ci_low']:.3f}, {kl['ci_high']:.3f}] ×{kl['floor_ratio']:.1f}" in md[2 + 4]


def test_uniform_baseline_equals_a_simulator_answering_uniformly():
    pop, res, cb = random_run(70, seed=5)
    uniform = res.assign(method="u", config_hash="hu",
                         probs=[list(np.full(len(p), 1.0 / len(p))) for p in res["probs"]])
    s = score(pd.concat([res, uniform], ignore_index=True), pop, cb, n_boot=40)
    base = s.baseline.set_index(["country", "category", "metric"]).sort_index()
    same = s.table[s.table.method == "u"].set_index(["country", "category", "metric"]).loc[base.index]
    assert set(base.index.get_level_values("metric")) == {"kl", "js", "mae", "w1", "ed"}
    assert (s.baseline.method == "answering uniformly").all() and len(base) > 20
    # the same point value, replicates (so interval) and floor as the uniform simulator's
    for col in ("value", "ci_low", "ci_high", "floor", "floor_ratio", "n_questions", "n_respondents"):
        np.testing.assert_allclose(base[col].to_numpy(float), same[col].to_numpy(float), rtol=1e-12, err_msg=col)
    # and the skewed simulator differs from it
    skewed = s.table[s.table.method == "m"].set_index(["country", "category", "metric"]).loc[base.index]
    assert not np.allclose(skewed["value"], base["value"])


def test_distributions_are_the_weighted_shares_per_group_and_pooled():
    pop = pd.concat([population({"Q1": [1, 2, 2, 4]}, weights=[1.0, 1.0, 1.0, 3.0]),
                     population({"Q1": [3, 3]}, country="SWE", start=10)], ignore_index=True)
    probs = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0.5, 0.5], [0, 1, 0, 0], [0, 1, 0, 0]]
    s = score(result_rows(pop, "Q1", (1, 2, 3, 4), probs=probs), pop, codebook(), n_boot=5)
    d = s.distributions.set_index(["country", "code"])
    assert list(s.distributions.columns) == ["method", "country", "qid", "code", "human", "simulated"]
    np.testing.assert_allclose(d.loc["NOR", "human"], np.array([1, 2, 0, 3]) / 6)
    np.testing.assert_allclose(d.loc["NOR", "simulated"], [1.5 / 6, 0.5 / 6, 2.5 / 6, 1.5 / 6])
    np.testing.assert_allclose(d.loc["SWE", "human"], [0, 0, 1, 0])
    # ALL: every respondent's weight together (6 + 2)
    np.testing.assert_allclose(d.loc["ALL", "human"], np.array([1, 2, 2, 3]) / 8)
    np.testing.assert_allclose(d.loc["ALL", "simulated"], [1.5 / 8, 2.5 / 8, 2.5 / 8, 1.5 / 8])
