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
