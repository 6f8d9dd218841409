"""Shared pieces of the Ray pipeline tests: tiny run configs and result checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from raysim.runs.results import RESULT_SCHEMA, read_results

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_config(path: Path, **overrides) -> Path:
    """A uniform-method run on a tiny synthetic population (fast: no model)."""
    config = {
        "population": {"synthetic": {"n": 300, "seed": 1}},
        "sampling": {"per_country": 3, "countries": ["DEU", "JPN", "USA"], "seed": 0},
        "questions": 5,
        "method": "uniform",
        "actors": {"number": 2, "num_cpus": 0.5, "batch_size": 2},
        **overrides,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def env() -> dict[str, str]:
    """The subprocess environment: this venv's python and ray first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}


def raysim_ok(*args: str) -> str:
    """``raysim ARGS`` in a subprocess that must succeed; its stdout."""
    done = subprocess.run([sys.executable, "-m", "raysim.cli", *args], env=env(), capture_output=True, text=True,
                          timeout=800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def check_rows(run_dir: Path, respondents: int, questions: int) -> None:
    """Exactly one row per respondent × question, with the contract's columns."""
    shards = sorted((run_dir / "results").glob("*.parquet"))
    assert shards and all(pq.read_schema(s).names == RESULT_SCHEMA.names for s in shards)
    rows = read_results(run_dir / "results")
    assert len(rows) == respondents * questions
    assert not rows.duplicated(["method", "respondent_id", "qid"]).any()
    assert rows.groupby("respondent_id")["qid"].nunique().eq(questions).all()
    assert rows["respondent_id"].nunique() == respondents
    assert not list((run_dir / "results").glob(".*"))   # no partial writes left
