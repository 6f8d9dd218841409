"""A model actor killed mid-run: Ray restarts it, retries its batch, and the run ends with no
lost and no duplicated rows."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
from ray.util.state import list_actors

from pipeline_helpers import check_rows, write_config
from raysim.pipeline.config import load_config
from raysim.pipeline.simulate import run

ACTOR_CLASS = "MapWorker(MapBatches(ModelActor))"


@pytest.fixture(scope="module")
def local_ray():
    # A fresh instance, never a cluster left running; the dashboard serves the state API.
    ray.init(address="local", num_cpus=2, include_dashboard=True)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def kill_one_actor_once_working(address: str, results: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL one model actor after the first shard is written (the run is then mid-way)."""
    while not stop.is_set():
        if any(results.glob("*.parquet")):
            alive = list_actors(address=address, filters=[("class_name", "=", ACTOR_CLASS), ("state", "=", "ALIVE")],
                                detail=True)
            if alive:
                os.kill(alive[0].pid, signal.SIGKILL)
                killed.append(len(list(results.glob("*.parquet"))))
                return
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_killed_model_actor_loses_and_duplicates_nothing(local_ray, tmp_path):
    # PE with the embedded model: batches take seconds, so the kill lands mid-run
    config = load_config(write_config(tmp_path / "pe.yaml", method="pe", questions=3,
                                      sampling={"per_country": 3, "countries": ["DEU", "JPN", "NGA", "USA"]},
                                      actors={"number": 2, "num_cpus": 0.5, "batch_size": 1}))
    run_dir = tmp_path / "run"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_one_actor_once_working, args=(local_ray, run_dir / "results", killed, stop))
    killer.start()
    try:
        done = run(config, run_dir)
    finally:
        stop.set()
        killer.join()
    assert killed and killed[0] < 12, "no actor was killed mid-run"
    assert done.ok and done.rows == 12 * 3 and done.duplicates == 0
    check_rows(run_dir, respondents=12, questions=3)
    rows = pd.read_parquet(run_dir / "results")
    assert rows["probs"].map(lambda p: abs(sum(p) - 1) < 1e-3).all()
