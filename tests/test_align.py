"""Importance weights of a persona pool (raysim.align.importance): raking, density ratios,
trimming, effective sample size, resampling."""

import numpy as np
import pandas as pd
import pytest

from raysim.align.importance import (AlignError, density_ratio, effective_sample_size, rake, resample, trim)


def pool(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    sex = rng.choice([1, 2], n, p=[0.5, 0.5])
    age = np.where(sex == 1, rng.choice([1, 2, 3], n, p=[0.5, 0.3, 0.2]), rng.choice([1, 2, 3], n, p=[0.2, 0.3, 0.5]))
    edu = rng.choice([1, 2, 3, 4], n)
    return pd.DataFrame({"sex": sex, "age": age, "edu": edu})


def shares(frame, attr, w):
    return pd.Series(w).groupby(frame[attr].to_numpy()).sum()


def test_raking_matches_given_marginals_to_1e6():
    p = pool()
    target = {"sex": {1: 0.3, 2: 0.7}, "age": {1: 0.1, 2: 0.6, 3: 0.3}, "edu": {1: 0.4, 2: 0.3, 3: 0.2, 4: 0.1}}
    w = rake(p, target)
    assert w.sum() == pytest.approx(1) and (w >= 0).all()
    for attr, want in target.items():
        got = shares(p, attr, w)
        assert np.abs(got.reindex(list(want)).to_numpy() - np.array(list(want.values()))).max() < 1e-6, attr
    # a target value the pool lacks is a one-line error naming the attribute
    with pytest.raises(AlignError, match="^sex: .*\\[3\\]"):
        rake(p, {"sex": {1: 0.5, 3: 0.5}})
    with pytest.raises(AlignError, match="^income: not an attribute"):
        rake(p, {"income": {1: 1.0}})


def test_density_ratio_recovers_a_known_reweighting():
    p = pool(n=6000, seed=1)
    # the target is the pool reweighted by r(x): it over-represents women and the old, jointly
    r = np.where(p.sex == 2, 3.0, 1.0) * np.array([0.5, 1.0, 2.0])[p.age - 1]
    target = p.iloc[resample(r, 6000, seed=2)]
    w = density_ratio(p, target, ["sex", "age", "edu"], seed=0)
    truth = r / r.sum()
    assert np.corrcoef(w, truth)[0, 1] > 0.97
    # each cell's weight is within 15% of the true ratio's
    cells = pd.DataFrame({"w": w, "t": truth, "sex": p.sex, "age": p.age}).groupby(["sex", "age"]).sum()
    assert np.abs(cells.w / cells.t - 1).max() < 0.15
    # the same pool as its own target: weights near uniform
    same = density_ratio(p, p, ["sex", "age", "edu"])
    assert effective_sample_size(same) > 0.99 * len(p)


def test_trimmed_weights_stay_normalised_and_capped_and_the_ess_rises():
    rng = np.random.default_rng(3)
    w = rng.lognormal(0, 1.5, 5000)
    t = trim(w, cap=5.0)
    assert t.sum() == pytest.approx(1, abs=1e-12)
    assert t.max() <= 5.0 / len(t) * (1 + 1e-9)
    assert effective_sample_size(t) > effective_sample_size(w)
    kept = w <= np.quantile(w, 0.5)   # small weights keep their order and proportions
    assert np.allclose(t[kept] / w[kept], (t[kept] / w[kept])[0])
    with pytest.raises(AlignError, match="cap"):
        trim(w, cap=1.0)


def test_effective_sample_size_and_resampling():
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size(np.r_[1.0, np.zeros(9)]) == pytest.approx(1)
    w = np.array([0.1, 0.0, 0.6, 0.3])
    idx = resample(w, 1000, seed=4)
    assert (np.bincount(idx, minlength=4) == [100, 0, 600, 300]).all()
    assert (idx == resample(w, 1000, seed=4)).all()
    # sorted by an attribute first, each of its cells gets its share of the draws to within one
    p = pool(n=3000, seed=10)
    weights = np.random.default_rng(11).lognormal(0, 1, len(p))
    want = shares(p, "age", weights / weights.sum()) * 50
    for seed in range(5):
        drawn = p["age"].iloc[resample(weights, 50, seed, order=np.argsort(p["age"].to_numpy(), kind="stable"))]
        assert (drawn.value_counts().reindex(want.index).fillna(0) - want).abs().max() < 1, seed


def test_ot_with_zero_cost_on_matching_attributes_is_the_identity_coupling():
    from raysim.align.transport import coupling, ground_cost

    p = pool(n=60, seed=5).drop_duplicates().reset_index(drop=True)
    p["income"] = np.arange(len(p)) * 1.5   # numeric, distinct: every row is unique
    order = np.random.default_rng(6).permutation(len(p))
    target = p.iloc[order].reset_index(drop=True)
    cost = ground_cost(p, target, ["sex", "age", "edu"], ["income"])
    assert cost.min() == 0 and cost.max() <= 1
    plan = coupling(cost)
    expected = np.zeros_like(plan)
    expected[order, np.arange(len(p))] = 1 / len(p)   # person j of the target is persona order[j]
    assert np.allclose(plan, expected, atol=1e-12)
    a = np.random.default_rng(7).dirichlet(np.ones(len(p)))
    b = np.random.default_rng(8).dirichlet(np.ones(len(p)))
    for method in ("emd", "sinkhorn"):
        plan = coupling(cost, a, b, method=method, reg=0.02)
        assert np.allclose(plan.sum(1), a, atol=1e-8) and np.allclose(plan.sum(0), b, atol=1e-8), method
    with pytest.raises(AlignError, match="OT method"):
        coupling(cost, method="greedy")


def test_subgroup_weights_move_the_pool_to_the_subgroups_attributes():
    from raysim.align.transport import ground_cost, subgroup_weights

    p = pool(n=2000, seed=9)
    subgroup = p[(p.sex == 2) & (p.age >= 2)].sample(300, random_state=1)
    cost = ground_cost(p, subgroup, ["sex", "age", "edu"])
    w = subgroup_weights(cost, stay=0.05)
    assert w.sum() == pytest.approx(1)
    before = shares(p, "sex", np.full(len(p), 1 / len(p)))[2]
    after = shares(p, "sex", w)[2]
    assert before < 0.6 and after > 0.99
    # a large 'stay' keeps the pool's own weights
    loose = subgroup_weights(cost, stay=1e4)
    assert np.abs(loose - 1 / len(p)).max() < 0.1 / len(p)


def test_personas_align_writes_a_weighted_population_matching_the_targets_marginals(tmp_path, capsys):
    from raysim.cli import main
    from raysim.survey.population import read_population

    pool_dir, target_dir = tmp_path / "pool", tmp_path / "target"
    assert main(["data", "synth", "--n", "1500", "--seed", "3", "-o", str(pool_dir)]) == 0
    assert main(["data", "synth", "--n", "400", "--seed", "5", "-o", str(target_dir)]) == 0
    by = ["Q260", "Q275", "Q288"]
    capsys.readouterr()
    assert main(["personas", "align", "--pool", str(pool_dir), "--target", str(target_dir), "--by", ",".join(by),
                 "--method", "ipf", "-o", str(tmp_path / "set")]) == 0
    out = capsys.readouterr().out
    assert "effective sample size" in out
    aligned, target = read_population(tmp_path / "set" / "population"), read_population(target_dir)
    for attr in by:
        t = target.dropna(subset=by)
        want = t.groupby(attr)["weight"].sum() / t["weight"].sum()
        got = aligned.groupby(attr)["weight"].sum() / aligned["weight"].sum()
        assert (got.reindex(want.index).fillna(0) - want).abs().max() < 1e-6, attr
    import yaml
    report = yaml.safe_load((tmp_path / "set" / "alignment.yaml").read_text())
    whole = report["parts"]["ALL"]   # aligned as a whole: one part, the personas keep their countries
    assert report["method"] == "ipf" and 0 < whole["effective_sample_size"] <= 1500
    assert all(v["after"] < 1e-6 <= v["before"] for v in whole["tv_distance"].values())
    pool_people = read_population(pool_dir)
    assert set(aligned["country"]) <= set(pool_people["country"])

    # resampled to a set of any size: new unique ids, weight 1, closer to the target than the pool was
    assert main(["personas", "align", "--pool", str(pool_dir), "--target", str(target_dir), "--by", "Q260,Q275",
                 "--method", "ot", "--size", "500", "-o", str(tmp_path / "ot")]) == 0
    ot_set = read_population(tmp_path / "ot" / "population")
    assert len(ot_set) == 500 and ot_set["respondent_id"].is_unique and (ot_set["weight"] == 1).all()
    tv = yaml.safe_load((tmp_path / "ot" / "alignment.yaml").read_text())["parts"]["ALL"]["tv_distance"]
    assert all(v["after"] < v["before"] for v in tv.values()), tv

    # bad input: one line naming the attribute; an existing set is not touched
    before = (tmp_path / "set" / "alignment.yaml").read_bytes()
    for args, words in ((["--by", "Q9999"], "Q9999"), (["--by", "Q260", "--method", "ipf"], "exists")):
        code = main(["personas", "align", "--pool", str(pool_dir), "--target", str(target_dir), *args,
                     "-o", str(tmp_path / "set")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and words in err[0], err
    assert (tmp_path / "set" / "alignment.yaml").read_bytes() == before
