"""Noise calibration on a tiny random Llama and a random vector library: the formula, its
determinism, its limits, refusal of a foreign library, and the Ray job end to end.

The helpers here (tiny model, random library, tiny preset) are shared with
test_identity_collapse.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from transformers import AutoConfig, AutoTokenizer

from pipeline_helpers import ROOT, env
from raysim.engine.hf import HFEngine
from raysim.engine.loading import LoadedModel, ModelSpec, embedded_default_dir, load_model, prepare, random_model
from raysim.engine.plan import PlanError
from raysim.identity.agents import load_agents
from raysim.identity.noise_calibration import ROW_COLUMNS, calibration_rows, combine, sensitivity
from raysim.identity.dataset import ATTRIBUTES
from raysim.identity.injection import PsiiPreset
from raysim.identity.library import LibraryError, Manifest, VectorLibrary
from raysim.survey.codebook import load_codebook
from raysim.survey.population import write_population
from raysim.survey.sampling import questions_evenly

pytestmark = pytest.mark.usefixtures("one_thread")

N_LAYERS, HIDDEN = 4, 64


def tiny_loaded(tokenizer) -> LoadedModel:
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=128,
        num_hidden_layers=N_LAYERS, num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
        attn_implementation="sdpa", bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return prepare(random_model(config), tokenizer, "tiny-llama")


def random_library(loaded: LoadedModel, std: float = 1.0, seed: int = 0, fingerprint: str | None = None,
                   hidden_size: int | None = None) -> VectorLibrary:
    """Random vectors for every code (substantive and extra) of the 13 WVS-7 attributes."""
    codebook = load_codebook("wvs7")
    hidden = hidden_size or loaded.hidden_size
    rng = np.random.default_rng(seed)
    attributes = {a: sorted({*codebook[a].codes, *(c for c, _ in codebook[a].extra_codes)}) for a in ATTRIBUTES}
    vectors = {(a, v): (std * rng.standard_normal((loaded.n_layers + 1, hidden))).astype(np.float32)
               for a, values in attributes.items() for v in values}
    manifest = Manifest(model=loaded.name, fingerprint=fingerprint or loaded.fingerprint, hidden_size=hidden,
                        n_layers=loaded.n_layers, dtype="float32", dataset_hash="random", attributes=attributes)
    return VectorLibrary(manifest, vectors)


def tiny_preset(layer: int = 2, sigma: float = 0.1) -> PsiiPreset:
    """The embedded default's attribute groups, every group injected at ``layer``."""
    return PsiiPreset.for_model("smollm2-135m").with_(layers={"low": layer, "mid": layer, "high": layer}, sigma=sigma)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_default_dir())


@pytest.fixture(scope="module")
def engine(tokenizer):
    return HFEngine(tiny_loaded(tokenizer))


@pytest.fixture(scope="module")
def library(engine):
    return random_library(engine.loaded)


@pytest.fixture(scope="module")
def agents():
    return load_agents("synthetic:300", 6, seed=1)


def _run(engine, library, agents, probe_sigma, seed=0, questions=4):
    people, codebook = agents
    return sensitivity(engine, library, tiny_preset(), people, codebook, questions_evenly(codebook, questions),
                       probe_sigma=probe_sigma, seed=seed)


def test_sigma_in_range_and_reproducible(engine, library, agents):
    first = _run(engine, library, agents, probe_sigma=0.4, seed=3)
    again = _run(engine, library, agents, probe_sigma=0.4, seed=3)
    pd.testing.assert_frame_equal(first.rows, again.rows)
    assert first.sensitivity == again.sensitivity and first.sigma == again.sigma
    assert list(first.rows.columns) == ROW_COLUMNS
    assert (first.n_agents, first.n_questions, len(first.rows)) == (6, 4, 24)
    assert 0.0 <= first.sigma <= 0.4
    assert first.sigma == pytest.approx(max(0.0, 0.4 - first.sensitivity))
    rows = first.rows
    assert np.allclose(rows["shift"], (rows["rank_noisy"] - rows["rank_clean"]).abs() / rows["n_options"])
    assert ((rows["rank_clean"] >= 0) & (rows["rank_clean"] < rows["n_options"])).all()


def test_zero_probe_sigma_gives_zero_sensitivity(engine, library, agents):
    result = _run(engine, library, agents, probe_sigma=0.0)
    assert result.sensitivity == 0.0 and result.sigma == 0.4
    assert (result.rows["rank_clean"] == result.rows["rank_noisy"]).all()


def test_stronger_noise_moves_answers_more(engine, library, agents):
    tiny = _run(engine, library, agents, probe_sigma=1e-4)
    large = _run(engine, library, agents, probe_sigma=20.0)
    assert large.sensitivity > tiny.sensitivity
    assert large.sigma < 0.4


def test_batches_combine_to_the_whole(engine, library, agents):
    people, codebook = agents
    qids = questions_evenly(codebook, 4)
    whole = sensitivity(engine, library, tiny_preset(), people, codebook, qids, probe_sigma=2.0, seed=5)
    # respondents split into batches and the batches in reverse order: seeds are per respondent
    parts = [calibration_rows(engine, library, tiny_preset(), people.iloc[s:s + 4], codebook, qids, 2.0, 5)
             for s in (4, 0)]
    pd.testing.assert_frame_equal(combine(parts, 2.0).rows, whole.rows)


def test_library_of_another_model_is_refused(engine, agents):
    with pytest.raises(LibraryError, match="fingerprint"):
        _run(engine, random_library(engine.loaded, fingerprint="0123456789abcdef"), agents, 0.4)
    with pytest.raises(LibraryError, match="hidden 32"):
        _run(engine, random_library(engine.loaded, hidden_size=32), agents, 0.4)


def test_preset_outside_the_model_is_refused(engine, library, agents):
    people, codebook = agents
    with pytest.raises(PlanError, match="layers 1..4"):
        sensitivity(engine, library, tiny_preset(layer=9), people, codebook, ["Q1"])


@pytest.mark.parametrize("population, n, message", [
    ("synthetic:ten", 2, "synthetic:N"),
    ("synthetic:5", 6, "6 agents asked for"),
    ("/nonexistent/pop", 2, "no such file"),
])
def test_bad_agent_arguments(population, n, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_agents(population, n)


@pytest.mark.timeout(300)
def test_ray_job_end_to_end(tmp_path, engine, agents):
    # The tiny model on disk, a library for it and a preset file: what a user passes the job.
    model_dir = tmp_path / "tiny"
    engine.model.save_pretrained(model_dir)
    engine.tokenizer.save_pretrained(model_dir)
    loaded = load_model(ModelSpec(name_or_path=str(model_dir)))
    assert loaded.fingerprint == engine.loaded.fingerprint
    library = random_library(loaded)
    library.save(tmp_path / "lib")
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"psii": {"layers": {"low": 2, "mid": 2, "high": 2}, "sigma": 0.1,
                                               "attribute_groups": {k: list(v) for k, v in
                                                                    tiny_preset().attribute_groups.items()}}}))
    people, codebook = agents
    population = write_population(people, tmp_path / "agents.parquet", codebook)   # all 6 are sampled
    out = tmp_path / "out"
    args = ["--model", str(model_dir), "--library", str(tmp_path / "lib"), "--preset", str(preset),
            "--population", str(population), "--agents", "6", "--questions", "3", "--probe-sigma", "2.0",
            "--seed", "1", "--actors", "2", "--num-cpus", "0.5", "--batch-size", "2", "-o", str(out)]
    p = subprocess.run([sys.executable, "jobs/calibrate.py", *args], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "agents done: 6/6" in p.stdout

    summary = json.loads((out / "calibration.json").read_text())
    rows = pd.read_csv(out / "calibration.csv")
    assert (summary["n_agents"], summary["n_questions"], summary["probe_sigma"]) == (6, 3, 2.0)
    assert summary["model"] == str(model_dir) and summary["sigma"] == max(0.0, 0.4 - summary["sensitivity"])
    assert "σ = max(0, 0.4 − sensitivity)" in (out / "calibration.md").read_text()
    assert not list(out.glob(".*"))   # no temporary files left
    # the same numbers as the calibration run in-process on the same agents
    direct = sensitivity(HFEngine(loaded), library, tiny_preset(), people, codebook,
                         questions_evenly(codebook, 3), probe_sigma=2.0, seed=1)
    pd.testing.assert_frame_equal(rows, direct.rows, check_dtype=False)
    assert summary["sensitivity"] == pytest.approx(direct.sensitivity, abs=1e-12)
