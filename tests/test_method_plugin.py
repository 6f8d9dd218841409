"""A method kind of one's own: a plugin distribution, installed with pip, registers a kind through
the ``raysim.method_kinds`` entry-point group; a method YAML of that kind then runs through the
Ray pipeline like the built-in ones, its parameters checked when the config is read."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from pipeline_helpers import check_rows, env, write_config
from raysim.runs.results import read_results

PLUGIN = '''
"""Kind ``persona_line``: one fixed sentence as the system turn, the same for everyone."""

from dataclasses import dataclass

from raysim.methods.kinds import MethodError, register_kind
from raysim.methods.kinds.prompting import PromptingKind, PromptingParams


@dataclass(frozen=True)
class Params(PromptingParams):
    persona: str = ""


@register_kind("persona_line")
class PersonaLine(PromptingKind):
    Params = Params

    @classmethod
    def check(cls, params, where):
        super().check(params, where)
        if not params.persona.strip():
            raise MethodError(f"{where}: persona must be a sentence")

    def answer(self, rows):
        language = self.params.language
        return self.ask([r for row in rows
                         for r in self.requests(int(row["respondent_id"]), self.params.persona, None, language)])
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "raysim-persona-line"
version = "0.1"

[project.entry-points."raysim.method_kinds"]
persona_line = "raysim_persona_line"

[tool.setuptools]
py-modules = ["raysim_persona_line"]
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin installed (pip --target) into a directory that goes on PYTHONPATH."""
    src, target = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (src / "raysim_persona_line.py").write_text(textwrap.dedent(PLUGIN))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, timeout=300)
    assert list(target.glob("raysim_persona_line-*.dist-info")) or list(target.glob("raysim_persona_line*.dist-info"))
    return {**env(), "PYTHONPATH": str(target)}


def _raysim(args, plugin_env, timeout=600):
    return subprocess.run([str(sys.executable), "-m", "raysim.cli", *args], env=plugin_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(900)
def test_a_plugin_kind_runs_through_the_pipeline(plugin, tmp_path):
    listed = _raysim(["methods"], plugin)
    assert listed.returncode == 0, listed.stderr
    assert "persona_line" in listed.stdout and "raysim_persona_line" in listed.stdout

    method = tmp_path / "farmer.yaml"
    method.write_text(yaml.safe_dump({"name": "farmer", "kind": "persona_line", "description": "a farmer",
                                      "persona": "You are a retired farmer. Answer with the option's number only."}))
    config = write_config(tmp_path / "run.yaml", method=str(method), questions=2,
                          sampling={"per_country": 2, "countries": ["DEU", "USA"], "seed": 0},
                          actors={"number": 1, "num_cpus": 0.5, "batch_size": 2})
    done = _raysim(["simulate", "--config", str(config), "-o", str(tmp_path / "run")], plugin)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    check_rows(tmp_path / "run", respondents=4, questions=2)
    rows = read_results(tmp_path / "run" / "results")
    assert rows["method"].str.startswith("farmer (").all()
    sums = rows["probs"].map(sum)
    assert ((sums - 1).abs() < 1e-4).all()
    # one system turn for everyone: every respondent answers a question with the same distribution
    per_q = rows.groupby("qid")["probs"].agg(lambda ps: len({tuple(p) for p in ps}))
    assert (per_q == 1).all()
    spec = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["method_spec"]
    assert spec["kind"] == "persona_line" and spec["persona"].startswith("You are a retired farmer")


def test_a_plugin_kind_checks_its_parameters(plugin, tmp_path):
    method = tmp_path / "bad.yaml"
    method.write_text(yaml.safe_dump({"name": "bad", "kind": "persona_line", "persna": "typo"}))
    config = write_config(tmp_path / "run.yaml", method=str(method))
    done = _raysim(["simulate", "--config", str(config), "-o", str(tmp_path / "run")], plugin, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "bad.yaml" in last and "unknown key(s) ['persna']" in last and "Traceback" not in done.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump({"name": "empty", "kind": "persona_line"}))
    done = _raysim(["simulate", "--config", str(write_config(tmp_path / "r2.yaml", method=str(empty))),
                    "-o", str(tmp_path / "run2")], plugin, timeout=120)
    assert done.returncode != 0 and "empty.yaml: persona must be a sentence" in done.stderr
