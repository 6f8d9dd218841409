"""The cluster files in cluster/ are safe by default (issue 17, "Hardening"); no cluster is started.

Each guarantee is one test on the real files; the checks are cluster/validate.py's (also run by
`python cluster/validate.py`). Every one of them failed on the files before the hardening
(dashboard on 0.0.0.0, no authentication, /runs mode 1777, unpinned pip installs, a RayJob fetching
its code unchecked), and test_checks_catch_a_regression keeps proving that each check still catches
such a fault by planting it in a copy of today's files.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib

from packaging.requirements import Requirement
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"


def _load_validate():
    spec = importlib.util.spec_from_file_location("cluster_validate", CLUSTER / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = _load_validate()


def _yaml(rel: str):
    return yaml.safe_load((CLUSTER / rel).read_text())


# --------------------------------------------------------------------------- the files parse

@pytest.mark.parametrize("rel", sorted(str(p.relative_to(CLUSTER)) for p in CLUSTER.rglob("*.yaml")))
def test_yaml_parses(rel):
    docs = [d for d in yaml.safe_load_all((CLUSTER / rel).read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs), rel


# --------------------------------------------------------------------------- one test per guarantee

def test_no_dashboard_on_all_interfaces():
    assert validate.dashboard_host_problems() == []
    head = " ".join(_yaml("ray-cluster.yaml")["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert _yaml("kuberay/raycluster.yaml")["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    job_head = _yaml("kuberay/rayjob.yaml")["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert job_head["rayStartParams"]["dashboard-host"] == "$(MY_POD_IP)"
    env = {e["name"]: e for e in job_head["template"]["spec"]["containers"][0]["env"]}
    assert env["MY_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_token_auth_on_every_head_and_worker():
    assert validate.token_auth_problems() == []
    launcher = _yaml("ray-cluster.yaml")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in launcher[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    for rel, spec in (("kuberay/raycluster.yaml", _yaml("kuberay/raycluster.yaml")["spec"]),
                      ("kuberay/rayjob.yaml", _yaml("kuberay/rayjob.yaml")["spec"]["rayClusterSpec"])):
        assert spec["authOptions"] == {"mode": "token", "secretName": "raysim-ray-auth"}, rel


def test_network_policy_selects_cluster_pods_and_names_ray_ports():
    assert validate.network_policy_problems() == []
    policies = {d["metadata"]["name"]: d for d in yaml.safe_load_all((CLUSTER / "kuberay/networkpolicy.yaml").read_text())}
    own = policies["raysim-ray"]["spec"]
    assert own["podSelector"]["matchLabels"] == {"ray.io/cluster": _yaml("kuberay/raycluster.yaml")["metadata"]["name"]}
    ports = {(p["port"], p.get("endPort")) for p in own["ingress"][0]["ports"]}
    assert {(6379, None), (8265, None), (10001, None), (10002, 19999)} <= ports


def test_storage_group_writable_not_world_writable():
    assert validate.storage_problems() == []
    init = " ; ".join(_yaml("ray-cluster.yaml")["initialization_commands"])
    assert "chmod 2775 /runs" in init and "1777" not in init


def test_requirements_pin_every_dependency_inside_pyprojects_range():
    assert validate.requirements_problems() == []
    # The same, spelled out: pyproject's names, pinned with ==, each pin allowed by pyproject.
    # (Not the installed versions: a fresh install may resolve newer ones within the ranges.)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower(): d for d in deps}
    declared.pop("ray")
    pins = dict(ln.split("==") for ln in validate._requirement_lines(ROOT))
    assert set(pins) == set(declared)
    for name, pin in pins.items():
        assert Requirement(declared[name]).specifier.contains(pin, prereleases=True), name


def test_every_pip_install_uses_the_pinned_list():
    assert validate.pip_install_problems() == []
    assert _yaml("runtime-env.yaml")["pip"]["packages"] == "cluster/requirements.txt"
    assert "runtimeEnvYAML" not in _yaml("kuberay/rayjob.yaml")["spec"]


def test_runtime_env_installs_exactly_the_pinned_list(monkeypatch):
    # What `ray job submit --runtime-env cluster/runtime-env.yaml` sends, run from the repository root.
    from ray.runtime_env import RuntimeEnv

    monkeypatch.chdir(ROOT)
    built = RuntimeEnv(**_yaml("runtime-env.yaml"))
    sent = [p.split(" #")[0].strip() for p in built["pip"]["packages"] if p.strip() and not p.lstrip().startswith("#")]
    assert sent == validate._requirement_lines(ROOT)


def test_rayjob_code_archive_checked_by_sha256():
    assert validate.code_archive_problems() == []


# --------------------------------------------------------------------------- the submitter, run

class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"success")

    def log_message(self, *args):
        pass


@pytest.fixture
def dashboard():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _code_zip(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "raysim.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("raysim/cluster/runtime-env.yaml", (CLUSTER / "runtime-env.yaml").read_text())
        z.writestr("raysim/cluster/requirements.txt", (CLUSTER / "requirements.txt").read_text())
        z.writestr("raysim/marker.txt", "checked copy\n")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _run_submitter(tmp_path: Path, dashboard: str, url: str, sha: str, submitted: bool = False):
    """Run the RayJob's submitter script as its pod would, with a `ray` that records its calls."""
    container, script = validate._submitter(CLUSTER)
    assert container["command"] == ["bash", "-c"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "ray-calls"
    (bin_dir / "ray").write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$PWD|$*" >> {calls}\n'
        f'if [ "$1 $2" = "job status" ]; then exit {0 if submitted else 1}; fi\n'
        "exit 0\n")
    (bin_dir / "ray").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path), "RAYSIM_CODE_URL": url, "RAYSIM_CODE_SHA256": sha,
           "RAY_DASHBOARD_ADDRESS": dashboard, "RAY_JOB_SUBMISSION_ID": "rayjob-test-1",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t"}
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return proc, [ln.split("|", 1) for ln in lines]


needs_coreutils = pytest.mark.skipif(shutil.which("sha256sum") is None or shutil.which("bash") is None,
                                     reason="the submitter script needs bash and sha256sum (coreutils)")


@needs_coreutils
@pytest.mark.parametrize("case", ["placeholder", "wrong hash"])
def test_submitter_refuses_unchecked_code(tmp_path, dashboard, case):
    code, sha = _code_zip(tmp_path)
    manifest_sha = next(e["value"] for e in validate._submitter(CLUSTER)[0]["env"] if e["name"] == "RAYSIM_CODE_SHA256")
    bad = manifest_sha if case == "placeholder" else hashlib.sha256(b"something else").hexdigest()
    assert bad != sha
    proc, calls = _run_submitter(tmp_path, dashboard, code.as_uri(), bad)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert calls == []   # no `ray` command at all: nothing submitted, nothing followed


@needs_coreutils
def test_submitter_submits_the_checked_copy(tmp_path, dashboard):
    code, sha = _code_zip(tmp_path)
    proc, calls = _run_submitter(tmp_path, dashboard, code.as_uri(), sha)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verbs = [args.split()[:2] for _, args in calls]
    assert verbs == [["job", "status"], ["job", "submit"], ["job", "logs"]]
    cwd, submit = calls[1]
    assert (Path(cwd) / "marker.txt").read_text() == "checked copy\n"   # the unpacked, checked archive
    assert "--working-dir . --runtime-env cluster/runtime-env.yaml" in submit
    assert "--submission-id rayjob-test-1" in submit
    assert f"http://{dashboard}" in submit


@needs_coreutils
def test_retried_submitter_only_follows_the_job(tmp_path, dashboard):
    code, sha = _code_zip(tmp_path)
    proc, calls = _run_submitter(tmp_path, dashboard, code.as_uri(), sha, submitted=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [args.split()[:2] for _, args in calls] == [["job", "status"], ["job", "logs"]]


# --------------------------------------------------------------------------- the checks have teeth

REGRESSIONS = [
    # (file, text in today's file, planted fault, check that must catch it)
    ("ray-cluster.yaml", "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0", "dashboard_host_problems"),
    ("kuberay/raycluster.yaml", 'dashboard-host: "127.0.0.1"', 'dashboard-host: "0.0.0.0"', "dashboard_host_problems"),
    ("kuberay/rayjob.yaml", 'dashboard-host: "$(MY_POD_IP)"', "{}", "dashboard_host_problems"),
    ("ray-cluster.yaml", "    - --env RAY_AUTH_MODE=token\n", "", "token_auth_problems"),
    ("ray-cluster.yaml", "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$HOME/.ray/auth_token;\n    ray start --address",
     "ray start --address", "token_auth_problems"),
    ("kuberay/raycluster.yaml", "    mode: token\n", "    mode: disabled\n", "token_auth_problems"),
    ("kuberay/rayjob.yaml", "      mode: token\n", "", "token_auth_problems"),
    ("kuberay/networkpolicy.yaml", "      ray.io/cluster: raysim\n  policyTypes", "      ray.io/cluster: other\n  policyTypes",
     "network_policy_problems"),
    ("kuberay/networkpolicy.yaml", "        - {protocol: TCP, port: 10002, endPort: 19999}\n    - from:\n        - namespaceSelector:\n"
     "            matchLabels:\n              kubernetes.io/metadata.name: kuberay-system\n      ports:\n"
     "        - {protocol: TCP, port: 8265}\n---",
     "        - {protocol: TCP, port: 10002, endPort: 19999}\n    - from:\n        - namespaceSelector: {}\n---",
     "network_policy_problems"),
    ("kuberay/raycluster.yaml", '        node-manager-port: "8077"\n', "", "network_policy_problems"),
    ("ray-cluster.yaml", "sudo chmod 2775 /runs", "sudo chmod 1777 /runs", "storage_problems"),
    ("kuberay/rayjob.yaml", "              fsGroup: 2000\n", "", "storage_problems"),
    ("kuberay/raycluster.yaml", '            args: ["umask 0002"]\n', "", "storage_problems"),
    ("requirements.txt", "pandas==3.1.1", "pandas>=2.1", "requirements_problems"),
    ("requirements.txt", "pandas==3.1.1", "pandas==1.5.3", "requirements_problems"),   # outside pandas>=2.1
    ("requirements.txt", "tqdm==4.70.1\n", "", "requirements_problems"),
    ("ray-cluster.yaml", "pip install -q -r ~/raysim/cluster/requirements.txt", "pip install -q torch", "pip_install_problems"),
    ("ray-cluster.yaml", "pip install -q --no-deps -e ~/raysim", "pip install -q -e ~/raysim", "pip_install_problems"),
    ("runtime-env.yaml", "  packages: cluster/requirements.txt", "  packages: [torch, transformers]", "pip_install_problems"),
    ("kuberay/rayjob.yaml", '| sha256sum -c -', "| cat", "code_archive_problems"),
    ("kuberay/rayjob.yaml", "--working-dir . --runtime-env", "--working-dir https://example.com/x.zip --runtime-env",
     "code_archive_problems"),
]


@pytest.mark.parametrize("rel, old, new, check", REGRESSIONS, ids=[f"{r[3]}:{r[0]}:{i}" for i, r in enumerate(REGRESSIONS)])
def test_checks_catch_a_regression(tmp_path, rel, old, new, check):
    copy = tmp_path / "cluster"
    shutil.copytree(CLUSTER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    fn = getattr(validate, check)
    assert fn(copy) == [], "the copy of today's files is clean"
    text = (copy / rel).read_text()
    assert old in text, f"{rel} no longer contains {old!r}: update this regression"
    if rel == "kuberay/rayjob.yaml" and new == "{}":   # drop the key: KubeRay then binds 0.0.0.0
        text = text.replace(f"        {old}\n", "")
    else:
        text = text.replace(old, new, 1)
    (copy / rel).write_text(text)
    assert fn(copy), f"{check} misses: {rel}: {old!r} -> {new!r}"
