"""Persona pools besides survey populations: narrative personas imported from JSON/Parquet with
their attributes (``raysim data import --text``), simulated with ``system: narrative``, and the
quality filter that drops personas whose model answers contradict their attributes."""

import json

import numpy as np
import pandas as pd
import pytest

from raysim.align.build import AlignSpec, make_aligned_set
from raysim.align.importance import AlignError
from raysim.align.quality import quality_check
from raysim.cli import main
from raysim.engine.hf import HFEngine
from raysim.engine.loading import ModelSpec, load_model
from raysim.methods.simulator import Setup, Simulator
from raysim.methods.spec import MethodError, get_method
from raysim.runs.results import write_results_shard
from raysim.runs.rundir import results_dir
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import load_codebook
from raysim.survey.population import read_population

CARDATA = load_codebook("cardata")
SEX = {1: ("man", "male"), 2: ("woman", "female")}


def narratives(n=24, lie_every=6):
    """Narrative personas written from real Norwegian carData respondents (labels, not codes, as a
    user's file would hold them); every ``lie_every``-th narrative states the other sex."""
    people = load_cardata().query("country == 'NOR'").head(n).reset_index(drop=True)
    records = []
    for i, r in people.iterrows():
        sex = int(r["Q260"])
        told = 3 - sex if i % lie_every == 0 else sex
        degree = "I went to university." if r["DEGREE"] == 1 else "I never went to university."
        records.append({"id": f"p{i:03d}", "country": "NOR", "persona": f"I am a {r['Q262']}-year-old "
                        f"{SEX[told][0]} living in Norway. {degree}",
                        "Q260": SEX[sex][1], "Q262": int(r["Q262"]), "DEGREE": int(r["DEGREE"])})
    return records


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_narrative_personas_import_from_jsonl_and_parquet_with_their_attributes(tmp_path, capsys):
    records = narratives()
    write_jsonl(tmp_path / "personas.jsonl", records)
    assert main(["data", "import", str(tmp_path / "personas.jsonl"), "--codebook", "cardata", "--id", "id",
                 "--country", "country", "--text", "persona", "-o", str(tmp_path / "pool")]) == 0
    pool = read_population(tmp_path / "pool")
    assert len(pool) == len(records) and list(pool["persona"]) == [r["persona"] for r in records]
    assert list(pool["Q260"]) == [1 if r["Q260"] == "male" else 2 for r in records]   # labels mapped to codes
    assert pool["POVERTY"].isna().all() and pool["RELIGION"].isna().all()   # items the file lacks: null
    # the same personas as Parquet
    pd.DataFrame(records).to_parquet(tmp_path / "personas.parquet")
    assert main(["data", "import", str(tmp_path / "personas.parquet"), "--codebook", "cardata", "--country-code",
                 "NOR", "--text", "persona", "-o", str(tmp_path / "pool2")]) == 0
    assert list(read_population(tmp_path / "pool2")["persona"]) == list(pool["persona"])
    # a persona without text, or a file that is not a list of records: one line naming the file
    capsys.readouterr()
    write_jsonl(tmp_path / "blank.jsonl", [*records[:3], {**records[3], "persona": "  "}])
    (tmp_path / "broken.json").write_text('{"persona": ')
    for name, words in (("blank.jsonl", "persona is empty at row 4"), ("broken.json", "broken.json")):
        code = main(["data", "import", str(tmp_path / name), "--codebook", "cardata", "--country-code", "NOR",
                     "--text", "persona", "-o", str(tmp_path / f"out-{name}")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and words in err[0], err
        assert not (tmp_path / f"out-{name}").exists()


def test_the_narrative_system_turn_is_the_personas_own_text(tmp_path):
    write_jsonl(tmp_path / "personas.jsonl", narratives(n=4))
    assert main(["data", "import", str(tmp_path / "personas.jsonl"), "--codebook", "cardata", "--country-code", "NOR",
                 "--text", "persona", "-o", str(tmp_path / "pool")]) == 0
    pool = read_population(tmp_path / "pool")
    engine = HFEngine(load_model(ModelSpec()))
    sim = Simulator(get_method("narrative"), engine, Setup(CARDATA, ("POVERTY", "Q260")))
    row = pool.iloc[1].to_dict()
    system = sim.kind.prompt_requests(row)[0].prefix[0]["content"]
    assert row["persona"] in system and "World Values Survey" in system
    rows = sim(pool, "r", "h")
    assert len(rows) == 8 and all(abs(sum(p) - 1) < 1e-5 for p in rows["probs"])
    with pytest.raises(MethodError, match="no persona text"):
        sim.kind.prompt_requests({**row, "persona": None})


def answered(pool, qid, answer_of):
    """Logprob result rows whose most likely option is ``answer_of(row)``."""
    codes = list(CARDATA[qid].codes)
    probs = [[0.8 if c == answer_of(r) else 0.2 / (len(codes) - 1) for c in codes] for _, r in pool.iterrows()]
    return pd.DataFrame({"method": "narrative", "config_hash": "h", "respondent_id": pool["respondent_id"],
                         "country": pool["country"], "qid": qid, "option_codes": [codes] * len(pool),
                         "probs": probs, "sampled_code": pd.array([None] * len(pool), dtype="Int32"),
                         "valid": True})


def test_the_quality_filter_drops_and_counts_contradicting_personas(tmp_path):
    write_jsonl(tmp_path / "personas.jsonl", narratives())
    assert main(["data", "import", str(tmp_path / "personas.jsonl"), "--codebook", "cardata", "--country-code", "NOR",
                 "--text", "persona", "-o", str(tmp_path / "pool")]) == 0
    pool = read_population(tmp_path / "pool")
    lied = np.arange(len(pool)) % 6 == 0
    # a model that believes the narrative: it answers the sex the text states, and every degree right
    told = np.where(lied, 3 - pool["Q260"].to_numpy(dtype=int), pool["Q260"].to_numpy(dtype=int))
    results = pd.concat([answered(pool, "Q260", lambda r: told[r.name]),
                         answered(pool, "DEGREE", lambda r: int(r["DEGREE"]))], ignore_index=True)
    check = quality_check(results, pool, CARDATA)
    assert (check.dropped == lied).all() and check.checked == len(pool)
    assert check.contradictions == {"Q260": int(lied.sum()), "DEGREE": 0}
    assert not quality_check(results, pool, CARDATA, tolerance=1).dropped.any()
    # sampled answers (a generate run) are checked the same way
    sampled = results.assign(probs=None, sampled_code=[int(np.argmax(p)) + 1 for p in results["probs"]])
    assert (quality_check(sampled, pool, CARDATA).dropped == lied).all()
    # a run asking opinion items is no check of attributes
    with pytest.raises(AlignError, match="attributes"):
        quality_check(answered(pool, "POVERTY", lambda r: 1), pool.assign(POVERTY=1), CARDATA)

    # in an aligned set: the dropped personas never reach it, and the report counts them
    run = tmp_path / "check"
    write_results_shard(results.assign(run_id="r", raw_text=None, weight=1.0), results_dir(run), "part-0")
    spec = AlignSpec(pool={"path": str(tmp_path / "pool")}, target={"cardata": True}, by=["Q260", "DEGREE"],
                     per_country=True, check=str(run))
    parts, check = make_aligned_set(spec, tmp_path / "set")
    assert int(check.dropped.sum()) == int(lied.sum())
    link = pd.read_parquet(tmp_path / "set" / "personas.parquet")
    assert not set(link["pool_respondent_id"]) & set(pool.loc[lied, "respondent_id"])
    import yaml
    report = yaml.safe_load((tmp_path / "set" / "alignment.yaml").read_text())
    assert report["quality"]["dropped"] == int(lied.sum()) and report["pool_rows"] == len(pool) - int(lied.sum())
    assert "persona" in read_population(tmp_path / "set" / "population").columns   # the narratives travel


def test_a_mixture_fits_prompts_become_personas_whose_attributes_the_model_answers(tmp_path, capsys):
    from raysim.align.pools import mixture_pool
    from raysim.fits import write_fit
    from raysim.fits.artefact import load_fit
    from raysim.survey.population import write_population

    # the committed per-country fit (docs/results/mixture-cardata): its positive-weight prompts, by country
    fit = load_fit("docs/results/mixture-cardata")
    pool, left_out = mixture_pool(fit)
    groups = fit.result["groups"]
    assert len(pool) + left_out == sum(len(g["prompts"]) for g in groups.values())
    for country, g in groups.items():
        mine = pool[pool["country"] == country]
        assert mine["weight"].sum() == pytest.approx(sum(g["weights"]))
        assert set(mine["persona"]) == {p for p, w in zip(g["prompts"], g["weights"]) if w > 0}
    with pytest.raises(AlignError, match="--country is not needed"):
        mixture_pool(fit, "NOR")
    # a pooled fit's prompts take the country given
    pooled = write_fit(tmp_path / "pooled", fitter="mixture", params={}, run={},
                       result={"prompts": ["You are a nurse in Bergen.", "You farm near Tromsø.", "unused"],
                               "weights": [0.6, 0.4, 0.0]})
    with pytest.raises(AlignError, match="--country ISO3"):
        mixture_pool(pooled)
    prompts, left_out = mixture_pool(pooled, "NOR")
    assert list(prompts["weight"]) == [0.6, 0.4] and left_out == 1 and list(prompts["respondent_id"]) == [1, 2]

    # the model's answers are the prompts' attributes; then the pool aligns over them
    write_population(pool, tmp_path / "pool", CARDATA)
    people = read_population(tmp_path / "pool")
    assert people["Q260"].isna().all() and "persona" in people.columns
    results = pd.concat([answered(people, "Q260", lambda r: 1 + int(r["respondent_id"]) % 2),
                         answered(people, "DEGREE", lambda r: 2)], ignore_index=True)
    check = quality_check(results, people, CARDATA)
    assert not check.dropped.any() and check.checked == 0
    assert check.answered == {"Q260": len(people), "DEGREE": len(people)}
    assert list(check.pool["Q260"]) == [1 + i % 2 for i in people["respondent_id"]]
    run = tmp_path / "asked"
    write_results_shard(results.assign(run_id="r", raw_text=None, weight=1.0), results_dir(run), "part-0")
    assert main(["personas", "pool", "--mixture", str(tmp_path / "pooled"), "--codebook", "cardata", "--country", "NOR",
                 "-o", str(tmp_path / "p2")]) == 0
    assert "2 mixture prompts" in capsys.readouterr().out
    spec = AlignSpec(pool={"path": str(tmp_path / "pool")}, target={"cardata": True}, by=["Q260"], check=str(run))
    make_aligned_set(spec, tmp_path / "set")
    aligned = read_population(tmp_path / "set" / "population")
    target = load_cardata()
    want = target.groupby("Q260")["weight"].sum() / target["weight"].sum()
    got = aligned.groupby("Q260")["weight"].sum() / aligned["weight"].sum()
    assert (got - want).abs().max() < 1e-6
