"""Tune's pieces that need no Ray: search spaces, presets, configs, the split, the objective."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from raysim.engine.plan import PlanError
from raysim.identity.injection import load_preset
from raysim.identity.injection import PsiiPreset, psii_plan
from raysim.identity.library import load_library
from raysim.methods.kinds.prompting import prompt_language
from raysim.methods.spec import MethodError, get_method
from raysim.methods.templates import LANGUAGES
from raysim.metrics.scores import OVERALL, POOLED, score
from raysim.pipeline.config import parse_config
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import load_codebook
from raysim.survey.population import ID
from raysim.tune.config import TuneError, load_tune, parse_tune
from raysim.tune.data import prepare
from raysim.tune.objective import evaluate
from raysim.tune.space import SpaceError, parse_space
from raysim.tune.sweep import REFERENCE, sweep_presets

from pipeline_helpers import ROOT

SMALL = ROOT / "configs" / "tune" / "cardata_small.yaml"


@pytest.fixture(scope="module")
def base():
    return load_preset("smollm2-135m")


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(SMALL.read_text())


def changed(raw, **top):
    out = copy.deepcopy(raw)
    for key, value in top.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- presets


def test_preset_overrides_resolve_attribute_then_group_then_default(base):
    p = base.with_(group_scales={"high": 3.0}, attribute_scales={"Q273": 0.5}, attribute_layers={"Q260": 7})
    assert p.scale_of("Q271") == base.vector_scale          # low: no override
    assert p.scale_of("Q260") == 3.0 and p.scale_of("Q273") == 0.5
    assert p.layer_of("Q260") == 7 and p.layer_of("Q273") == base.layers["high"]
    assert PsiiPreset.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("change, message", [
    ({"group_scales": {"nope": 1.0}}, "unknown groups"),
    ({"attribute_scales": {"Q260": -1.0}}, "attribute_scales must be >= 0"),
    ({"language_weights": {"en": 0.0}}, "positive sum"),
])
def test_bad_preset_overrides_are_refused(base, change, message):
    with pytest.raises(PlanError, match=message):
        base.with_(**change)


def test_an_attribute_at_scale_zero_injects_nothing(base):
    library = load_library("embedded")
    person = {"Q260": 1, "Q275": 3}
    both = psii_plan(library, person, base, seed=1, attributes=("Q260", "Q275"))
    alone = psii_plan(library, person, base.with_(attribute_scales={"Q275": 0.0}), seed=1,
                      attributes=("Q260", "Q275"))
    assert len(both.terms) == 2 and len(alone.terms) == 1 and alone.terms[0].layer == base.layer_of("Q260")


def test_language_weights_steer_the_mixed_prompt_language():
    spec = get_method("psii")
    only_zh = {prompt_language(spec.language, 0, rid, {"zh": 1.0}) for rid in range(200)}
    assert only_zh == {"zh"}
    half = [prompt_language(spec.language, 0, rid, {"en": 1.0, "ru": 1.0}) for rid in range(400)]
    assert set(half) == {"en", "ru"} and 150 < half.count("en") < 250
    assert half == [prompt_language(spec.language, 0, rid, {"en": 1.0, "ru": 1.0}) for rid in range(400)]
    with pytest.raises(MethodError, match="unknown languages"):
        prompt_language(spec.language, 0, 1, {"xx": 1.0})


# --------------------------------------------------------------------------- spaces


def test_a_space_maps_parameters_onto_the_preset(base):
    space = parse_space({"sigma": [0, 1], "layers": {"per": "attribute", "range": [2, 29]},
                         "vector_scale": {"per": "group", "range": [0.5, 4], "log": True},
                         "language_scale": [0, 2], "language_mix": ["en", "zh", "ru"]}, 30, LANGUAGES)
    params = space.parameters(base, ("Q260", "Q271"))
    assert set(params) == {"sigma", "layer.Q260", "layer.Q271", "scale.low", "scale.high", "language_scale",
                           "mix.en", "mix.zh", "mix.ru"}
    assert params["layer.Q260"].integer and params["scale.low"].log
    p = space.preset(base, {"sigma": 0.2, "layer.Q260": 5, "layer.Q271": 9, "scale.low": 1.5, "scale.high": 3.0,
                            "language_scale": 0.5, "mix.en": 0.5, "mix.zh": 0.25, "mix.ru": 1.0})
    assert (p.sigma, p.layer_of("Q260"), p.layer_of("Q271"), p.language_scale) == (0.2, 5, 9, 0.5)
    assert p.scale_of("Q271") == 1.5 and p.scale_of("Q260") == 3.0
    w = p.language_weights
    assert math.isclose(sum(w.values()), 1.0) and w["ru"] == 0.0 and w["zh"] == pytest.approx(2 * w["en"])


def test_the_untuned_preset_is_a_point_of_the_space(base):
    space = parse_space({"sigma": [0, 1], "layers": {"per": "group", "range": [4, 30]},
                         "vector_scale": {"per": "all", "range": [1, 3]}, "language_mix": ["en", "es"]}, 30, LANGUAGES)
    params = space.parameters(base, ("Q260", "Q263"))
    assert set(params) == {"sigma", "layer.mid", "layer.high", "scale.all", "mix.en", "mix.es"}
    point = space.point(base, params)
    again = space.preset(base, point)
    assert (again.sigma, again.layers, again.vector_scale) == (base.sigma, base.layers, base.vector_scale)
    assert again.language_weights == {"en": 0.5, "es": 0.5}
    narrow = parse_space({"sigma": [0.5, 1]}, 30, LANGUAGES)   # base sigma 0.36 lies outside
    assert narrow.point(base, narrow.parameters(base, ("Q260",))) is None


@pytest.mark.parametrize("raw, message", [
    ({"layers": {"per": "group", "range": [0, 12]}}, "outside the model's layers 1..30"),
    ({"layers": {"per": "group", "range": [3, 31]}}, "outside the model's layers 1..30"),
    ({"layers": {"per": "layer"}}, "per must be one of"),
    ({"sigma": [1, 0]}, "low 1.0 > high 0.0"),
    ({"sigma": "wide"}, "a range is"),
    ({"vector_scale": {"per": "group", "range": [0, 2], "log": True}}, "log range needs low > 0"),
    ({"language_mix": ["en", "xx"]}, "language_mix"),
    ({"temperature": [0, 1]}, "unknown keys"),
])
def test_bad_spaces_name_the_problem(raw, message):
    with pytest.raises(SpaceError, match=message):
        parse_space(raw, 30, LANGUAGES)


def test_an_empty_space_searches_nothing(base):
    with pytest.raises(SpaceError, match="searches nothing"):
        parse_space({}, 30, LANGUAGES).parameters(base, ("Q260",))


# --------------------------------------------------------------------------- configs


def test_the_shipped_configs_load():
    config = load_tune(SMALL)
    assert config.attributes() == ("Q260",) and config.concurrency == config.run.actors.number
    assert set(config.space.parameters(config.base_preset(), config.attributes())) == {"sigma", "layer.high"}
    sweep = load_tune(ROOT / "configs" / "tune" / "synthetic_sweep.yaml")
    assert len(sweep.attributes()) == 13 and sweep.sweep_layers()[0] == 1
    full = load_tune(ROOT / "configs" / "tune" / "psii_cardata.yaml")
    assert len(full.space.parameters(full.base_preset(), full.attributes())) == 9
    cluster = yaml.safe_load((ROOT / "configs" / "tune" / "wvs7_qwen7b.yaml").read_text())
    with pytest.raises(TuneError, match="vectors: /runs/vectors/qwen2.5-7b is not a vector library"):   # its library is built on the cluster
        parse_tune(cluster)


@pytest.mark.parametrize("change, message", [
    ({"method": "pe"}, "injects nothing"),
    ({"split": None}, "needs split: and space:"),
    ({"split": {"validation": 0, "heldout": 3}}, "must be >= 1"),
    ({"sampling": {"n": 10}}, "only seed is read"),
    ({"objective": {"kl": 0, "ed": 0}}, "not both 0"),
    ({"objective": {"by": "planet"}}, "objective.by"),
    ({"search": {"rungs": 0}}, "rungs must be >= 1"),
    ({"search": {"trials": 3}}, "unknown key"),
    ({"space": {"layers": {"range": [1, 99]}}}, "outside the model's layers"),
    ({"sweep": {"attributes": ["Q275"]}}, "not attributes of both"),
    ({"sweep": {"layers": [0]}}, "outside the model's layers"),
    ({"method": "multilingual"}, "injects nothing"),
])
def test_bad_tune_configs_name_the_problem(raw, change, message):
    with pytest.raises(TuneError, match=message):
        parse_tune(changed(raw, **change))


def test_language_mix_needs_a_mixed_language_method(raw, tmp_path):
    english = tmp_path / "psii_en.yaml"
    english.write_text(yaml.safe_dump({"name": "psii_en", "description": "PSII in English", "kind": "prompt",
                                       "system": "pe", "language": "en", "injection": {"demographic": True}}))
    with pytest.raises(TuneError, match="prompts in one language"):
        parse_tune(changed(raw, method=str(english), space={"language_mix": ["en", "zh"]}))


# --------------------------------------------------------------------------- data and objective


def test_validation_and_heldout_are_disjoint_and_the_dir_is_claimed(raw, tmp_path):
    config = parse_tune(changed(raw, split={"validation": 30, "heldout": 20, "seed": 3}))
    prepared = prepare(config, tmp_path)
    v, h = prepared.validation, prepared.heldout
    assert (len(v), len(h)) == (30, 20) and not set(v[ID]) & set(h[ID])
    assert {"Q260", "POVERTY", "weight"} <= set(v.columns)
    # Random draws across the four countries, not the population's (country, id) order cut in two;
    # the first rung's chunk (half the validation sample) too.
    assert v["country"].nunique() == h["country"].nunique() == 4
    assert v["country"].head(15).nunique() >= 3 and not v[ID].is_monotonic_increasing
    again = prepare(config, tmp_path)   # the same config resumes
    pd.testing.assert_frame_equal(again.validation, v)
    other = parse_tune(changed(raw, split={"validation": 31, "heldout": 20, "seed": 3}))
    with pytest.raises(TuneError, match="another config"):
        prepare(other, tmp_path)
    with pytest.raises(TuneError, match="population has"):
        prepare(parse_tune(changed(raw, split={"validation": 5000, "heldout": 1000})), tmp_path / "big")


def test_the_objective_is_the_weighted_pooled_kl_and_ed(raw):
    config = parse_tune(changed(raw, objective={"kl": 2.0, "ed": 0.5, "by": "country"}))
    people = load_cardata().groupby("country").head(15).reset_index(drop=True)
    codebook = load_codebook("cardata")
    item = codebook["POVERTY"]
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"method": "m", "config_hash": "h", ID: people[ID], "country": people["country"],
                         "qid": "POVERTY", "option_codes": [list(item.codes)] * len(people),
                         "probs": [list(rng.dirichlet(np.ones(len(item.codes)))) for _ in range(len(people))],
                         "sampled_code": None, "valid": True})
    ev = evaluate(rows, people, codebook, config.objective)
    t = score(rows, people, codebook, n_boot=1).table
    overall = t[(t["country"] == POOLED) & (t["category"] == OVERALL)].set_index("metric")["value"]
    assert ev.kl == pytest.approx(overall["kl"]) and ev.ed == pytest.approx(overall["ed"])
    assert ev.objective == pytest.approx(2.0 * overall["kl"] + 0.5 * overall["ed"]) and ev.respondents == len(people)


def test_the_sweep_injects_one_attribute_alone(base):
    library = load_library("embedded")
    attributes = ("Q260", "Q275")
    presets = sweep_presets(base, attributes, ("Q275",), (3, 17), sigma=0.0)
    assert set(presets) == {("", REFERENCE), ("Q275", 3), ("Q275", 17)}
    person = {"Q260": 2, "Q275": 4}
    assert psii_plan(library, person, presets[("", REFERENCE)], seed=0, attributes=attributes).terms == ()
    for layer in (3, 17):
        plan = psii_plan(library, person, presets[("Q275", layer)], seed=0, language="en", attributes=attributes)
        assert [t.layer for t in plan.terms] == [layer] and plan.final_vector is None and plan.sigma == 0.0


def test_a_tuned_preset_file_is_accepted_by_run_configs(base, tmp_path):
    path = tmp_path / "best_preset.yaml"
    tuned = base.with_(sigma=0.7, attribute_layers={"Q260": 12}, language_weights={"en": 0.8, "zh": 0.2})
    path.write_text(yaml.safe_dump({"psii": tuned.to_dict(), "tuned": {"from": "a test"}}))
    assert load_preset(str(path)) == tuned
    config = parse_config({"population": {"cardata": True}, "method": "psii", "preset": str(path)})
    assert config.resolved(tmp_path)["injection"]["psii"]["sigma"] == 0.7


def test_the_tune_command_reports_bad_input_in_one_line(raw, tmp_path, capsys):
    from raysim.cli import main

    assert main(["tune", "--config", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "out")]) == 2
    assert "raysim: error:" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(changed(raw, method="direct")))
    assert main(["tune", "--config", str(bad), "-o", str(tmp_path / "out")]) == 2
    assert "injects nothing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()   # refused before anything was written
