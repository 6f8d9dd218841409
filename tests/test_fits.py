"""Fitters, fitted artefacts and post-processing steps (no Ray): temperature scaling recovers a
known temperature, artefacts are versioned and named by content in a run's hash, steps are
checked when read and never touch result files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from raysim.fits import FITTERS, FitError, load_fit, write_fit
from raysim.pipeline.config import ConfigError, parse_config
from raysim.pipeline.fit_job import parse_fit_config
from raysim.postprocess import StepError, apply_steps, parse_steps
from raysim.postprocess.temperature import temper
from raysim.survey.codebook import load_codebook

RUN = {"population": {"synthetic": {"n": 200, "seed": 1}}, "method": "pe", "questions": 3}


def test_temper_is_a_distribution_and_keeps_zeros():
    p = np.array([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert np.allclose(temper(p, 1.0), p)
    hot, cold = temper(p, 4.0), temper(p, 0.25)
    assert np.allclose(hot.sum(-1), 1) and np.allclose(cold.sum(-1), 1)
    assert hot[0, 3] == 0 and cold[0, 3] == 0
    assert hot[0, 0] < p[0, 0] < cold[0, 0]           # T > 1 flattens, T < 1 sharpens
    assert np.allclose(hot[1], 0.25)


class _Context:
    """A stand-in fit: every respondent's simulated distribution is p, and the real answers are
    drawn from temper(p, T_true)."""

    def __init__(self, t_true: float, n: int = 20000):
        codebook = load_codebook("wvs7")
        self.codebook, self.qids, self.answer_mode = codebook, ("Q46", "Q57"), "logprob"
        rng = np.random.default_rng(0)
        people = {"respondent_id": np.arange(n), "country": "DEU", "weight": rng.uniform(0.5, 1.5, n)}
        rows = []
        for j, q in enumerate(self.qids):
            codes = list(codebook[q].codes)
            p = np.linspace(1, 0.2, len(codes)) ** (2 + j)
            p /= p.sum()
            people[q] = pd.array(rng.choice(codes, size=n, p=temper(p, t_true)), dtype="Int64")
            rows += [{"respondent_id": i, "qid": q, "probs": p.astype(np.float32)} for i in range(n)]
        self.respondents, self._rows = pd.DataFrame(people), pd.DataFrame(rows)

    def answer(self):
        return self._rows


@pytest.mark.parametrize("t_true", [0.6, 2.0])
def test_temperature_fitter_recovers_a_known_temperature(t_true):
    fitter = FITTERS.get("temperature")
    result = fitter(fitter.Params()).fit(_Context(t_true))
    assert abs(result["temperature"] - t_true) < 0.1 * t_true
    assert result["kl_sum_fitted"] < result["kl_sum_at_1"] and result["questions"] == 2


def test_fit_artefacts_are_versioned_and_in_the_run_hash(tmp_path):
    fit = write_fit(tmp_path / "f", fitter="temperature", params={}, run={}, result={"temperature": 1.5})
    assert load_fit(tmp_path / "f") == fit and fit.result["temperature"] == 1.5
    a = parse_config({**RUN, "fit": str(tmp_path / "f")}).resolved(tmp_path / "run")["fit"]
    assert a == {"path": str(fit.path), "fitter": "temperature", "sha256": fit.sha256}
    assert "fit" not in parse_config(RUN).resolved(tmp_path / "run")     # old runs keep their hash
    write_fit(tmp_path / "f", fitter="temperature", params={}, run={}, result={"temperature": 1.6})
    assert parse_config({**RUN, "fit": str(tmp_path / "f")}).resolved(tmp_path / "run")["fit"]["sha256"] != a["sha256"]
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "fit.yaml").write_text(yaml.safe_dump({"format": "raysim-fit/0", "fitter": "x"}))
    with pytest.raises(FitError, match=r"g/fit.yaml: format 'raysim-fit/0' is not 'raysim-fit/1'"):
        load_fit(tmp_path / "g")
    with pytest.raises(ConfigError, match="fit: .*nope: no fit artefact"):
        parse_config({**RUN, "fit": str(tmp_path / "nope")})


def test_steps_are_checked_when_read():
    assert [s.to_config() for s in parse_steps(["temperature", {"temperature": {"temperature": 2}}])] == \
        [{"temperature": {"temperature": None}}, {"temperature": {"temperature": 2}}]
    with pytest.raises(StepError, match=r"postprocess\[0\]: unknown post-processing step 'tilde'; known: \['temperature', 'tilt'"):
        parse_steps(["tilde"])
    with pytest.raises(StepError, match="temperature must be > 0"):
        parse_steps([{"temperature": {"temperature": -1}}])
    with pytest.raises(ConfigError, match=r"postprocess\[0\].temperature: unknown key"):
        parse_config({**RUN, "postprocess": [{"temperature": {"t": 1}}]})
    with pytest.raises(ConfigError, match="fitter 'temperature' fits from answer modes"):
        parse_fit_config({"fitter": "temperature", "run": {**RUN, "answer": "generate"}})
    with pytest.raises(ConfigError, match="unknown fitter 'mixtures'"):
        parse_fit_config({"fitter": "mixtures", "run": RUN})
    with pytest.raises(ConfigError, match="algorithm 'svd' is not one of"):
        parse_fit_config({"fitter": "mixture", "params": {"algorithm": "svd"}, "run": RUN})
    with pytest.raises(ConfigError, match="params: model 'no/such-dir': "):
        parse_fit_config({"fitter": "mixture", "params": {"crafter": "no/such-dir"}, "run": RUN})


def test_steps_map_distributions_without_touching_the_rows():
    rows = pd.DataFrame({"qid": ["Q46"], "probs": [np.array([0.7, 0.2, 0.05, 0.05], dtype=np.float32)]})
    before = rows["probs"].iloc[0].copy()
    out = apply_steps(rows, parse_steps([{"temperature": {"temperature": 2.0}}]), load_codebook("wvs7"))
    assert np.array_equal(rows["probs"].iloc[0], before)     # the input is not edited
    assert np.allclose(out["probs"].iloc[0], temper(before, 2.0), atol=1e-6)
    with pytest.raises(StepError, match="no temperature given and the run names no fit"):
        apply_steps(rows, parse_steps(["temperature"]), load_codebook("wvs7"))
    with pytest.raises(StepError, match="generate mode"):
        apply_steps(pd.DataFrame({"qid": ["Q46"], "probs": [None]}), parse_steps(["temperature"]), None)
