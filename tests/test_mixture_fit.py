"""``raysim fit`` with the fitter ``mixture`` end to end on Ray: real carData respondents, the
embedded default as answerer and crafter on the model actors, the Tune weight search beside
SLSQP; then a run with the method ``mixture`` naming the fit draws its prompts from it."""

from __future__ import annotations

import pytest
import yaml

from pipeline_helpers import raysim_ok as _raysim
from raysim.runs.results import read_results

pytestmark = pytest.mark.timeout(900)


def test_mixture_fit_then_simulate(tmp_path):
    base = {"population": {"cardata": True}, "sampling": {"n": 40, "seed": 1}, "questions": ["POVERTY"],
            "method": "direct", "actors": {"number": 1, "num_cpus": 0.5, "batch_size": 8}}
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(yaml.safe_dump({"fitter": "mixture", "params": {"algorithm": "gb", "k": 1, "tune_samples": 3},
                                   "run": base}))
    out = _raysim("fit", str(cfg), "-o", str(tmp_path / "fit"))
    assert "fit written" in out and "Number of trials" not in out      # Tune's banners stay in the log
    result = yaml.safe_load((tmp_path / "fit" / "fit.yaml").read_text())["result"]
    assert len(result["prompts"]) == len(result["weights"]) and result["prompts"][0] == "You are a person taking part in a survey."
    assert abs(sum(result["weights"]) - 1) < 1e-6 and len(result["weights_tune"]) == len(result["prompts"])
    assert result["crafting"]["attempts"] >= 1
    methods = set(result["summary"]["fitted"])
    assert {"mixture", "default prompt", "uniform", "run's method", "mixture (tune weights)"} <= methods
    # SLSQP's objective is never worse than the default prompt's, which it starts from
    assert result["summary"]["fitted"]["mixture"] <= result["summary"]["fitted"]["default prompt"] + 1e-9

    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text(yaml.safe_dump({**base, "sampling": {"n": 8, "seed": 2}, "method": "mixture",
                                       "fit": str(tmp_path / "fit")}))
    _raysim("simulate", "--config", str(run_cfg), "-o", str(tmp_path / "run"))
    rows = read_results(tmp_path / "run" / "results")
    assert len(rows) == 8 and rows["probs"].map(lambda p: abs(sum(p) - 1) < 1e-6).all()
