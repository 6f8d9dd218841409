"""A three-node Ray cluster on this machine (a head and two worker nodes, each worker declaring one
GPU; the models run on CPU), the simulation job sent with `ray job submit`, one `num_gpus: 1`
actor per worker node. One worker node is killed mid-run, and no node replaces it: its actor's
batches are retried on the other node's actor (Ray Data restarts a dead actor and retries its
tasks; a retried batch rewrites its shard under the same name), and the job still finishes with
every row exactly once."""

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
    """The node's whole process group at once, as a machine that is lost."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
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
    temp_dirs = [temp_dir]

    def worker() -> subprocess.Popen:
        # Its own temp dir, as its own machine would have: nodes sharing one would share the
        # unpacked working directory, which a node's runtime-env agent may remove under the others.
        temp_dirs.append(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        return _start(["--address", gcs, "--num-cpus", "1", "--num-gpus", "1"], temp_dirs[-1])

    procs = [head]

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 240
        while _nodes(address) < n:
            assert time.monotonic() < deadline, f"{n} nodes did not come up"
            time.sleep(2)

    try:
        wait_for(1)   # workers join a head that answers, one at a time (two raylets starting at once collide)
        workers = []
        for n in (2, 3):
            workers.append(worker())
            procs.append(workers[-1])
            wait_for(n)
        yield address, workers
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        for p in procs:
            _kill(p)
        for d in temp_dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.timeout(900)
def test_a_job_survives_the_loss_of_a_worker_node(cluster, tmp_path):
    address, workers = cluster
    config = write_config(tmp_path / "run.yaml", method="pe", questions=4,
                          population={"synthetic": {"n": 3000, "seed": 1}},
                          model={"name_or_path": "embedded", "random_init": "tiny-llama"},
                          sampling={"per_country": 10, "countries": ["DEU", "JPN", "USA"], "seed": 0},
                          actors={"number": 2, "num_cpus": 0, "num_gpus": 1, "batch_size": 2})
    run_dir = tmp_path / "run"
    job = subprocess.Popen(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
         "--runtime-env-json", '{"excludes": [".venv*", "/runs", ".git"]}', "--",
         "python", "jobs/simulate.py", "--config", str(config), "-o", str(run_dir)],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, killed_at = [], None
    for line in job.stdout:
        seen.append(line)
        if killed_at is None and line.startswith("respondents done: "):
            done = int(line.split()[2].split("/")[0])
            if done < 30:
                _kill(workers[1])          # a worker node, its actor with it, mid-run
                killed_at = done
    job.wait(timeout=600)
    out = "".join(seen)
    assert killed_at is not None, out[-3000:]
    assert job.returncode == 0 and "succeeded" in out, out[-3000:]
    check_rows(run_dir, respondents=30, questions=4)   # every row exactly once
