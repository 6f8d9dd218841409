"""Demographic-vector construction: the arithmetic, runs on a tiny model, and the Ray build job."""

import numpy as np
import pytest
import torch

from raysim.engine.hf import HFEngine
from raysim.engine.loading import ModelSpec, load_model
from raysim.identity.build import BuildParams, UnitResult, assemble, demographic_vectors, run_units, units
from raysim.identity.dataset import AttributeSet, DemographicDataset
from raysim.identity.library import VectorLibrary
from tolerances import assert_close_to_scale

TINY = ModelSpec(random_init="tiny-llama")
QUESTIONS = ("What do you do on a Sunday?", "How do you pay for a large purchase?", "Who cooks at home?")
PARAMS = BuildParams(max_new_tokens=6)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    loaded = load_model(TINY)
    return loaded, HFEngine(loaded)


def dataset(q260: dict[int, tuple[str, ...]], q285: dict[int, tuple[str, ...]] | None = None) -> DemographicDataset:
    attrs = {"Q260": AttributeSet("Q260", QUESTIONS, q260)}
    if q285:
        attrs["Q285"] = AttributeSet("Q285", QUESTIONS, q285)
    return DemographicDataset(attrs, version="test")


def build(tiny, ds, results: list[UnitResult] | None = None) -> VectorLibrary:
    loaded, engine = tiny
    results = run_units(engine, units(ds), PARAMS, loaded.n_layers) if results is None else results
    return assemble(ds, results, model=loaded.name, fingerprint=loaded.fingerprint, n_layers=loaded.n_layers,
                    hidden_size=loaded.hidden_size, dtype="float32", params=PARAMS)


def test_vectors_are_value_means_minus_the_pooled_mean():
    rng = np.random.default_rng(0)
    sums = {1: rng.normal(size=(3, 4)), 2: rng.normal(size=(3, 4)), 3: rng.normal(size=(3, 4))}
    counts = {1: 2, 2: 5, 3: 3}
    results = [UnitResult(f"Q1-{v}-0", "Q1", v, sums[v], counts[v], []) for v in sums]
    vectors, got_counts = demographic_vectors(results)
    pooled = sum(sums.values()) / 10
    for v in sums:
        np.testing.assert_allclose(vectors[("Q1", v)], sums[v] / counts[v] - pooled, rtol=1e-6)
    assert got_counts == {"Q1": counts}


def test_two_values_with_equal_counts_are_exact_negatives(tiny):
    lib = build(tiny, dataset({1: ("You are a man.", "Speak as a man."), 2: ("You are a woman.", "Speak as a woman.")}))
    v1, v2 = lib.vector("Q260", 1), lib.vector("Q260", 2)
    assert np.abs(v1[1:]).max() > 1e-3                    # a real difference…
    np.testing.assert_allclose(v1, -v2, atol=1e-6)        # …split symmetrically
    assert lib.manifest.parameters["responses"]["Q260"] == {"1": 6, "2": 6}


def test_a_value_with_another_values_instructions_gets_its_vector(tiny):
    same = ("You are a person who saves money.", "Speak as a careful saver.")
    ds = dataset({1: same, 2: same}, q285={1: same, 2: ("You earn most of the money at home.", "Speak as the main earner.")})
    results = run_units(tiny[1], units(ds), PARAMS, tiny[0].n_layers)
    lib = build(tiny, ds, results)
    # Identical instructions → identical responses → no difference from the pooled mean. Identical
    # rows of one batch may still differ by kernel rounding (they do with 2 threads): the bound
    # follows each layer's magnitude of the response means the vectors are differences of.
    scale = np.abs(np.stack([r.sum / r.count for r in results])).max(axis=(0, 2))[:, None]
    for value in (1, 2):
        vector = lib.vector("Q260", value)
        assert_close_to_scale(vector, np.zeros_like(vector), scale=scale, err_msg=f"Q260={value}")
    assert np.abs(lib.vector("Q285", 1)[1:]).max() > 1e-3


def test_the_library_is_refused_for_another_model(tiny, tmp_path):
    lib = build(tiny, dataset({1: ("You are a man.",), 2: ("You are a woman.",)}))
    lib.save(tmp_path / "lib")
    other = load_model(ModelSpec(random_init="tiny-llama", n_layers=3))
    with pytest.raises(ValueError, match="4 layers.*3 layers"):
        VectorLibrary.load(tmp_path / "lib").check_model(other.name, other.fingerprint, other.n_layers,
                                                         other.hidden_size)


def test_build_is_deterministic(tiny):
    ds = dataset({1: ("You are a man.",), 2: ("You are a woman.",)})
    np.testing.assert_array_equal(build(tiny, ds).vector("Q260", 1), build(tiny, ds).vector("Q260", 1))
