"""A run directory: the resolved config, result shards, and (later) scores.

    RUN_DIR/config.yaml      resolved configuration (its hash stamps every result row)
    RUN_DIR/results/*.parquet result rows, one atomic shard per unit of work
    RUN_DIR/postprocess.yaml  steps applied to the answer distributions when scored (outside
                             the hash: they change scores, not result rows)
    RUN_DIR/scores.{csv,parquet,md}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from ..atomic import write_text_atomic

CONFIG_FILE = "config.yaml"
POSTPROCESS_FILE = "postprocess.yaml"
RESULTS_DIR = "results"
# Where the directories that hold runs keep them, and what marks a search directory.
EXPERIMENT_RUNS = "runs"          # an experiment's runs, DIR/runs/<method>
FIT_RUN = "run"                   # a fit's own run, DIR/run
SEARCH_CONFIG = "tune_config.yaml"  # a Tune search's config and digest
SEARCH_TRIALS = "trials.csv"      # its trials, one row each


class RunDirError(ValueError):
    """A run directory that is missing, foreign, or holds another configuration."""


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a resolved configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def init_run_dir(run_dir: str | Path, config: dict[str, Any]) -> str:
    """Create (or reopen) a run directory for ``config``; returns its hash. Reopening a
    directory made for a different configuration is an error, so results never mix."""
    run_dir = Path(run_dir)
    h = config_hash(config)
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.exists():
        existing = load_run_config(run_dir)
        if config_hash(existing) != h:
            raise RunDirError(f"{run_dir} holds a run of another configuration "
                              f"({config_hash(existing)} != {h}); choose another directory")
        return h
    (run_dir / RESULTS_DIR).mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg_path, yaml.safe_dump(config, sort_keys=True))
    return h


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    cfg_path = Path(run_dir) / CONFIG_FILE
    if not cfg_path.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return yaml.safe_load(cfg_path.read_text())


def results_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / RESULTS_DIR


def write_postprocess(run_dir: str | Path, steps: list[Any]) -> None:
    write_text_atomic(Path(run_dir) / POSTPROCESS_FILE, yaml.safe_dump(steps, sort_keys=True))


def load_postprocess(run_dir: str | Path) -> list[Any]:
    """The run config's post-processing steps (none if it gave none)."""
    path = Path(run_dir) / POSTPROCESS_FILE
    return (yaml.safe_load(path.read_text()) or []) if path.is_file() else []
