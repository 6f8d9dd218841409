"""PSII attributes of any survey: declared by its codebook (``attributes:``) or taken from the
model preset, their vector dataset written by the dataset job, their plans built from either."""

from __future__ import annotations

import json

import pytest

from survey_helpers import CODEBOOK
from test_identity_dataset import ScriptedEngine, _valid_items
from test_identity_library import make_library
from raysim.engine.plan import PlanError
from raysim.identity.dataset import load_dataset, save_dataset
from raysim.identity.dataset_gen import default_attributes, generate_dataset
from raysim.identity.injection import PsiiPreset, psii_plan
from raysim.methods.spec import get_method
from raysim.survey.codebook import CodebookError, load_codebook

PRESET = PsiiPreset.for_model("smollm2-135m").with_(layers={"low": 1, "mid": 2, "high": 3})  # a 4-layer test library
DECLARED = CODEBOOK + "attributes:\n  high: [sex]\n  low: [region]\n"


@pytest.fixture
def declared(tmp_path):
    path = tmp_path / "regional.yaml"
    path.write_text(DECLARED)
    return load_codebook(str(path))


def test_codebook_declares_attributes_and_their_groups(declared, tmp_path):
    assert declared.attributes == {"high": ("sex",), "low": ("region",)}
    assert declared.attribute_candidates == ["region", "sex"]   # age is numeric: no vectors per value
    for bad, needle in (("  high: [age]\n", "'age' is not a demographic item with options"),
                        ("  high: [trust]\n", "'trust' is not a demographic item"),
                        ("  high: [sex]\n  low: [sex]\n", "'sex' is in group 'high' too")):
        path = tmp_path / "bad.yaml"
        path.write_text(CODEBOOK + "attributes:\n" + bad)
        with pytest.raises(CodebookError, match=needle):
            load_codebook(str(path))


def test_preset_takes_the_codebooks_attributes(declared):
    preset = PRESET.for_codebook(declared)
    assert preset.attributes == ("region", "sex")
    assert preset.layer_of("sex") == PRESET.layers["high"] and preset.layer_of("region") == PRESET.layers["low"]
    library = make_library({"sex": [1, 2], "region": [1, 2, 3]})
    plan = psii_plan(library, {"sex": 2, "region": 3, "age": 40}, preset, seed=1)
    assert [(t.layer, t.scale) for t in plan.terms] == [(PRESET.layers["low"], 2.0), (PRESET.layers["high"], 2.0)]
    assert (plan.terms[1].vector == library.vector("sex", 2, PRESET.layers["high"])).all()
    # a survey that declares none keeps the preset's (WVS-7) attributes: its respondents have no
    # answers to them, so no terms
    plain = PRESET.for_codebook(load_codebook(str(_plain(declared))))
    assert plain == PRESET and psii_plan(library, {"sex": 2, "region": 3}, plain, seed=1).terms == ()
    assert PRESET.for_codebook(load_codebook("wvs7")) == PRESET


def _plain(declared):
    from pathlib import Path
    path = Path(declared.name).with_name("plain.yaml")
    path.write_text(CODEBOOK)
    return path


def test_a_group_the_model_has_no_layer_for_is_refused(tmp_path):
    path = tmp_path / "cb.yaml"
    path.write_text(CODEBOOK + "attributes:\n  top: [sex]\n")
    with pytest.raises(PlanError, match=r"layer group\(s\) \['top'\]"):
        PRESET.for_codebook(load_codebook(str(path)))


def test_injecting_methods_read_the_attribute_columns(declared):
    assert {"sex", "region"} <= set(get_method("psii").columns(declared))
    assert "region" not in get_method("direct").columns(declared)


def test_dataset_job_writes_vectors_data_for_the_codebooks_attributes(declared, tmp_path):
    assert default_attributes(declared) == ["sex", "region"]
    engine = ScriptedEngine(lambda req, k: json.dumps(_valid_items(req, k)))
    ds = generate_dataset(engine, declared, n_questions=12, n_instructions=3, seed=0)
    assert list(ds.attributes) == ["region", "sex"]
    assert sorted(ds["region"].instructions) == [1, 2, 3] and len(ds["sex"].questions) == 12
    # the option labels of the survey are what the persona instructions are asked for
    asked = " ".join(r.question[-1]["content"] for call in engine.calls for r in call[0])
    assert "East" in asked and "Woman" in asked
    save_dataset(ds, tmp_path / "ds.yaml", codebook=declared, attributes=None)
    assert load_dataset(tmp_path / "ds.yaml", declared, attributes=None) == ds
    with pytest.raises(ValueError, match="not a demographic item with options"):
        load_dataset(tmp_path / "ds.yaml")   # the WVS-7 codebook has no such attributes
    with pytest.raises(ValueError, match="age"):
        generate_dataset(engine, declared, attributes=["age"])
