"""`raysim plan`: a run's cost before it starts, counted on the dry engine (the model's tokenizer,
no weights)."""

import math

import numpy as np
import pytest
import yaml

from raysim.cli import main
from raysim.engine.backends import EngineSpec, make_engine
from raysim.engine.base import Option, Request
from raysim.engine.dry import DryEngine
from raysim.engine.loading import ModelSpec
from raysim.pipeline.config import load_config
from raysim.pipeline.plan import plan_run


def config(tmp_path, **overrides):
    raw = {"population": {"cardata": True}, "sampling": {"per_country": 6, "seed": 1}, "questions": 0,
           "method": "pe", "answer": "logprob", "model": {"name_or_path": "embedded"},
           "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 4}, **overrides}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_dry_engine_tokenises_like_the_model_and_answers_uniformly():
    engine = make_engine(ModelSpec(), EngineSpec("dry"))
    assert isinstance(engine, DryEngine) and engine.parameters == 134_515_008   # SmolLM2-135M's count
    prefix = ({"role": "system", "content": "You live in Oslo."},)
    question = ({"role": "user", "content": "Is the sky blue? 1 yes 2 no"},)
    requests = [Request(prefix, question, (Option(1, "1"), Option(2, "2"))),
                Request(prefix, question, (Option(1, "1"), Option(2, "2"), Option(3, "3")))]
    out = engine.score(requests)
    assert [list(r.probs) for r in out] == [[0.5, 0.5], pytest.approx([1 / 3] * 3)]
    c = engine.counts
    assert (c.groups, c.requests) == (1, 2)   # one shared prefix
    groups = engine._groups(requests, with_options=True)
    assert c.prefix_tokens == len(groups[0].prefix) > 0
    assert c.question_tokens == sum(len(i.suffix) + sum(map(len, i.continuations)) for i in groups[0].items)
    with pytest.raises(NotImplementedError, match="no hidden states"):
        engine.hidden_means(["x"], [(0, 1)], [1])


def test_plan_counts_the_runs_requests_tokens_and_shards(tmp_path):
    plan = plan_run(load_config(config(tmp_path)), probe=24)   # the whole sample: 4 countries × 6
    assert (plan.respondents, plan.questions, plan.requests) == (24, 1, 24)
    assert 20 <= plan.prefixes <= 24   # respondents with the same profile share one prefix, as in the engine
    assert plan.tokens > 24 * 50 and plan.parameters == 134_515_008
    assert plan.shards == math.ceil(24 / 4) and plan.bytes > 0
    assert plan.gpu_hours == pytest.approx(2 * plan.parameters * plan.tokens / (989e12 * 0.5) / 3600)
    # a probe of some respondents scales to the sample (profiles differ a little in length)
    part = plan_run(load_config(config(tmp_path)), probe=8)
    assert part.requests == 24 and abs(part.tokens / plan.tokens - 1) < 0.1
    measured = plan_run(load_config(config(tmp_path)), probe=4, rate=2.0)
    assert measured.gpu_hours == pytest.approx(24 / 2.0 / 3600) and "given rate" in measured.basis
    # a method without a model costs no GPU time
    free = plan_run(load_config(config(tmp_path, method="uniform")))
    assert free.gpu_hours is None and free.requests == 24 and free.tokens == 0


def test_raysim_plan_prints_the_plan_and_refuses_bad_numbers(tmp_path, capsys):
    path = config(tmp_path)
    assert main(["plan", str(path), "--gpus", "4", "--probe", "4"]) == 0
    out = capsys.readouterr().out
    for words in ("respondents: 24", "requests: 24", "tokens:", "gpu-hours:", "on 4 GPU(s)", "shards: 6"):
        assert words in out, out
    for args, words in ((["--gpus", "0"], "--gpus"), (["--rate", "-1"], "--rate"), (["--utilisation", "2"], "utilisation")):
        assert main(["plan", str(path), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not np.any([p.name.startswith("raysim-plan-") for p in tmp_path.iterdir()])


def test_a_pipeline_runs_end_to_end_on_the_dry_engine(tmp_path):
    from pipeline_helpers import check_rows, raysim_ok, write_config
    from raysim.runs.results import read_results

    cfg = write_config(tmp_path / "run.yaml", method="pe", model={"name_or_path": "embedded"}, engine="dry",
                       questions=3)
    raysim_ok("simulate", "--config", str(cfg), "-o", str(tmp_path / "run"))
    check_rows(tmp_path / "run", respondents=9, questions=3)
    rows = read_results(tmp_path / "run" / "results")
    assert all(np.allclose(p, 1 / len(p)) for p in rows["probs"])   # no model: every option alike
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["engine"] == "dry"
