"""The simulation job and a Tune search with ``engine: vllm``: the model actors hold vLLM
engines, and their answers equal the HF engine's (within the golden tests' tolerance)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import ray
import yaml

from raysim.runs.results import read_results
from raysim.tune.data import prepare
from raysim.tune.search import TRIALS, run_search
from raysim.tune.config import parse_tune

from pipeline_helpers import ROOT, env
from tolerances import assert_distributions_close

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VLLM = {"name": "vllm", "max_model_len": 1024}


def _simulate(tmp_path, name: str, **overrides) -> pd.DataFrame:
    """The shipped carData vLLM config on 8 respondents (``engine`` overridden or dropped)."""
    config = yaml.safe_load((ROOT / "configs" / "experiments" / "cardata_vllm.yaml").read_text())
    config.update({"sampling": {"n": 8, "seed": 0}, "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 4}})
    config.update(overrides)
    config = {k: v for k, v in config.items() if v is not None}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    p = subprocess.run([sys.executable, "jobs/simulate.py", "--config", str(path), "-o", str(tmp_path / name)],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "8 to do" in p.stdout
    return read_results(tmp_path / name / "results").sort_values(["respondent_id", "qid"]).reset_index(drop=True)


def test_the_simulation_job_runs_on_vllm_and_agrees_with_hf(tmp_path):
    hf = _simulate(tmp_path, "hf", engine=None)
    vllm = _simulate(tmp_path, "vllm")
    assert yaml.safe_load((tmp_path / "vllm" / "config.yaml").read_text())["engine"] == "vllm"
    assert "engine" not in yaml.safe_load((tmp_path / "hf" / "config.yaml").read_text())
    assert list(vllm["respondent_id"]) == list(hf["respondent_id"])
    got, want = np.stack(vllm["probs"]), np.stack(hf["probs"])
    assert_distributions_close(got, want)   # option log-probabilities within LOGPROB_ATOL nats
    assert np.abs(want - want.mean(axis=0)).max() > 1e-3    # respondents differ: injection acted


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_tune_search_runs_on_vllm_actors(ray_local, tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "tune" / "cardata_small.yaml").read_text())
    raw.update({"split": {"validation": 4, "heldout": 4, "seed": 0}, "engine": VLLM,
                "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 4},
                "search": {"num_samples": 3, "rungs": 1, "reduction_factor": 2, "seed": 0, "trial_cpus": 0.25}})
    out = tmp_path / "tune"
    outcome = run_search(prepare(parse_tune(raw), out))
    trials = pd.read_csv(out / TRIALS)
    assert len(trials) == 3 and (trials["status"] == "ok").all() and trials["objective"].notna().all()
    assert len(outcome.actors) == 1 and outcome.actors[0]["load_seconds"] > 0
    assert {t for t in outcome.actors[0]["served"] if "-heldout-" not in t} == set(trials["trial_id"])
