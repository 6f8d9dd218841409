"""The vector library on disk and the PSII plan built from it (no model needed)."""

import json

import numpy as np
import pandas as pd
import pytest

from raysim.identity.injection import PsiiPreset, psii_plan
from raysim.identity.library import LibraryError, Manifest, VectorLibrary, load_library

LAYERS, HIDDEN = 4, 8


def make_library(attributes=None, languages=("en", "zh"), fingerprint="abc", seed=0) -> VectorLibrary:
    attributes = attributes or {"Q260": [1, 2], "Q285": [1, 2], "Q286": [1, 2, 3, 4]}
    rng = np.random.default_rng(seed)
    vectors = {(a, v): rng.normal(size=(LAYERS + 1, HIDDEN)).astype(np.float32)
               for a, vals in attributes.items() for v in vals}
    langs = {code: rng.normal(size=HIDDEN).astype(np.float32) for code in languages}
    manifest = Manifest(model="tiny", fingerprint=fingerprint, hidden_size=HIDDEN, n_layers=LAYERS,
                        dtype="float32", dataset_hash="d0", attributes=attributes, languages=sorted(langs),
                        parameters={"generation": {"max_new_tokens": 8}})
    return VectorLibrary(manifest, vectors, langs)


def test_round_trip(tmp_path):
    lib = make_library()
    lib.save(tmp_path / "lib")
    back = VectorLibrary.load(tmp_path / "lib")
    assert back.manifest == lib.manifest
    for a, values in lib.attributes.items():
        for v in values:
            np.testing.assert_array_equal(back.vector(a, v), lib.vector(a, v))
    for code in lib.languages:
        np.testing.assert_array_equal(back.language(code), lib.language(code))
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["manifest.json", "vectors.safetensors"]


def test_save_replaces_an_existing_library_whole(tmp_path):
    make_library(seed=0).save(tmp_path / "lib")
    new = make_library(seed=1)
    new.save(tmp_path / "lib")
    np.testing.assert_array_equal(VectorLibrary.load(tmp_path / "lib").vector("Q260", 1), new.vector("Q260", 1))
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]   # no staging or old copies left


def test_norms_table():
    lib = make_library()
    norms = lib.norms()
    assert len(norms) == 8 * (LAYERS + 1)
    row = norms[(norms.attribute == "Q286") & (norms.value == 3) & (norms.layer == 2)]
    assert row["norm"].item() == pytest.approx(np.linalg.norm(lib.vector("Q286", 3)[2]), rel=1e-6)


def test_missing_value_and_attribute_are_clear_errors():
    lib = make_library()
    with pytest.raises(LibraryError, match=r"no vector for Q286=9: the library has values \[1, 2, 3, 4\]"):
        lib.vector("Q286", 9)
    with pytest.raises(LibraryError, match="no attribute 'Q999'"):
        lib.vector("Q999", 1)
    with pytest.raises(LibraryError, match="no language vector 'ru'"):
        lib.language("ru")


def test_a_library_for_another_model_is_refused():
    lib = make_library(fingerprint="abc")
    lib.check_model("tiny", "abc", LAYERS, HIDDEN)
    with pytest.raises(LibraryError, match="fingerprint abc.*other weights"):
        lib.check_model("other", "xyz", LAYERS, HIDDEN)
    with pytest.raises(LibraryError, match="4 layers, hidden 8.*has 30 layers, hidden 576"):
        lib.check_model("smollm2", "abc", 30, 576)


def test_malformed_libraries_are_clear_errors(tmp_path):
    with pytest.raises(LibraryError, match="is not a vector library"):
        VectorLibrary.load(tmp_path)
    make_library().save(tmp_path / "lib")
    manifest = json.loads((tmp_path / "lib" / "manifest.json").read_text())
    manifest["attributes"]["Q260"] = [1, 2, 3]
    (tmp_path / "lib" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LibraryError, match="lists Q260=3 but holds no vector"):
        VectorLibrary.load(tmp_path / "lib")
    (tmp_path / "lib" / "vectors.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LibraryError, match="unreadable"):
        VectorLibrary.load(tmp_path / "lib")


def test_shape_mismatch_is_refused():
    lib = make_library()
    with pytest.raises(LibraryError, match=r"shape \(3,\), expected \(8,\)"):
        VectorLibrary(lib.manifest, {(a, v): lib.vector(a, v) for a, vs in lib.attributes.items() for v in vs},
                      {"en": np.zeros(3, np.float32), "zh": np.zeros(8, np.float32)})


def test_the_embedded_library_ships_with_the_package():
    lib = load_library()
    assert len(lib.attributes) == 13
    assert lib.manifest.n_layers == 30 and lib.manifest.hidden_size == 576
    assert set(lib.languages) == {"en", "zh", "ar", "es", "ru"}


PRESET = PsiiPreset(layers={"low": 1, "mid": 2, "high": 3},
                    attribute_groups={"low": ("Q285",), "mid": (), "high": ("Q260", "Q286")},
                    sigma=0.2, vector_scale=2.0)


def test_psii_plan_puts_each_attribute_at_its_layer():
    lib = make_library()
    plan = psii_plan(lib, {"Q260": 2, "Q285": 1, "Q286": -2, "Q271": pd.NA}, PRESET, seed=7, language="zh")
    assert [(t.layer, t.scale) for t in plan.terms] == [(3, 2.0), (1, 2.0)]   # Q286 missing: no term
    np.testing.assert_array_equal(plan.terms[0].vector, lib.vector("Q260", 2, 3))
    np.testing.assert_array_equal(plan.terms[1].vector, lib.vector("Q285", 1, 1))
    np.testing.assert_array_equal(plan.final_vector, lib.language("zh"))
    assert (plan.sigma, plan.seed) == (0.2, 7)
    assert psii_plan(lib, {"Q260": 2}, PRESET.with_(attribute_layers={"Q260": 4}), 0).terms[0].layer == 4
    assert psii_plan(lib, {"Q260": 1}, PRESET, 0, sigma=0.0).sigma == 0.0


def test_psii_plan_refuses_values_the_library_lacks():
    with pytest.raises(LibraryError, match="no vector for Q286=7"):
        psii_plan(make_library(), {"Q286": 7}, PRESET, seed=0)


def test_presets_of_every_model_load():
    preset = PsiiPreset.for_model("qwen2.5-7b")
    assert (preset.layer_of("Q271"), preset.layer_of("Q263"), preset.layer_of("Q260")) == (14, 18, 22)
    assert preset.sigma == 0.30 and preset.vector_scale == 2.0
