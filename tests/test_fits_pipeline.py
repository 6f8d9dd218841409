"""``raysim fit`` end to end on Ray: a temperature fitted on real carData respondents with the
embedded default, named by a run config (fit + postprocess), applied when the run is scored —
the result files untouched, and ``--postprocess none`` scoring the raw distributions."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import yaml

from pipeline_helpers import raysim_ok as _raysim

pytestmark = pytest.mark.timeout(900)


def _digest(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run_dir / "results").glob("*"))}


def test_fit_then_run_then_score_with_and_without_the_step(tmp_path):
    base = {"population": {"cardata": True}, "sampling": {"n": 12, "seed": 1}, "questions": 0, "method": "pe",
            "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 6}}
    fit_cfg = tmp_path / "fit.yaml"
    fit_cfg.write_text(yaml.safe_dump({"fitter": "temperature", "run": base}))
    _raysim("fit", str(fit_cfg), "-o", str(tmp_path / "fit"))
    fitted = yaml.safe_load((tmp_path / "fit" / "fit.yaml").read_text())
    assert fitted["format"] == "raysim-fit/1" and fitted["result"]["respondents"] == 12
    temperature = fitted["result"]["temperature"]
    assert temperature > 0 and abs(temperature - 1) > 1e-3

    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text(yaml.safe_dump({**base, "sampling": {"n": 12, "seed": 2}, "fit": str(tmp_path / "fit"),
                                       "postprocess": ["temperature"]}))
    run = tmp_path / "run"
    _raysim("simulate", "--config", str(run_cfg), "-o", str(run))
    assert yaml.safe_load((run / "config.yaml").read_text())["fit"]["fitter"] == "temperature"
    rows = _digest(run)
    _raysim("score", str(run), "--boot", "20")
    assert "post-processed by [{temperature: {temperature: null}}]" in (run / "scores.md").read_text()
    tempered = pd.read_csv(run / "scores.csv")
    _raysim("score", str(run), "--boot", "20", "--postprocess", "none")
    raw = pd.read_csv(run / "scores.csv")
    assert "post-processed" not in (run / "scores.md").read_text()
    assert _digest(run) == rows                      # scoring never edits result files
    kl = [t.query("metric == 'kl' and country == 'ALL' and category == 'Overall'")["value"].iloc[0] for t in (tempered, raw)]
    assert kl[0] != pytest.approx(kl[1], rel=1e-6)
