"""The Ray simulation job run with plain `python` (a local Ray instance per run): configs,
result rows, scores, resumption, and a run directory refusing another config."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from pipeline_helpers import ROOT, check_rows, env, write_config
from raysim.pipeline.actor import shard_name
from raysim.methods.spec import available_methods
from raysim.pipeline.config import ConfigError, load_config, parse_config
from raysim.pipeline.experiment import load_experiment
from raysim.runs.rundir import RunDirError, init_run_dir
from raysim.pipeline.simulate import run

BASE = {"population": {"synthetic": {"n": 10}}, "method": "uniform"}


def job(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"jobs/{script}", *args], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("raw, message", [
    ({"method": "uniform"}, "lacks required key 'population'"),
    ({**BASE, "method": "nope"}, "unknown method 'nope'"),
    ({**BASE, "population": {"synthetic": {"n": 10}, "cardata": True}}, "exactly one of"),
    ({**BASE, "actors": {"gpus": 1}}, "actors: unknown key(s) ['gpus']"),
    ({**BASE, "model": {"dtype": "int3"}}, "model: dtype 'int3'"),
    ({**BASE, "sampling": {"per_country": 0}}, "per_country must be positive"),
    ({**BASE, "questions": -1}, "questions must be >= 0"),
])
def test_bad_configs_are_clear_errors(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_config(raw)


def test_shipped_configs_parse():
    """Run configs (one method) and experiment configs (``methods``) both live in configs/experiments."""
    kinds = set()
    for path in sorted((ROOT / "configs" / "experiments").glob("*.yaml")):
        if "methods" in yaml.safe_load(path.read_text()):
            assert load_experiment(path).methods, path
            kinds.add("experiment")
        else:
            assert load_config(path).spec.name in available_methods(), path
            kinds.add("run")
    assert kinds == {"run", "experiment"}


def test_shard_name_depends_on_the_respondent_set_only():
    assert shard_name([3, 1, 2]) == shard_name([1, 2, 3]) != shard_name([1, 2, 4])


@pytest.mark.timeout(600)
def test_plain_python_job_resumes_and_scores(tmp_path):
    config, run_dir = write_config(tmp_path / "run.yaml"), tmp_path / "run"
    # interrupted: only 3 of the 9 sampled respondents
    p = job("simulate.py", "--config", str(config), "-o", str(run_dir), "--limit", "3")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "0 already complete, 3 to do" in p.stdout
    first = {s.name: s.stat().st_mtime_ns for s in (run_dir / "results").glob("*.parquet")}
    check_rows(run_dir, respondents=3, questions=5)

    p = job("simulate.py", "--config", str(config), "-o", str(run_dir))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "3 already complete, 6 to do" in p.stdout
    assert "respondents done: 9/9" in p.stdout
    check_rows(run_dir, respondents=9, questions=5)
    # the complete respondents were skipped: their shards were not rewritten
    assert {s: (run_dir / "results" / s).stat().st_mtime_ns for s in first} == first
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["method"] == "uniform" and len(resolved["questions"]) == 5
    assert (run_dir / "population").is_dir()   # the generated population, written once

    p = job("score.py", str(run_dir), "--boot", "20")
    assert p.returncode == 0, p.stderr[-3000:]
    scores = pd.read_csv(run_dir / "scores.csv")
    assert {"country", "category", "metric", "value"} <= set(scores.columns)
    assert {"DEU", "JPN", "USA"} <= set(scores["country"])


def test_rerun_with_another_config_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    first = load_config(write_config(tmp_path / "a.yaml"))
    init_run_dir(run_dir, first.resolved(run_dir))   # what a first run does before any Ray work
    other = load_config(write_config(tmp_path / "b.yaml", questions=7))
    with pytest.raises(RunDirError, match="another configuration"):
        run(other, run_dir)
