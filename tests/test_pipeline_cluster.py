"""The simulation job submitted with `ray job submit` to a local head node."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from pipeline_helpers import BIN, ROOT, check_rows, env, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A local head node; `--block` keeps its processes under this one process group, which is
    ended afterwards (only what this test started). Its own temp dir keeps its address out of
    /tmp/ray/ray_current_cluster, where a later plain `ray.init()` would try to join it."""
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")   # short: Ray's socket paths must fit
    # Loopback only, so no token authentication (Ray 2.60's `ray start` enables it by default).
    os.environ["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2", "--include-dashboard", "true",
         "--temp-dir", temp_dir],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env(),
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "the head node did not come up"
            time.sleep(2)
        yield address
    finally:
        os.environ.pop("RAY_AUTH_MODE")
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(proc.pid, signal.SIGKILL)   # processes that outlived `ray start --block`
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.timeout(600)
def test_ray_job_submit(head, tmp_path):
    config, run_dir = write_config(tmp_path / "run.yaml"), tmp_path / "run"
    deadline = time.monotonic() + 300   # the agent took over 120 s on a machine loaded by two Ray clusters
    while True:
        p = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", head, "--working-dir", ".",
             "--runtime-env-json", '{"excludes": [".venv*", "/runs", ".git"]}', "--",
             "python", "jobs/simulate.py", "--config", str(config), "-o", str(run_dir)],
            cwd=ROOT, env=env(), capture_output=True, text=True, timeout=500)
        # The head answers `ray job list` before its job agent has registered (seen on a busy
        # machine); such a submission is refused before any job starts, so it is safe to retry.
        if "No available agent to submit job" not in p.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert p.returncode == 0 and "succeeded" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    assert "respondents done: 9/9" in p.stdout
    check_rows(run_dir, respondents=9, questions=5)
