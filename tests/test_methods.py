"""The method registry (configs/methods) and the Simulator on the embedded default, no Ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from raysim.engine.hf import HFEngine
from raysim.engine.loading import ModelSpec, load_model, model_preset, preset_names
from raysim.identity.injection import load_preset
from raysim.identity.dataset import ATTRIBUTES
from raysim.identity.library import LibraryError, load_library
from raysim.methods.kinds.prompting import prompt_language
from raysim.methods.kinds.simvbg import FRAMINGS as SIMVBG_FRAMINGS, majority as _majority
from raysim.methods.simulator import Setup, Simulator
from raysim.methods.spec import MethodError, available_methods, get_method, parse_method
from raysim.methods.templates import LANGUAGES, load_prompts
from raysim.methods.translation import LocalizedItem
from raysim.survey.codebook import load_codebook
from raysim.survey.population import ID
from raysim.survey.profile import profile_columns
from raysim.survey.synthetic import synth_frames

pytestmark = pytest.mark.usefixtures("one_thread")

PAPER_METHODS = {"direct", "high_temp", "multilingual", "divreq", "pe", "simvbg", "psii", "psii_no_value",
                 "psii_no_demographic", "psii_no_profile", "psii_no_noise", "psii_no_layerwise"}
QIDS = ("Q1", "Q46")   # a battery item (4 labelled options) and a 4-point scale


@pytest.fixture(scope="module")
def codebook():
    return load_codebook("wvs7")


@pytest.fixture(scope="module")
def people(codebook):
    return next(iter(synth_frames(60, 3, codebook=codebook))).head(2).reset_index(drop=True)


@pytest.fixture(scope="module")
def engine():
    return HFEngine(load_model(ModelSpec()))


def simulator(name, engine, codebook, answer="logprob", seed=0, qids=QIDS, **kw):
    kw = {"vectors": load_library("embedded"), "preset": load_preset("smollm2-135m"), **kw}
    return Simulator(get_method(name), engine, Setup(codebook, qids, answer=answer, seed=seed, resources=kw))


# --------------------------------------------------------------------------- registry


def test_every_paper_method_is_registered_and_valid():
    names = set(available_methods())
    assert PAPER_METHODS <= names
    for name in names:
        spec = get_method(name)
        assert spec.name == name and spec.description
    assert get_method("high_temp").logprob.temperature == 2.0 and get_method("high_temp").generate.temperature == 2.0
    assert get_method("pe").generate.temperature == 0.7 and get_method("pe").generate.top_k == 20
    assert get_method("multilingual").language == "mixed" and get_method("psii").language == "mixed"
    ablations = {n: get_method(n).injection for n in PAPER_METHODS if n.startswith("psii_")}
    assert not ablations["psii_no_value"].language_vector and not ablations["psii_no_noise"].noise
    assert not ablations["psii_no_demographic"].demographic and not ablations["psii_no_layerwise"].layerwise
    assert get_method("psii_no_profile").system == "direct" and not get_method("psii_no_profile").kind_class.profile_languages(get_method("psii_no_profile").params)


@pytest.mark.parametrize("doc, message", [
    ({"description": "x"}, "no 'name'"),
    ({"name": "x", "kind": "chain"}, r"m.yaml: unknown method kind 'chain'; known: \['mixture', 'prompt', 'simvbg', 'uniform'"),
    ({"name": "x", "system": "persona"}, "system 'persona' is not one of"),
    ({"name": "x", "language": "fr"}, "language 'fr' is not one of"),
    ({"name": "x", "temperature": 2}, r"unknown key\(s\) \['temperature'\]"),
    ({"name": "x", "generate": {"temp": 2}}, r"generate: unknown key\(s\) \['temp'\]"),
    ({"name": "x", "logprob": {"temperature": 0}}, "temperatures must be > 0"),
    ({"name": "x", "kind": "simvbg", "injection": {}}, r"m.yaml: unknown key\(s\) \['injection'\]"),
    ({"name": "x", "kind": "uniform", "language": "es"}, r"unknown key\(s\) \['language'\]"),
    ({"name": "x", "logprob": 2}, "m.yaml logprob: expected a mapping"),
    ({"name": "x", "injection": {"noise_scope": "batch"}}, "noise_scope 'batch'"),
    ({"name": "x", "injection": {"flat_depth": 1.5}}, "flat_depth must be in"),
])
def test_bad_method_configs_name_the_problem(doc, message):
    with pytest.raises(MethodError, match=message):
        parse_method(doc, "m.yaml")


def test_unknown_method_and_bad_yaml(tmp_path):
    with pytest.raises(MethodError, match="unknown method 'nope'; known: .*psii"):
        get_method("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndescription: a: b\n")
    with pytest.raises(MethodError, match="not valid YAML"):
        get_method(str(bad))
    good = tmp_path / "mine.yaml"
    good.write_text(yaml.safe_dump({"name": "mine", "system": "divreq", "language": "es"}))
    assert get_method(str(good)).language == "es"   # a method outside the registry, by path


def test_method_columns(codebook):
    assert get_method("direct").columns(codebook) == ["respondent_id", "country", "weight"]
    pe, psii = get_method("pe").columns(codebook), get_method("psii").columns(codebook)
    assert pe == ["respondent_id", "country", "weight"] + [c for c in profile_columns(codebook) if c != "country"]
    assert set(ATTRIBUTES) <= set(psii) and set(pe) <= set(psii) and len(psii) == len(set(psii))
    assert set(get_method("psii_no_profile").columns(codebook)) >= set(ATTRIBUTES)


# --------------------------------------------------------------------------- paper model presets


@pytest.mark.parametrize("preset", ["qwen2.5-7b", "qwen2.5-14b", "llama-3.1-8b", "mistral-small-24b"])
def test_paper_model_presets_inject_inside_their_architecture(preset):
    data = model_preset(preset)
    n_layers = data["architecture"]["num_hidden_layers"]
    psii = load_preset(preset)
    assert sorted(a for group in psii.attribute_groups.values() for a in group) == sorted(ATTRIBUTES)
    layers = [psii.layer_of(a) for a in ATTRIBUTES]
    assert all(1 <= layer <= n_layers for layer in layers), (preset, layers, n_layers)
    assert psii.vector_scale == 2.0 and psii.sigma > 0
    flat = get_method("psii_no_layerwise").injection.flat_layer(n_layers)
    assert flat == round(0.7 * n_layers) and 1 <= flat <= n_layers
    assert data["hub_id"] and preset in preset_names()


# --------------------------------------------------------------------------- languages


def test_prompt_language_is_seeded_per_respondent_and_covers_all():
    spec = get_method("multilingual")
    drawn = [prompt_language(spec.language, 0, rid) for rid in range(300)]
    assert set(drawn) == set(LANGUAGES)
    assert drawn == [prompt_language(spec.language, 0, rid) for rid in range(300)]
    assert drawn != [prompt_language(spec.language, 1, rid) for rid in range(300)]
    assert {prompt_language(get_method("pe").language, 0, rid) for rid in range(50)} == {"en"}


class FakeTranslations:
    def __init__(self, ok: set[str]):
        self.ok = ok

    def item(self, item, battery, language):
        if item.id not in self.ok:
            return None
        return LocalizedItem(text=f"[{language}] {item.text}", options=tuple((c, f"[{language}] {l}") for c, l in item.options),
                             stem=f"[{language}] {battery.stem}" if battery else None,
                             subitem=f"[{language}] {battery.subitem}" if battery else None)


def test_questions_in_the_prompt_language_with_english_fallback(engine, codebook, people):
    sim = simulator("multilingual", engine, codebook, translations=FakeTranslations({"Q46"}))
    language = "ru"
    row = {**people.iloc[0].to_dict(), ID: next(r for r in range(1000) if prompt_language(sim.spec.language, 0, r) == language)}
    q1, q46 = sim.kind.prompt_requests(row)
    text = lambda r: r.question[0]["content"]   # noqa: E731
    assert text(q46).startswith(f"[{language}]") and load_prompts(language).options_header in text(q46)
    assert "[" not in text(q1) and codebook["Q1"].text.split(" ")[0] in text(q1)   # untranslated: English
    assert q1.prefix[0]["content"] == load_prompts(language).direct_system


# --------------------------------------------------------------------------- PSII plans and ablations


def test_psii_plans_and_ablations(engine, codebook, people):
    row = people.iloc[0].to_dict()
    answered = [a for a in ATTRIBUTES if row.get(a) is not None and not pd.isna(row[a]) and int(row[a]) >= 0]
    plans = {n: simulator(n, engine, codebook).kind.prompt_requests(row)[0].plan
             for n in ("psii", "psii_no_value", "psii_no_demographic", "psii_no_noise", "psii_no_layerwise")}
    full = plans["psii"]
    preset = load_preset("smollm2-135m")
    assert full.sigma == preset.sigma and full.final_vector is not None and len(full.terms) == len(answered)
    assert sorted(t.layer for t in full.terms) == sorted(preset.layer_of(a) for a in answered)
    assert plans["psii_no_value"].final_vector is None
    assert plans["psii_no_noise"].sigma == 0.0
    assert all(np.count_nonzero(np.asarray(t.vector)) == 0 for t in plans["psii_no_demographic"].terms)
    assert plans["psii_no_demographic"].sigma == preset.sigma and len(plans["psii_no_demographic"].terms) == len(answered)
    assert {t.layer for t in plans["psii_no_layerwise"].terms} == {round(0.7 * 30)}
    # the same respondent keeps one plan over its questions (noise scope respondent: prefix shared)
    reqs = simulator("psii", engine, codebook).kind.prompt_requests(row)
    assert reqs[0].plan == reqs[1].plan
    # no profile: Direct's system turn, vectors still there
    (np_req, _) = simulator("psii_no_profile", engine, codebook).kind.prompt_requests(row)
    language = prompt_language(get_method("psii").language, 0, int(row[ID]))
    assert np_req.prefix[0]["content"] == load_prompts(language).direct_system and np_req.plan.terms


def test_a_value_without_a_vector_contributes_no_term(engine, codebook, people):
    row = {**people.iloc[0].to_dict(), "Q281": 11}   # "Other" occupation: no vector in the library
    plan = simulator("psii", engine, codebook).kind.prompt_requests(row)[0].plan
    lib = load_library("embedded")
    assert 11 not in lib.attributes["Q281"]
    q281_layer = load_preset("smollm2-135m").layer_of("Q281")
    with_q281 = simulator("psii", engine, codebook).kind.prompt_requests(people.iloc[0].to_dict())[0].plan
    assert len(plan.terms) == len(with_q281.terms) - 1 and q281_layer in {t.layer for t in with_q281.terms}


def test_psii_refuses_a_library_of_another_model(codebook):
    tiny = HFEngine(load_model(ModelSpec(random_init="tiny-llama")))
    with pytest.raises(LibraryError, match="built for SmolLM2-135M-Instruct"):
        simulator("psii", tiny, codebook)
    simulator("pe", tiny, codebook)   # methods without vectors do not need one


def test_psii_needs_a_library(engine, codebook):
    with pytest.raises(MethodError, match="needs a vector library"):
        Simulator(get_method("psii"), engine, Setup(codebook, QIDS))
    with pytest.raises(MethodError, match="answer mode 'vote'"):
        Simulator(get_method("pe"), engine, Setup(codebook, QIDS, answer="vote"))
    with pytest.raises(MethodError, match="needs a model"):
        Simulator(get_method("pe"), None, Setup(codebook, QIDS))


# --------------------------------------------------------------------------- answering
# (every method in both modes, end to end through the pipeline: tests/test_experiment.py)


def test_rows_do_not_depend_on_the_batch(engine, codebook, people):
    for name, answer in (("psii", "logprob"), ("multilingual", "generate")):
        sim = simulator(name, engine, codebook, answer=answer)
        together = sim(people, "r", "h")
        alone = pd.concat([sim(people.iloc[[i]], "r", "h") for i in range(len(people))], ignore_index=True)
        cols = ["respondent_id", "qid", "sampled_code", "raw_text"]
        pd.testing.assert_frame_equal(together[cols], alone[cols])
        if answer == "logprob":
            np.testing.assert_allclose(np.stack(together["probs"]), np.stack(alone["probs"]), atol=1e-5)


def test_high_temp_is_flatter_than_direct(engine, codebook, people):
    direct = simulator("direct", engine, codebook)(people, "r", "h")
    hot = simulator("high_temp", engine, codebook)(people, "r", "h")
    entropy = lambda ps: float(np.mean([-(np.asarray(p) * np.log(p)).sum() for p in ps]))   # noqa: E731
    assert entropy(hot["probs"]) > entropy(direct["probs"])


def test_simvbg_aggregates_three_framings(engine, codebook, people):
    sim = simulator("simvbg", engine, codebook)
    row = people.iloc[0].to_dict()
    rows = sim(people.head(1), "r", "h")
    (story,) = sim.kind.backgrounds([row])
    assert story and story == sim.kind.backgrounds([row])[0]   # the model wrote something, seeded
    requests = sim.kind.framed_requests(row, story)
    assert len(requests) == len(SIMVBG_FRAMINGS) * len(QIDS)
    for framing, r in zip(SIMVBG_FRAMINGS, requests[::len(QIDS)]):
        system = r.prefix[0]["content"]
        assert story in system and system.endswith(getattr(load_prompts("en"), "simvbg_" + framing))
    # the aggregate is the mean of the three framed distributions
    framed = np.stack([r.probs for r in engine.score(requests)]).reshape(len(SIMVBG_FRAMINGS), len(QIDS), -1)
    np.testing.assert_allclose(np.stack(rows["probs"]), framed.mean(axis=0), atol=1e-5)


def test_majority_vote():
    assert _majority([2, 2, 1]) == 2
    assert _majority([3, 1, 2]) == 3       # a three-way tie: the first framing's answer
    assert _majority([None, 4, None]) == 4
    assert _majority([None, None, None]) is None
    assert _majority([1, 2, 2]) == 2
