"""Aligned persona sets on disk (raysim.align.aligned_set, build, aligned_source): per-country
sets of a pool aligned to real carData countries, marginals-only targets, the ``aligned``
population source, and scores against the target's people instead of the personas."""

import numpy as np
import pandas as pd
import pytest
import yaml

from raysim.align.aligned_set import AlignError, align, align_parts, humans_of, load_marginals
from raysim.align.build import AlignSpec, make_aligned_set
from raysim.metrics import distributions as D
from raysim.metrics.scores import score
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import load_codebook
from raysim.survey.population import read_population
from raysim.survey.sources import SourceError, parse_source, registered_sources
from survey_helpers import uniform_results

CARDATA = load_codebook("cardata")


def shares(frame, attr):
    s = frame.groupby(attr)["weight"].sum()
    return s / s.sum()


def usa_pool():
    """The real USA respondents of carData as a persona pool: older, more religious and fewer
    degrees than the Scandinavian countries."""
    people = load_cardata()
    return people[people["country"] == "USA"].reset_index(drop=True), people


def test_per_country_alignment_matches_each_countrys_marginals_and_bands_age():
    pool, people = usa_pool()
    by = ["Q260", "DEGREE", "RELIGION", "Q262"]
    parts = align_parts(pool, people, by, CARDATA, per_country=True, method="ipf")
    assert sorted(parts) == ["AUS", "NOR", "SWE", "USA"]
    for country, found in parts.items():
        target = people[people["country"] == country]
        assert found.weights.sum() == pytest.approx(1) and found.ess <= len(pool) + 1e-6
        for attr in ("Q260", "DEGREE", "RELIGION"):
            want = shares(target, attr)
            got = pd.Series(found.weights).groupby(pool[attr].to_numpy()).sum()
            assert (got.reindex(want.index).fillna(0) - want).abs().max() < 1e-6, (country, attr)
            assert found.tv_after[attr] < 1e-6
        # age is raked over the target's deciles
        edges = np.unique(np.quantile(target["Q262"].astype(float), np.linspace(0, 1, 11))[1:-1])
        band = lambda x: np.searchsorted(edges, x.astype(float), side="right")   # noqa: E731
        want = pd.Series(target["weight"].to_numpy()).groupby(band(target["Q262"])).sum()
        got = pd.Series(found.weights).groupby(band(pool["Q262"])).sum()
        assert (got.reindex(want.index).fillna(0) - want / want.sum()).abs().max() < 1e-6
    # Norway's degree share is not the USA's: alignment had something to do there
    assert parts["NOR"].tv_before["RELIGION"] > 0.05
    # method none keeps the pool's weights: TV before = after
    none = align(pool, people[people["country"] == "NOR"], by, CARDATA, method="none")
    assert none.tv_after == pytest.approx(none.tv_before, abs=1e-12) and np.allclose(none.weights, 1 / len(pool))


def test_a_per_country_set_relabels_personas_keeps_the_target_people_and_scores_against_them(tmp_path):
    pool, people = usa_pool()
    pool_dir, target_dir = tmp_path / "pool", tmp_path / "target"
    from raysim.survey.population import write_population
    write_population(pool, pool_dir, CARDATA)
    write_population(people, target_dir, CARDATA)
    spec = AlignSpec(pool={"path": str(pool_dir)}, target={"path": str(target_dir)}, by=["Q260", "DEGREE"],
                     per_country=True, size=300, seed=1)
    make_aligned_set(spec, tmp_path / "set")
    personas = read_population(tmp_path / "set" / "population")
    assert len(personas) == 1200 and personas["respondent_id"].is_unique and (personas["weight"] == 1).all()
    assert personas.groupby("country").size().to_dict() == {c: 300 for c in ("AUS", "NOR", "SWE", "USA")}
    link = pd.read_parquet(tmp_path / "set" / "personas.parquet")
    assert (link["pool_country"] == "USA").all() and set(link["pool_respondent_id"]) <= set(pool["respondent_id"])
    # the personas are the pool's people: their attributes travel, relabelled to the country
    merged = link.merge(pool, left_on="pool_respondent_id", right_on="respondent_id", suffixes=("", "_pool"))
    merged = merged.merge(personas, on=["country", "respondent_id"], suffixes=("_pool", ""))
    assert (merged["Q260"] == merged["Q260_pool"]).all() and (merged["RELIGION"] == merged["RELIGION_pool"]).all()
    report = yaml.safe_load((tmp_path / "set" / "alignment.yaml").read_text())
    assert report["humans"] == "humans" and set(report["parts"]) == {"AUS", "NOR", "SWE", "USA"}
    for country, part in report["parts"].items():   # the resampled personas' own TV distance, as written
        mine, theirs = personas[personas["country"] == country], people[people["country"] == country]
        for attr in ("Q260", "DEGREE"):
            tv = 0.5 * shares(mine, attr).sub(shares(theirs, attr), fill_value=0).abs().sum()
            assert part["tv_distance"][attr]["resampled"] == pytest.approx(tv, abs=1e-6)
            assert part["tv_distance"][attr]["after"] < 1e-6
    humans = humans_of(tmp_path / "set" / "population")
    assert humans == tmp_path / "set" / "humans" and len(read_population(humans)) == len(people)
    assert humans_of(target_dir) is None   # any other population is scored against itself

    # the personas' simulation is scored against the country's people, not the personas' own answers
    results = uniform_results(personas, CARDATA, ["POVERTY"], run_id="r", config_hash="h")
    humans_frame = read_population(humans)
    against = score(results, personas, CARDATA, n_boot=50, seed=0, humans=humans_frame)
    own = score(results, personas, CARDATA, n_boot=50, seed=0)
    kl = lambda s, c: s.table.query("metric == 'kl' and category == 'Overall' and country == @c")["value"].item()  # noqa: E731
    for country in ("AUS", "NOR", "SWE", "USA"):
        p = humans_frame[humans_frame["country"] == country].groupby("POVERTY")["weight"].sum()
        p = (p / p.sum()).to_numpy()
        assert kl(against, country) == pytest.approx(float(D.kl(p, np.full(3, 1 / 3))), abs=1e-12)
        assert kl(against, country) != pytest.approx(kl(own, country))
    # the noise floor is the people's own: ~1,000+ per country, far below the 300 personas'
    floor = lambda s: s.table.query("metric == 'kl' and category == 'Overall' and country == 'NOR'")["floor"].item()  # noqa: E731
    assert floor(against) < floor(own)
    # a group with no human is left out and named
    lone = score(results, personas, CARDATA, n_boot=10, humans=humans_frame[humans_frame["country"] != "SWE"])
    assert lone.humanless == ("SWE",) and "SWE" not in set(lone.table["country"])


def test_a_marginals_target_is_raked_per_country_with_age_ranges_and_has_no_people(tmp_path):
    pool, _ = usa_pool()
    from raysim.survey.population import write_population
    write_population(pool, tmp_path / "pool", CARDATA)
    marginals = {"codebook": "cardata", "marginals": {
        "NOR": {"Q260": {1: 0.49, 2: 0.51}, "Q262": {"18-34": 0.3, "35-59": 0.45, "60-99": 0.25}},
        "SWE": {"DEGREE": {1: 0.4, 2: 0.6}}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(marginals))
    spec = AlignSpec(pool={"path": str(tmp_path / "pool")}, target={"marginals": str(tmp_path / "m.yaml")},
                     by=["Q260", "Q262"], size=None)
    with pytest.raises(AlignError, match="^target country SWE: Q260: not an attribute"):   # nothing written
        make_aligned_set(spec, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    marginals["marginals"].pop("SWE")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(marginals))
    parts, _ = make_aligned_set(spec, tmp_path / "set")
    personas = read_population(tmp_path / "set" / "population")
    assert set(personas["country"]) == {"NOR"} and parts["NOR"].tv_after["Q262"] < 1e-6
    age = pd.cut(personas["Q262"].astype(float), [17, 34, 59, 99], labels=["a", "b", "c"])
    got = personas.groupby(age, observed=False)["weight"].sum() / personas["weight"].sum()
    assert np.allclose(got.to_numpy(), [0.3, 0.45, 0.25], atol=1e-6)
    assert shares(personas, "Q260").to_numpy() == pytest.approx([0.49, 0.51], abs=1e-6)
    with pytest.raises(AlignError, match="no people"):
        humans_of(tmp_path / "set" / "population")
    # only raking works from marginals; a bad code is named
    with pytest.raises(AlignError, match="needs the target's people"):
        align(pool, {"Q260": {1: 1.0}}, ["Q260"], CARDATA, method="ot")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"marginals": {"NOR": {"Q260": {3: 1.0}}}}))
    with pytest.raises(AlignError, match="Q260: 3 is not a code"):
        load_marginals(tmp_path / "c.yaml", CARDATA)


def test_the_aligned_source_makes_the_set_once_in_the_run_directory(tmp_path):
    assert "aligned" in registered_sources()
    raw = {"aligned": {"pool": {"synthetic": {"n": 400, "seed": 2}}, "target": {"cardata": True},
                       "by": ["Q260", "Q262"], "per_country": True, "size": 50}}
    source = parse_source(raw)
    assert source == parse_source(raw) and source.to_config()["pool"] == {"synthetic": {"n": 400, "seed": 2}}
    assert "aligned to the real carData::WVS respondents" in source.describe()
    path = source.ensure(tmp_path)
    assert path == tmp_path.resolve() / "aligned" / "population"
    personas = read_population(path)
    assert len(personas) == 200 and source.codebook(tmp_path).name == "cardata"
    stamp = (path.parent / "alignment.yaml").stat().st_mtime_ns
    assert source.ensure(tmp_path) == path and (path.parent / "alignment.yaml").stat().st_mtime_ns == stamp
    # bad configs: one line naming the key
    for bad, words in (({**raw["aligned"], "method": "magic"}, "magic"),
                       ({**raw["aligned"], "pool": {"nowhere": 1}}, "nowhere"),
                       ({**raw["aligned"], "size": 0}, "size"),
                       ({**raw["aligned"], "colour": "red"}, "colour"),
                       ({**raw["aligned"], "by": "Q260"}, "by"),
                       ({**raw["aligned"], "target": {"marginals": str(tmp_path / "none.yaml")}}, "none.yaml is not a file")):
        with pytest.raises(SourceError, match=words) as e:
            parse_source({"aligned": bad})
        assert "\n" not in str(e.value) and str(e.value).startswith("population.aligned")


def test_a_ray_run_on_the_aligned_source_is_scored_against_the_targets_people(tmp_path):
    from pipeline_helpers import raysim_ok, write_config

    aligned = {"pool": {"synthetic": {"n": 300, "seed": 1}}, "target": {"cardata": True}, "by": ["Q260", "Q262"],
               "per_country": True, "size": 5, "seed": 0}
    cfg = write_config(tmp_path / "run.yaml", population={"aligned": aligned}, questions=["POVERTY"],
                       sampling={"per_country": 5, "seed": 0})
    raysim_ok("simulate", "--config", str(cfg), "-o", str(tmp_path / "run"))
    assert (tmp_path / "run" / "aligned" / "humans").is_dir()
    out = raysim_ok("score", str(tmp_path / "run"), "--boot", "5")
    assert "aligned persona set" in out and "5381 people" in out
    table = pd.read_csv(tmp_path / "run" / "scores.csv")
    overall = table.query("metric == 'kl' and category == 'Overall'").set_index("country")
    assert set(overall.index) == {"AUS", "NOR", "SWE", "USA", "ALL"} and (overall["n_respondents"].drop("ALL") == 5).all()


def test_ot_cost_weights_decide_which_attributes_the_subgroup_is_matched_on():
    pool, people = usa_pool()
    nor = people[people["country"] == "NOR"]
    by = ["Q260", "DEGREE", "RELIGION"]
    tv = {}
    for heavy in ("RELIGION", "DEGREE"):
        weights = {a: (20.0 if a == heavy else 0.05) for a in by}
        found = align(pool, nor, by, CARDATA, method="ot", stay=0.02, cost_weights=weights)
        tv[heavy] = found.tv_after
    assert tv["RELIGION"]["RELIGION"] < tv["DEGREE"]["RELIGION"]
    assert tv["DEGREE"]["DEGREE"] < tv["RELIGION"]["DEGREE"]
    with pytest.raises(AlignError, match="cost weights name \\['AGE'\\]"):
        align(pool, nor, by, CARDATA, method="ot", cost_weights={"AGE": 1.0})
