"""Offline checks of the cluster configs in this directory (no cloud or Kubernetes access).

    python cluster/validate.py

- every YAML parses;
- ray-cluster.yaml validates against Ray's own launcher schema (ray/autoscaler/ray-schema.json)
  and through Ray's prepare_config + validate_config (defaults merged, node types checked);
- runtime-env.yaml and the RayJob's runtimeEnvYAML build as ray.runtime_env.RuntimeEnv;
- the KubeRay manifests use only fields of the ray.io/v1 types (RayCluster, RayJob; field lists
  from kuberay's ray-operator/apis/ray/v1) and have their required fields; their pod templates are
  checked key by key against the Kubernetes models when the `kubernetes` package is importable
  (it is not a raysim dependency: `pip install kubernetes` to include that check);
- the RayJob entrypoint survives KubeRay's submitter command line (it is pasted unquoted after
  `ray job submit --`) as one command run on the Ray cluster.
"""

from __future__ import annotations

import copy
import json
import shlex
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

# ray.io/v1 spec fields (kuberay ray-operator/apis/ray/v1/{raycluster,rayjob}_types.go).
RAYCLUSTER_SPEC = {"suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
                   "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec",
                   "rayVersion", "workerGroupSpecs"}
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

failures: list[str] = []


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
    try:
        from kubernetes.client import models
    except ImportError:
        print(f"skip  {where}: pod template check (the `kubernetes` package is not installed)")
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

    bad = walk(tmpl, "V1PodTemplateSpec", "template")
    check(not bad, f"{where}: pod template fields are Kubernetes fields" + (f" (unknown: {bad})" if bad else ""))


def check_cluster_spec(spec: dict, where: str) -> None:
    check(not unknown(spec, RAYCLUSTER_SPEC), f"{where}: RayClusterSpec fields known {unknown(spec, RAYCLUSTER_SPEC) or ''}")
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
    try:
        from ray.runtime_env import RuntimeEnv

        RuntimeEnv(**env)
        extra = unknown(env, RuntimeEnv.known_fields)  # RuntimeEnv lets unknown (plugin) fields pass
        check(not extra, f"{where}: builds as ray.runtime_env.RuntimeEnv, only known fields {extra or ''}")
    except Exception as e:  # noqa: BLE001 - report any validation error
        check(False, f"{where}: builds as ray.runtime_env.RuntimeEnv ({e})")


def main() -> int:
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
        check(spec.get("submissionMode", "K8sJobMode") in SUBMISSION_MODES, "kuberay/rayjob.yaml: submissionMode valid")
        check_cluster_spec(spec["rayClusterSpec"], "kuberay/rayjob.yaml rayClusterSpec")
        renv = yaml.safe_load(spec["runtimeEnvYAML"])
        check(isinstance(renv, dict) and "working_dir" in renv and "pip" in renv,
              "kuberay/rayjob.yaml: runtimeEnvYAML is a mapping with working_dir and pip")
        check_runtime_env(renv, "kuberay/rayjob.yaml runtimeEnvYAML")
        # KubeRay's submitter runs: ... ray job submit --address A --no-wait -- <entrypoint> ; fi ; ...
        line = f"ray job submit --address http://h:8265 --no-wait -- {spec['entrypoint'].strip()} ;"
        words = shlex.split(line.split(";")[0]) if line.count("'") % 2 == 0 else []
        after = words[words.index("--") + 1:] if "--" in words else []
        shell_ops = {"&&", "||", "|", "&"}
        check(len(after) == 3 and after[:2] == ["bash", "-c"] and not (set(words) & shell_ops)
              and "jobs/simulate.py" in after[2] and "jobs/score.py" in after[2],
              "kuberay/rayjob.yaml: entrypoint is one `bash -c` command (simulate && score) on the cluster")

    print(f"\n{len(failures)} failure(s)" if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
