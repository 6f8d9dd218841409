"""A three-node Ray cluster on this machine (a head and two worker nodes, each worker declaring one
GPU; the models run on CPU), the simulation job sent with `ray job submit`, one `num_gpus: 1`
actor per worker node. One worker node is killed mid-run; a replacement joins, as a cluster's
node pool replaces a lost machine, and the job still finishes with every row exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from pipeline_helpers import BIN, ROOT, check_rows, env, write_config
from test_pipeline_cluster import free_port


def _start(args: list[str], temp_dir: str | None = None) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group (killed as one node)."""
    extra = ["--temp-dir", temp_dir] if temp_dir else []
    return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", *args, *extra],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGKILL,):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _nodes(address: str) -> int:
    """Alive nodes, as `ray list nodes` sees them."""
    p = subprocess.run([str(BIN / "ray"), "list", "nodes", "--address", address, "--filter", "state=ALIVE",
                        "--format", "json"], env=env(), capture_output=True, text=True)
    import json
    try:
        return len(json.loads(p.stdout))
    except ValueError:
        return 0


@pytest.fixture
def cluster():
    os.environ["RAY_AUTH_MODE"] = "disabled"   # loopback only
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    head = _start(["--head", "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                   "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "true"], temp_dir)
    gcs, address = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}"
    worker = lambda: _start(["--address", gcs, "--num-cpus", "1", "--num-gpus", "1"])  # noqa: E731
    workers = [worker(), worker()]
    procs = [head, *workers]
    try:
        deadline = time.monotonic() + 180
        while _nodes(address) < 3:
            assert time.monotonic() < deadline, "the three nodes did not come up"
            time.sleep(2)
        yield address, workers, lambda: procs.append(worker()) or procs[-1]
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        for p in procs:
            _kill(p)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.timeout(900)
def test_a_job_survives_the_loss_of_a_worker_node(cluster, tmp_path):
    address, workers, replace = cluster
    config = write_config(tmp_path / "run.yaml", method="pe", questions=4,
                          model={"name_or_path": "embedded", "random_init": "tiny-llama"},
                          sampling={"per_country": 10, "countries": ["DEU", "JPN", "USA"], "seed": 0},
                          actors={"number": 2, "num_cpus": 0, "num_gpus": 1, "batch_size": 2})
    run_dir = tmp_path / "run"
    job = subprocess.Popen(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
         "--runtime-env-json", '{"excludes": [".venv*", "/runs", ".git"]}', "--",
         "python", "jobs/simulate.py", "--config", str(config), "-o", str(run_dir)],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    killed = False
    for line in job.stdout:
        seen.append(line)
        if not killed and "respondents done:" in line and not line.split("respondents done: ")[1].startswith("30/"):
            _kill(workers[1])          # a worker node, its actor with it, mid-run
            replace()                   # the node pool brings up another
            killed = True
    job.wait(timeout=600)
    out = "".join(seen)
    assert killed, out[-3000:]
    assert job.returncode == 0 and "succeeded" in out, out[-3000:]
    check_rows(run_dir, respondents=30, questions=4)   # every row exactly once
