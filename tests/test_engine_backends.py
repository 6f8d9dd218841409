"""Engine selection in run configs (``engine:``), checked without loading anything."""

import sys

import pytest

from raysim.engine.backends import EngineSpec, make_engine
from raysim.engine.hf import HFEngine, HFOptions
from raysim.engine.loading import ModelSpec
from raysim.pipeline.config import ConfigError, parse_config

BASE = {"population": {"cardata": True}, "method": "pe"}


def test_engine_names_and_options_parse():
    assert EngineSpec.parse(None) == EngineSpec() == EngineSpec("hf")
    assert EngineSpec.parse("vllm") == EngineSpec("vllm")
    spec = EngineSpec.parse({"name": "vllm", "max_model_len": 2048, "enable_prefix_caching": False})
    assert spec.backend_options().max_model_len == 2048 and not spec.backend_options().enable_prefix_caching
    assert spec.to_dict() == {"name": "vllm", "max_model_len": 2048, "enable_prefix_caching": False}
    hf = EngineSpec.parse({"token_budget": 256})
    assert hf.options == {"token_budget": 256} and hf.to_dict() == {"name": "hf", "token_budget": 256}
    assert hf.backend_options() == HFOptions(token_budget=256)


@pytest.mark.parametrize("raw, message", [
    ("tgi", "engine 'tgi' not one of ['hf', 'vllm', 'dry']"),
    ({"name": "vllm", "max_len": 10}, "engine vllm: unknown key(s) ['max_len']"),
    ({"name": "vllm", "gpu_memory_utilization": 2}, "gpu_memory_utilization must be in (0, 1]"),
    ({"name": "hf", "max_model_len": 10}, "known: ['generate_rows', 'max_rows', 'memory_fraction', 'token_budget']"),
    ({"name": "hf", "token_budget": "big"}, "token_budget: expected int, got 'big'"),
    ({"name": "hf", "generate_rows": 0}, "generate_rows must be an integer >= 1, got 0"),
    ({"name": "hf", "max_rows": 0}, "max_rows must be an integer >= 1, got 0"),
    ({"name": "hf", "memory_fraction": 1.5}, "memory_fraction must be a number in (0, 1], got 1.5"),
    (["vllm"], "expected a backend name or a mapping"),
])
def test_bad_engines_are_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        parse_config({**BASE, "engine": raw})


def test_the_engine_is_part_of_a_runs_identity_except_the_default(tmp_path):
    hf = parse_config(BASE).resolved(tmp_path)
    vllm = parse_config({**BASE, "engine": {"name": "vllm", "max_model_len": 2048}}).resolved(tmp_path)
    assert "engine" not in hf                    # runs made before engines were selectable resume
    assert vllm["engine"] == "vllm"              # options (resources) do not change results
    assert {k: v for k, v in vllm.items() if k != "engine"} == hf
    assert "engine" not in parse_config({**BASE, "method": "uniform", "engine": "vllm"}).resolved(tmp_path)


def test_make_engine_passes_hf_options(one_thread):
    engine = make_engine(ModelSpec(), EngineSpec("hf", {"token_budget": 64}))
    assert isinstance(engine, HFEngine) and engine.options == HFOptions(token_budget=64)


def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)     # as in an environment without vLLM
    with pytest.raises(ImportError, match=r"engine: vllm needs vLLM .*pip install vllm==0.32.0"):
        make_engine(ModelSpec(), EngineSpec("vllm"))
