"""The Ray runtime environments install what pyproject.toml declares (Ray itself is in the
cluster's image): the package list is written once, in pyproject, and the YAML copies that a
cluster needs as static text are checked against it."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from pipeline_helpers import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower()


def declared() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d): d for d in deps if _name(d) != "ray"}


def runtime_envs() -> dict[str, dict]:
    rayjob = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayjob.yaml").read_text())
    return {"cluster/runtime-env.yaml": yaml.safe_load((ROOT / "cluster" / "runtime-env.yaml").read_text()),
            "cluster/kuberay/rayjob.yaml": yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])}


@pytest.mark.parametrize("where", sorted(runtime_envs()))
def test_runtime_env_installs_the_declared_dependencies(where):
    packages = runtime_envs()[where]["pip"]["packages"]
    # torch unpinned: the image's CUDA decides which build a cluster needs
    expected = {n: d for n, d in declared().items() if n != "torch"}
    assert {_name(p): p for p in packages if _name(p) != "torch"} == expected, where
    assert any(_name(p) == "torch" for p in packages)
