"""Offline checks of the cluster configs in this directory (no cloud or Kubernetes access).

    python cluster/validate.py                        # all checks
    python cluster/validate.py --print-requirements   # the pins for cluster/requirements.txt

Shape:
- every YAML parses;
- ray-cluster.yaml validates against Ray's own launcher schema (ray/autoscaler/ray-schema.json)
  and through Ray's prepare_config + validate_config (defaults merged, node types checked);
- runtime-env.yaml builds as ray.runtime_env.RuntimeEnv (from the repository root, where its
  requirements path points) and installs exactly the lines of cluster/requirements.txt;
- the KubeRay manifests use only fields of the ray.io/v1 types (RayCluster, RayJob; field lists
  from kuberay's ray-operator/apis/ray/v1) and have their required fields; their pod templates are
  checked key by key against the Kubernetes models when the `kubernetes` package is importable
  (it is not a raysim dependency: `pip install kubernetes` to include that check);
- the RayJob's submitter submits one `bash -c` command (simulate && score) on the Ray cluster.

Safety (the functions below return a list of problems, empty when the files are safe; the same
functions back tests/test_cluster_safety.py):
- dashboard_host_problems:  no dashboard bound to all interfaces (0.0.0.0 / ::) anywhere;
- token_auth_problems:      Ray token authentication on in every head and worker definition;
- network_policy_problems:  a NetworkPolicy per KubeRay cluster, ingress only from the cluster's
                            own pods (+ operator / submitter to the dashboard) on the pinned ports;
- storage_problems:         nothing world-writable; /runs group-writable (setgid group, umask 002);
- requirements_problems:    cluster/requirements.txt pins (==) every pyproject dependency at the
                            installed version; the images carry the installed Ray version;
- pip_install_problems:     every pip install in cluster/ uses that list or == pins only;
- code_archive_problems:    the RayJob's code archive is checked by sha256 before it is submitted.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
REQUIREMENTS = "cluster/requirements.txt"   # relative to the repository root, as the configs use it

# ray.io/v1 spec fields (kuberay ray-operator/apis/ray/v1/{raycluster,rayjob}_types.go).
RAYCLUSTER_SPEC = {"suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
                   "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec",
                   "rayVersion", "workerGroupSpecs", "authOptions"}
AUTH_OPTIONS = {"mode", "secretName"}   # authOptions (KubeRay >= v1.5.1; secretName: a user Secret)
HEAD_GROUP = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
HEAD_GROUP_REQUIRED = {"template", "rayStartParams"}
WORKER_GROUP = {"suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
                "rayStartParams", "template", "scaleStrategy", "numOfHosts"}
WORKER_GROUP_REQUIRED = {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"}
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
               "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy",
               "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
               "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
               "shutdownAfterJobFinishes", "suspend"}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}

# Ray's listening ports as `ray start` options. Pinned on every node so that a NetworkPolicy (or a
# security group) can name them; left out, Ray picks random ports for most of them.
HEAD_ONLY_PORTS = ("port", "dashboard-port", "ray-client-server-port")
NODE_PORTS = ("object-manager-port", "node-manager-port", "dashboard-agent-grpc-port",
              "dashboard-agent-listen-port", "runtime-env-agent-port", "metrics-export-port")
WORKER_RANGE = ("min-worker-port", "max-worker-port")
ALL_INTERFACES = {"0.0.0.0", "::", "[::]", "*"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
OPERATOR_NAMESPACE_LABEL = "kubernetes.io/metadata.name"
TEXT_SUFFIXES = {".yaml", ".yml", ".md", ".sh", ".txt", ".py", ".cfg", ".toml", ""}

failures: list[str] = []


# --------------------------------------------------------------------------- loading helpers

def _cluster_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                  and "__pycache__" not in p.parts and p.name != "validate.py")


def _yaml(root: Path, name: str):
    path = root / name
    return yaml.safe_load(path.read_text()) if path.exists() else None


def _yaml_all(root: Path, name: str) -> list:
    path = root / name
    return [d for d in yaml.safe_load_all(path.read_text()) if d] if path.exists() else []


def _kuberay_clusters(root: Path) -> list[tuple[str, dict, str | None]]:
    """(where, RayClusterSpec, cluster name or None when KubeRay generates it) of every manifest."""
    out = []
    rc = _yaml(root, "kuberay/raycluster.yaml")
    if isinstance(rc, dict):
        out.append(("kuberay/raycluster.yaml", rc.get("spec") or {}, (rc.get("metadata") or {}).get("name")))
    rj = _yaml(root, "kuberay/rayjob.yaml")
    if isinstance(rj, dict):
        out.append(("kuberay/rayjob.yaml", (rj.get("spec") or {}).get("rayClusterSpec") or {}, None))
    return out


def _groups(spec: dict) -> list[tuple[str, dict]]:
    """(name, group spec) of the head ('head') and every worker group."""
    head = [("head", spec.get("headGroupSpec") or {})]
    return head + [(g.get("groupName", "?"), g) for g in spec.get("workerGroupSpecs") or []]


def _ray_container(group: dict) -> dict:
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return containers[0]   # KubeRay's Ray container is the first one


def _env(container: dict) -> dict[str, dict]:
    return {e.get("name"): e for e in container.get("env") or []}


def _submitter(root: Path) -> tuple[dict, str]:
    """The RayJob's submitter container and its shell script ('' when it has none)."""
    rj = _yaml(root, "kuberay/rayjob.yaml") or {}
    tmpl = (rj.get("spec") or {}).get("submitterPodTemplate") or {}
    containers = (tmpl.get("spec") or {}).get("containers") or [{}]
    c = containers[0]
    script = "\n".join(map(str, (c.get("command") or []) + (c.get("args") or [])))
    return c, script


def _submit_command(script: str) -> str:
    """The submitter script's `ray job submit ...` as one logical line ('' when there is none)."""
    m = re.search(r"ray job submit(?:[^\n]*\\\n)*[^\n]*", script)
    return m.group(0).replace("\\\n", " ") if m else ""


def _launcher_commands(launcher: dict, *keys: str) -> list[str]:
    out = []
    for key in keys:
        out += [str(c) for c in launcher.get(key) or []]
    for node in (launcher.get("available_node_types") or {}).values():
        for key in keys:
            out += [str(c) for c in (node or {}).get(key) or []]
    return out


def _ray_start_options(command: str) -> dict[str, str]:
    """--option=value / --option value pairs of the `ray start` in a shell command line."""
    try:
        words = shlex.split(command, comments=False)
    except ValueError:
        words = command.split()
    opts: dict[str, str] = {}
    if "start" not in words:
        return opts
    rest = words[words.index("start") + 1:]
    for i, w in enumerate(rest):
        if w.startswith("--"):
            key, eq, value = w[2:].partition("=")
            if not eq and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
                value = rest[i + 1]
            opts[key] = value.rstrip(";")
    return opts


def _declared_dependencies(project: Path) -> dict[str, str]:
    """pyproject.toml's [project.dependencies] (name -> requirement), without Ray (the image's)."""
    deps = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    out = {}
    for d in deps:
        name = re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]
        out[_norm(name)] = d
    out.pop("ray", None)
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_lines(project: Path) -> list[str]:
    path = project / REQUIREMENTS
    if not path.exists():
        return []
    lines = [ln.split(" #")[0].strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def installed_pins(project: Path = PROJECT) -> list[str]:
    """name==version of every declared dependency as installed here (local labels like +cpu dropped)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in sorted(_declared_dependencies(project))]


# --------------------------------------------------------------------------- safety checks

_DASHBOARD_ALL = re.compile(
    r"dashboard[-_]host[\"']?(?:\s*[:=]\s*|\s+)[\"']?(0\.0\.0\.0|::|\[::\]|\*)(?![\w.:])", re.I)


def dashboard_host_problems(root: Path = HERE) -> list[str]:
    """No dashboard on all interfaces; every head names its (private) host explicitly."""
    problems = [f"{p.relative_to(root)}: dashboard host {m.group(1)} (all interfaces)"
                for p in _cluster_files(root) for m in _DASHBOARD_ALL.finditer(p.read_text())]
    launcher = _yaml(root, "ray-cluster.yaml")
    if isinstance(launcher, dict):
        heads = [c for c in _launcher_commands(launcher, "head_start_ray_commands") if "ray start" in c]
        if not heads:
            problems.append("ray-cluster.yaml: no `ray start --head` command")
        for c in heads:
            host = _ray_start_options(c).get("dashboard-host")
            if not host or host in ALL_INTERFACES:
                problems.append(f"ray-cluster.yaml: head starts with dashboard host {host!r}, "
                                "not an explicit private address")
    for where, spec, _ in _kuberay_clusters(root):
        head = spec.get("headGroupSpec") or {}
        host = str((head.get("rayStartParams") or {}).get("dashboard-host", ""))
        if not host or host in ALL_INTERFACES:
            # KubeRay fills in 0.0.0.0 when dashboard-host is missing.
            problems.append(f"{where}: head dashboard-host {host!r} (KubeRay's default is 0.0.0.0)")
            continue
        container = _ray_container(head)
        var = re.fullmatch(r"\$\((\w+)\)", host)
        if var:
            src = _env(container).get(var.group(1)) or {}
            field = ((src.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if field != "status.podIP":
                problems.append(f"{where}: dashboard-host {host} is not the pod IP from the downward API")
        if host not in LOOPBACK:
            # KubeRay's default head probes ask localhost:8265, which does not answer here.
            for probe in ("readinessProbe", "livenessProbe"):
                cmd = json.dumps(container.get(probe) or {})
                if not container.get(probe) or "localhost:8265" in cmd or "127.0.0.1:8265" in cmd:
                    problems.append(f"{where}: head {probe} must ask the dashboard on {host}, not localhost")
    return problems


def token_auth_problems(root: Path = HERE) -> list[str]:
    """RAY_AUTH_MODE=token with a token from a file / Secret in every head and worker definition."""
    problems = []
    launcher = _yaml(root, "ray-cluster.yaml")
    if not isinstance(launcher, dict):
        problems.append("ray-cluster.yaml: missing")
    else:
        run_options = " ".join(map(str, (launcher.get("docker") or {}).get("run_options") or []))
        if not re.search(r"--env[ =]RAY_AUTH_MODE=token\b", run_options):
            problems.append("ray-cluster.yaml: docker.run_options lacks --env RAY_AUTH_MODE=token")
        for name, node in (launcher.get("available_node_types") or {}).items():
            for key in ("run_options", "head_run_options", "worker_run_options"):
                opts = " ".join(map(str, ((node or {}).get("docker") or {}).get(key) or []))
                if "RAY_AUTH_MODE" in opts and "RAY_AUTH_MODE=token" not in opts:
                    problems.append(f"ray-cluster.yaml: node type {name} overrides RAY_AUTH_MODE")
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            starts = [c for c in _launcher_commands(launcher, key) if "ray start" in c]
            if not starts:
                problems.append(f"ray-cluster.yaml: {key} has no `ray start`")
            for c in starts:
                if not re.search(r"\bRAY_AUTH_MODE=token\b", c):
                    problems.append(f"ray-cluster.yaml: {key} starts Ray without RAY_AUTH_MODE=token")
                if "RAY_AUTH_TOKEN_PATH=" not in c and "RAY_AUTH_TOKEN=" not in c:
                    problems.append(f"ray-cluster.yaml: {key} does not say where the token is")
        mounts = launcher.get("file_mounts") or {}
        if not any(str(k).endswith(".ray/auth_token") for k in mounts):
            problems.append("ray-cluster.yaml: file_mounts does not copy the auth token to the nodes")
    clusters = _kuberay_clusters(root)
    if not clusters:
        problems.append("kuberay: no RayCluster / RayJob manifests")
    secrets = set()
    for where, spec, _ in clusters:
        auth = spec.get("authOptions") or {}
        if auth.get("mode") != "token":
            problems.append(f"{where}: authOptions.mode is {auth.get('mode')!r}, not token")
        if not auth.get("secretName"):
            problems.append(f"{where}: authOptions.secretName (the token's Secret) is not set")
        secrets.add(auth.get("secretName"))
        for group_name, group in _groups(spec):
            mode = (_env(_ray_container(group)).get("RAY_AUTH_MODE") or {}).get("value")
            if mode not in (None, "token"):
                problems.append(f"{where}: {group_name} sets RAY_AUTH_MODE={mode}")
    if (root / "kuberay/rayjob.yaml").exists():
        container, _ = _submitter(root)
        env = _env(container)
        if (env.get("RAY_AUTH_MODE") or {}).get("value") != "token":
            problems.append("kuberay/rayjob.yaml: the submitter does not set RAY_AUTH_MODE=token")
        ref = ((env.get("RAY_AUTH_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if not ref.get("name") or ref.get("name") not in secrets:
            problems.append("kuberay/rayjob.yaml: the submitter's RAY_AUTH_TOKEN is not the cluster's Secret")
    return problems


def _pinned_ports(spec: dict) -> tuple[dict[str, set[int]], list[str]]:
    """The ports pinned in a RayClusterSpec's rayStartParams, and what is not pinned."""
    ports: dict[str, set[int]] = {}
    missing = []
    ranges = set()
    for group_name, group in _groups(spec):
        params = {k: str(v) for k, v in (group.get("rayStartParams") or {}).items()}
        wanted = (HEAD_ONLY_PORTS if group_name == "head" else ()) + NODE_PORTS
        for key in wanted:
            if not params.get(key, "").isdigit():
                missing.append(f"{group_name}: {key}")
            else:
                ports.setdefault(key, set()).add(int(params[key]))
        lo, hi = params.get(WORKER_RANGE[0], ""), params.get(WORKER_RANGE[1], "")
        if lo.isdigit() and hi.isdigit():
            ranges.add((int(lo), int(hi)))
        else:
            missing.append(f"{group_name}: min-worker-port/max-worker-port")
    if len(ranges) > 1:
        missing.append(f"worker port ranges differ between groups: {sorted(ranges)}")
    ports["workers"] = {r for rng in ranges for r in rng}
    return ports, missing


def _policy_ports(rule: dict) -> set:
    out = set()
    for p in rule.get("ports") or []:
        port = p.get("port")
        if p.get("protocol", "TCP") != "TCP" or not isinstance(port, int):
            out.add(("bad", json.dumps(p)))
        elif p.get("endPort") is not None:
            out.add((port, int(p["endPort"])))
        else:
            out.add(port)
    return out


def _pod_labels(group: dict, cluster_name: str | None) -> dict[str, str]:
    labels = dict(((group.get("template") or {}).get("metadata") or {}).get("labels") or {})
    labels["ray.io/cluster"] = cluster_name or "<generated by KubeRay>"
    return labels


def network_policy_problems(root: Path = HERE) -> list[str]:
    """Each KubeRay cluster's pods are selected by a NetworkPolicy admitting only the cluster's own
    pods on Ray's pinned ports, and the operator namespace / the submitter on the dashboard port."""
    problems = []
    policies = [d for d in _yaml_all(root, "kuberay/networkpolicy.yaml") if d.get("kind") == "NetworkPolicy"]
    if not policies:
        return ["kuberay/networkpolicy.yaml: no NetworkPolicy"]
    for where, spec, name in _kuberay_clusters(root):
        ports, missing = _pinned_ports(spec)
        problems += [f"{where}: port not pinned in rayStartParams ({m})" for m in missing]
        groups = _groups(spec)
        pods = [_pod_labels(g, name) for _, g in groups]

        def selects(policy: dict) -> bool:
            sel = (policy.get("spec") or {}).get("podSelector") or {}
            match = sel.get("matchLabels") or {}
            return bool(match) and not sel.get("matchExpressions") and all(
                match.items() <= pod.items() for pod in pods)

        chosen = [p for p in policies if selects(p)]
        if not chosen:
            problems.append(f"{where}: no NetworkPolicy selects all of this cluster's pods")
            continue
        if name is not None and not any(
                ((p["spec"].get("podSelector") or {}).get("matchLabels") or {}).get("ray.io/cluster") == name
                for p in chosen):
            problems.append(f"{where}: its NetworkPolicy does not select by ray.io/cluster: {name}")
        dashboard = next(iter(ports.get("dashboard-port") or {8265}))
        single = {p for key, vals in ports.items() if key != "workers" for p in vals}
        rng = tuple(sorted(ports.get("workers") or ()))
        expected = single | ({rng} if len(rng) == 2 else set())
        for policy in chosen:
            pname = policy.get("metadata", {}).get("name", "?")
            pspec = policy.get("spec") or {}
            own = (pspec.get("podSelector") or {}).get("matchLabels") or {}
            if "Ingress" not in (pspec.get("policyTypes") or []):
                problems.append(f"networkpolicy {pname}: policyTypes lacks Ingress")
            intra = []
            for i, rule in enumerate(pspec.get("ingress") or []):
                peers = rule.get("from") or []
                rule_ports = _policy_ports(rule)
                if not peers:
                    problems.append(f"networkpolicy {pname}: ingress[{i}] admits every source")
                if not rule_ports:
                    problems.append(f"networkpolicy {pname}: ingress[{i}] admits every port")
                for peer in peers:
                    pod_sel = (peer.get("podSelector") or {}).get("matchLabels")
                    ns_sel = (peer.get("namespaceSelector") or {}).get("matchLabels")
                    if peer.get("ipBlock") or ("namespaceSelector" in peer and not ns_sel):
                        problems.append(f"networkpolicy {pname}: ingress[{i}] admits sources outside the namespace")
                    elif ns_sel is not None:
                        if set(ns_sel) != {OPERATOR_NAMESPACE_LABEL} or rule_ports - {dashboard}:
                            problems.append(f"networkpolicy {pname}: ingress[{i}] admits a namespace beyond "
                                            "the operator's, or on more than the dashboard port")
                    elif pod_sel == own:
                        intra.append(rule_ports)
                    elif pod_sel and set(pod_sel) <= {"job-name", "batch.kubernetes.io/job-name"}:
                        if rule_ports - {dashboard}:
                            problems.append(f"networkpolicy {pname}: the submitter gets more than the dashboard port")
                    else:
                        problems.append(f"networkpolicy {pname}: ingress[{i}] admits pods of other clusters {pod_sel}")
            if not intra:
                problems.append(f"networkpolicy {pname}: no rule for the cluster's own pods")
            for rule_ports in intra:
                if rule_ports != expected:
                    problems.append(f"networkpolicy {pname}: ports {sorted(map(str, rule_ports))} are not "
                                    f"the pinned Ray ports {sorted(map(str, expected))}")
    return problems


_WORLD_WRITABLE_CHMOD = re.compile(
    r"\b(?:chmod|mkdir\s+(?:-\w+\s+)*-m)\s+(?:-\w+\s+)*(?:[0-7]?[0-7][0-7][2367]\b|[ugoa]*[oa][ugoa]*[+=][rwxXst]*w)")


def storage_problems(root: Path = HERE) -> list[str]:
    """Nothing world-writable; the run directory group-writable for the Ray processes' group."""
    problems = [f"{p.relative_to(root)}: world-writable mode `{m.group(0)}`"
                for p in _cluster_files(root) for m in _WORLD_WRITABLE_CHMOD.finditer(p.read_text())]
    launcher = _yaml(root, "ray-cluster.yaml")
    gids = set()
    if isinstance(launcher, dict):
        init = " ; ".join(_launcher_commands(launcher, "initialization_commands"))
        mode = re.search(r"chmod\s+([0-7]{3,4})\s+/runs\b", init)
        grp = re.search(r"chgrp\s+(\S+)\s+/runs\b", init)
        if not mode or not (int(mode.group(1), 8) & 0o020) or int(mode.group(1), 8) & 0o002:
            problems.append("ray-cluster.yaml: /runs is not made group-writable (and not world-writable)")
        elif not int(mode.group(1), 8) & 0o2000:
            problems.append("ray-cluster.yaml: /runs lacks the setgid bit (files would not keep the group)")
        if not grp:
            problems.append("ray-cluster.yaml: /runs is not given the raysim group")
        run_options = " ".join(map(str, (launcher.get("docker") or {}).get("run_options") or []))
        added = re.findall(r"--group-add[ =](\S+)", run_options)
        if grp and grp.group(1) not in added:
            problems.append(f"ray-cluster.yaml: the container does not join /runs' group {grp.group(1)}")
        gids |= set(added)
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            for c in _launcher_commands(launcher, key):
                if "ray start" in c and not re.search(r"\bumask 0?002\b", c):
                    problems.append(f"ray-cluster.yaml: {key} starts Ray without umask 0002")
    for where, spec, _ in _kuberay_clusters(root):
        for group_name, group in _groups(spec):
            pod = (group.get("template") or {}).get("spec") or {}
            fs_group = (pod.get("securityContext") or {}).get("fsGroup")
            if fs_group is None:
                problems.append(f"{where}: {group_name} pod has no securityContext.fsGroup")
            else:
                gids.add(str(fs_group))
            args = " ".join(map(str, (_ray_container(group).get("command") or [])
                                + (_ray_container(group).get("args") or [])))
            if not re.search(r"\bumask 0?002\b", args):
                problems.append(f"{where}: {group_name} Ray container does not set umask 0002")
    if len(gids) > 1:
        problems.append(f"the raysim group differs between the configs: {sorted(gids)}")
    return problems


def requirements_problems(root: Path = HERE, project: Path = PROJECT, installed: bool = True) -> list[str]:
    """cluster/requirements.txt pins every pyproject dependency with ==, inside pyproject's range;
    the images' Ray is the installed Ray."""
    problems = []
    lines = _requirement_lines(root.parent)   # <repository>/cluster/requirements.txt
    if not lines:
        return [f"{REQUIREMENTS}: missing or empty"]
    pins = {}
    for ln in lines:
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;,]*)", ln)
        if not m:
            problems.append(f"{REQUIREMENTS}: `{ln}` is not an exact pin (name==version)")
        else:
            pins[_norm(m.group(1))] = m.group(2)
    declared = _declared_dependencies(project)
    problems += [f"{REQUIREMENTS}: {n} (pyproject: {declared[n]}) is not pinned" for n in sorted(set(declared) - set(pins))]
    problems += [f"{REQUIREMENTS}: {n} is not a pyproject dependency" for n in sorted(set(pins) - set(declared))]
    from packaging.requirements import Requirement

    for name, pin in sorted(pins.items()):   # each pin allowed by pyproject (a fresh install may run newer)
        if name in declared and not Requirement(declared[name]).specifier.contains(pin, prereleases=True):
            problems.append(f"{REQUIREMENTS}: {name}=={pin} is outside pyproject's {declared[name]}")
    if installed:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ray_version = version("ray")
        except PackageNotFoundError:
            ray_version = None
        images = [m.group(1) for p in _cluster_files(root)
                  for m in re.finditer(r"rayproject/ray:([0-9][\w.]*)", p.read_text())]
        wrong = sorted({v for v in images if ray_version and v != ray_version})
        if wrong:
            problems.append(f"images carry Ray {wrong}, the project runs Ray {ray_version}")
    return problems


_PIP_INSTALL = re.compile(r"pip3?\s+install\b(?P<args>[^\n;&|`)]*)")
_PIP_VALUE_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
                      "-f", "--find-links", "--target", "-t", "--prefix", "--root", "--python-version",
                      "--platform", "--cache-dir", "--timeout", "--retries", "--src", "--upgrade-strategy"}


def _pip_install_problem(args: str) -> str | None:
    try:
        words = shlex.split(args, comments=True)
    except ValueError:
        words = args.split()
    no_deps = "--no-deps" in words
    i = 0
    while i < len(words):
        w = words[i]
        if w in _PIP_VALUE_OPTIONS:
            value = words[i + 1] if i + 1 < len(words) else ""
            if w in ("-r", "--requirement") and not value.endswith(REQUIREMENTS):
                return f"installs from {value}, not {REQUIREMENTS}"
            i += 2
            continue
        if w.startswith("-r") and len(w) > 2 and not w.endswith(REQUIREMENTS):
            return f"installs from {w[2:]}, not {REQUIREMENTS}"
        if w in ("-e", "--editable"):
            i += 1
            w = words[i] if i < len(words) else ""
            if not no_deps:
                return f"installs {w} with its dependencies unpinned (add --no-deps)"
        elif w.startswith("-"):
            pass
        elif re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,.-]+\])?==[0-9][^\s;,]*", w):
            pass
        elif (w.startswith((".", "/", "~", "$")) or w.endswith((".whl", ".zip", ".tar.gz"))) and no_deps:
            pass
        elif w in ("...",):
            pass
        else:
            return f"installs `{w}` without an exact pin"
        i += 1
    return None


def pip_install_problems(root: Path = HERE) -> list[str]:
    """Every install of Python packages in cluster/ uses the pinned list or exact pins only."""
    problems = []
    for path in _cluster_files(root):
        for m in _PIP_INSTALL.finditer(path.read_text().replace("\\\n", " ")):
            why = _pip_install_problem(m.group("args"))
            if why:
                problems.append(f"{path.relative_to(root)}: `{m.group(0).strip()}`: {why}")
    env = _yaml(root, "runtime-env.yaml")
    pip = (env or {}).get("pip") if isinstance(env, dict) else None
    packages = pip.get("packages") if isinstance(pip, dict) else pip
    if packages != REQUIREMENTS:
        problems.append(f"runtime-env.yaml: pip is {packages!r}, not the pinned list {REQUIREMENTS}")
    for rel in ("kuberay/rayjob.yaml", "kuberay/raycluster.yaml"):
        doc = _yaml(root, rel)
        renv = ((doc or {}).get("spec") or {}).get("runtimeEnvYAML") if isinstance(doc, dict) else None
        if renv:
            pip = (yaml.safe_load(renv) or {}).get("pip")
            packages = pip.get("packages") if isinstance(pip, dict) else pip
            if packages not in (None, REQUIREMENTS) and not (
                    isinstance(packages, list) and all(REQUIREMENTS in str(p) for p in packages)):
                problems.append(f"{rel}: runtimeEnvYAML installs {packages!r}, not {REQUIREMENTS}")
    if (root / "kuberay/rayjob.yaml").exists():
        _, script = _submitter(root)
        if "--runtime-env cluster/runtime-env.yaml" not in _submit_command(script):
            problems.append("kuberay/rayjob.yaml: the submitter does not submit with cluster/runtime-env.yaml")
    launcher = _yaml(root, "ray-cluster.yaml")
    if isinstance(launcher, dict):
        setup = " ; ".join(_launcher_commands(launcher, "setup_commands"))
        if not re.search(r"pip3?\s+install\b[^;]*-r\s+\S*" + re.escape(REQUIREMENTS), setup):
            problems.append(f"ray-cluster.yaml: setup_commands do not install {REQUIREMENTS}")
    return problems


def code_archive_problems(root: Path = HERE) -> list[str]:
    """The RayJob's code comes from an archive checked by sha256 before anything runs it."""
    path = root / "kuberay/rayjob.yaml"
    if not path.exists():
        return ["kuberay/rayjob.yaml: missing"]
    problems = []
    spec = (_yaml(root, "kuberay/rayjob.yaml") or {}).get("spec") or {}
    renv = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
    for key in ("working_dir", "py_modules"):
        values = renv.get(key) or []
        for v in values if isinstance(values, list) else [values]:
            if re.match(r"^[a-z0-9+]+://", str(v)):
                problems.append(f"kuberay/rayjob.yaml: runtimeEnvYAML.{key} {v} is fetched unchecked by every node")
    container, script = _submitter(root)
    env = _env(container)
    url = (env.get("RAYSIM_CODE_URL") or {}).get("value")
    sha = (env.get("RAYSIM_CODE_SHA256") or {}).get("value")
    if not url:
        problems.append("kuberay/rayjob.yaml: the submitter has no RAYSIM_CODE_URL")
    if sha is None:
        problems.append("kuberay/rayjob.yaml: the submitter has no RAYSIM_CODE_SHA256")
    elif not re.fullmatch(r"[0-9a-f]{64}", sha) and "REPLACE" not in sha:
        problems.append(f"kuberay/rayjob.yaml: RAYSIM_CODE_SHA256 {sha!r} is neither a sha256 nor the placeholder")
    if not re.search(r"set -[a-z]*e", script):
        problems.append("kuberay/rayjob.yaml: the submitter script does not stop at the first error (set -e)")
    check = re.search(r"\$\{?RAYSIM_CODE_SHA256\}?[^\n]*\|\s*sha256sum -c", script)
    submit = script.find("ray job submit")
    if not check:
        problems.append("kuberay/rayjob.yaml: the submitter does not check the archive with sha256sum -c")
    elif submit < 0 or check.start() > submit:
        problems.append("kuberay/rayjob.yaml: the archive is not checked before `ray job submit`")
    if submit >= 0 and not re.search(r"--working-dir \.(\s|$)", _submit_command(script)):
        problems.append("kuberay/rayjob.yaml: `ray job submit` does not ship the checked copy (--working-dir .)")
    if "RAYSIM_CODE_URL" not in script:
        problems.append("kuberay/rayjob.yaml: the submitter does not fetch RAYSIM_CODE_URL")
    return problems


SAFETY_CHECKS = {
    "dashboard not on all interfaces": dashboard_host_problems,
    "token authentication on every node": token_auth_problems,
    "NetworkPolicy for every KubeRay cluster": network_policy_problems,
    "storage group-writable, nothing world-writable": storage_problems,
    "requirements pinned inside pyproject's ranges": requirements_problems,
    "every pip install uses the pinned list": pip_install_problems,
    "RayJob code archive checked by sha256": code_archive_problems,
}


# --------------------------------------------------------------------------- shape checks

def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def load(name: str):
    path = HERE / name
    try:
        doc = yaml.safe_load(path.read_text())
        check(isinstance(doc, dict), f"{name}: parses as one YAML mapping")
        return doc
    except yaml.YAMLError as e:
        check(False, f"{name}: parses ({e})")
        return None


def unknown(keys, known) -> list[str]:
    return sorted(set(keys) - set(known))


def check_pod_template(tmpl: dict, where: str) -> None:
    check_k8s_object(tmpl, "V1PodTemplateSpec", where, "pod template")


def check_k8s_object(obj: dict, model: str, where: str, what: str) -> None:
    try:
        from kubernetes.client import models
    except ImportError:
        print(f"skip  {where}: {what} check (the `kubernetes` package is not installed)")
        return

    def walk(value, model_name: str, path: str) -> list[str]:
        cls = getattr(models, model_name, None)
        if cls is None or not isinstance(value, dict):
            return []
        by_json = {j: cls.openapi_types[a] for a, j in cls.attribute_map.items()}
        bad = [f"{path}.{k}" for k in value if k not in by_json]
        for k, v in value.items():
            t = by_json.get(k)
            if t is None:
                continue
            if t.lower().startswith("list[") and isinstance(v, list):
                bad += [b for i, item in enumerate(v) for b in walk(item, t[5:-1], f"{path}.{k}[{i}]")]
            elif t.lower().startswith("dict"):
                continue
            else:
                bad += walk(v, t, f"{path}.{k}")
        return bad

    bad = walk(obj, model, what.split()[-1])
    check(not bad, f"{where}: {what} fields are Kubernetes fields" + (f" (unknown: {bad})" if bad else ""))


def check_cluster_spec(spec: dict, where: str) -> None:
    check(not unknown(spec, RAYCLUSTER_SPEC), f"{where}: RayClusterSpec fields known {unknown(spec, RAYCLUSTER_SPEC) or ''}")
    check(not unknown(spec.get("authOptions") or {}, AUTH_OPTIONS),
          f"{where}: authOptions fields known {unknown(spec.get('authOptions') or {}, AUTH_OPTIONS) or ''}")
    head = spec.get("headGroupSpec") or {}
    check(HEAD_GROUP_REQUIRED <= set(head) and not unknown(head, HEAD_GROUP),
          f"{where}.headGroupSpec: required fields present, no unknown fields")
    check_pod_template(head.get("template", {}), f"{where}.headGroupSpec")
    groups = spec.get("workerGroupSpecs") or []
    check(bool(groups), f"{where}: has a worker group")
    for g in groups:
        name = g.get("groupName", "?")
        check(WORKER_GROUP_REQUIRED <= set(g) and not unknown(g, WORKER_GROUP),
              f"{where}.workerGroupSpecs[{name}]: required fields present, no unknown fields")
        check(g.get("minReplicas", 0) <= g.get("replicas", 0) <= g.get("maxReplicas", 0),
              f"{where}.workerGroupSpecs[{name}]: minReplicas <= replicas <= maxReplicas")
        containers = g.get("template", {}).get("spec", {}).get("containers", [])
        gpus = [c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu") for c in containers]
        check(gpus[:1] == [1], f"{where}.workerGroupSpecs[{name}]: one nvidia.com/gpu per worker pod")
        check_pod_template(g.get("template", {}), f"{where}.workerGroupSpecs[{name}]")
    for part in [head] + groups:
        pod = part.get("template", {}).get("spec", {})
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for c in pod.get("containers", []) for m in c.get("volumeMounts", [])}
        ok = mounts.get("/runs") in vols and "persistentVolumeClaim" in vols[mounts["/runs"]]
        check(ok, f"{where}: {part.get('groupName', 'head')} mounts the shared PVC at /runs")


def check_runtime_env(env: dict, where: str) -> None:
    import os

    try:
        from ray.runtime_env import RuntimeEnv

        cwd = os.getcwd()
        os.chdir(PROJECT)   # relative requirements paths are the submitting machine's, from the repo root
        try:
            built = RuntimeEnv(**env)
        finally:
            os.chdir(cwd)
        extra = unknown(env, RuntimeEnv.known_fields)  # RuntimeEnv lets unknown (plugin) fields pass
        check(not extra, f"{where}: builds as ray.runtime_env.RuntimeEnv, only known fields {extra or ''}")
        packages = [p for p in (built.get("pip") or {}).get("packages", []) if p and not p.lstrip().startswith("#")]
        check([p.split(" #")[0].strip() for p in packages] == _requirement_lines(PROJECT),
              f"{where}: pip installs exactly the lines of {REQUIREMENTS}")
    except Exception as e:  # noqa: BLE001 - report any validation error
        check(False, f"{where}: builds as ray.runtime_env.RuntimeEnv ({e})")


def main() -> int:
    if "--print-requirements" in sys.argv[1:]:
        print("\n".join(installed_pins()))
        return 0

    # --- Ray cluster launcher
    launcher = load("ray-cluster.yaml")
    if launcher:
        import jsonschema
        import ray.autoscaler
        from ray.autoscaler._private.util import prepare_config, validate_config

        schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
        try:
            jsonschema.validate(launcher, schema)
            check(True, "ray-cluster.yaml: validates against ray/autoscaler/ray-schema.json")
        except jsonschema.ValidationError as e:
            check(False, f"ray-cluster.yaml: schema ({e.message})")
        try:
            validate_config(prepare_config(copy.deepcopy(launcher)))
            check(True, "ray-cluster.yaml: Ray prepare_config + validate_config")
        except Exception as e:  # noqa: BLE001
            check(False, f"ray-cluster.yaml: Ray prepare_config + validate_config ({e})")
        gpu_types = {k: v["resources"].get("GPU", 0) for k, v in launcher["available_node_types"].items()}
        check(sorted(gpu_types.values()) == [0, 1, 8], f"ray-cluster.yaml: CPU head, 1-GPU and 8-GPU types {gpu_types}")

    # --- runtime env for ray job submit
    env = load("runtime-env.yaml")
    if env:
        check_runtime_env(env, "runtime-env.yaml")

    # --- KubeRay
    pvc = load("kuberay/pvc.yaml")
    if pvc:
        check(pvc.get("kind") == "PersistentVolumeClaim" and "ReadWriteMany" in pvc["spec"]["accessModes"],
              "kuberay/pvc.yaml: a ReadWriteMany PersistentVolumeClaim")
    rc = load("kuberay/raycluster.yaml")
    if rc:
        check(rc.get("apiVersion") == "ray.io/v1" and rc.get("kind") == "RayCluster", "kuberay/raycluster.yaml: ray.io/v1 RayCluster")
        check_cluster_spec(rc["spec"], "kuberay/raycluster.yaml")
    rj = load("kuberay/rayjob.yaml")
    if rj:
        spec = rj["spec"]
        check(rj.get("apiVersion") == "ray.io/v1" and rj.get("kind") == "RayJob", "kuberay/rayjob.yaml: ray.io/v1 RayJob")
        check(not unknown(spec, RAYJOB_SPEC), f"kuberay/rayjob.yaml: RayJobSpec fields known {unknown(spec, RAYJOB_SPEC) or ''}")
        check(spec.get("submissionMode", "K8sJobMode") == "K8sJobMode",
              "kuberay/rayjob.yaml: submissionMode K8sJobMode (the submitter pod runs the checked submission)")
        check_cluster_spec(spec["rayClusterSpec"], "kuberay/rayjob.yaml rayClusterSpec")
        if spec.get("submitterPodTemplate"):
            check_pod_template(spec["submitterPodTemplate"], "kuberay/rayjob.yaml submitterPodTemplate")
        # The submitter's `ray job submit ... -- <entrypoint>`: one `bash -c` command on the cluster.
        _, script = _submitter(HERE)
        words = shlex.split(_submit_command(script))
        after = words[words.index("--") + 1:] if "--" in words else []
        check(len(after) == 3 and after[:2] == ["bash", "-c"]
              and "jobs/simulate.py" in after[2] and "jobs/score.py" in after[2],
              "kuberay/rayjob.yaml: the submitter submits one `bash -c` command (simulate && score)")
    for doc in _yaml_all(HERE, "kuberay/networkpolicy.yaml"):
        name = f"kuberay/networkpolicy.yaml {doc.get('metadata', {}).get('name')}"
        check(doc.get("apiVersion") == "networking.k8s.io/v1" and doc.get("kind") == "NetworkPolicy",
              f"{name}: a networking.k8s.io/v1 NetworkPolicy")
        check_k8s_object(doc, "V1NetworkPolicy", name, "NetworkPolicy")

    # --- what the files secure
    for what, fn in SAFETY_CHECKS.items():
        problems = fn()
        check(not problems, f"safe: {what}" + "".join(f"\n        - {p}" for p in problems))

    print(f"\n{len(failures)} failure(s)" if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
