"""Tune on Ray: a search and a layer sweep on the embedded default and the carData respondents,
sharing model actors; the tuned preset runs through the simulation job."""

from __future__ import annotations

import pandas as pd
import pytest
import ray
import yaml

from raysim.identity.injection import load_preset
from raysim.pipeline.config import parse_config
from raysim.pipeline.simulate import run
from raysim.tune.config import parse_tune
from raysim.tune.data import prepare
from raysim.tune.search import BEST, TRIALS, run_search
from raysim.tune.sweep import SWEEP_DIR, run_sweep

from pipeline_helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def small(**changes):
    raw = yaml.safe_load((ROOT / "configs" / "tune" / "cardata_small.yaml").read_text())
    raw.update({"split": {"validation": 8, "heldout": 8, "seed": 0}, **changes})
    return parse_tune(raw)


def test_a_search_shares_the_loaded_actors_and_its_preset_runs(ray_local, tmp_path):
    config = small()
    out = tmp_path / "tune"
    outcome = run_search(prepare(config, out))
    trials = pd.read_csv(out / TRIALS)
    assert len(trials) == 8 and (trials["status"] == "ok").all()
    assert trials["sigma"].between(0, 1).all() and trials["layer.high"].between(8, 30).all()
    assert ((trials["sigma"] == 0.36) & (trials["layer.high"] == 24)).sum() == 1   # the untuned preset
    complete = trials[trials["complete"]]
    assert len(complete) >= 1 and (complete["respondents"] == 8).all()
    # Every trial ran on the two actors, each loaded once before the first trial.
    assert len(outcome.actors) == 2 and all(a["load_seconds"] > 0 for a in outcome.actors)
    served = {t for a in outcome.actors for t in a["served"] if "-heldout-" not in t}
    assert served == set(trials["trial_id"])

    best = complete.sort_values("objective").iloc[0]
    preset = load_preset(str(out / BEST))
    assert preset.sigma == pytest.approx(best["sigma"]) and preset.layers["high"] == best["layer.high"]
    meta = yaml.safe_load((out / BEST).read_text())["tuned"]
    assert set(meta["heldout"]) == {"respondents", "tuned", "untuned"} and meta["heldout"]["respondents"] == 8
    heldout = pd.read_csv(out / "heldout.csv")
    assert set(heldout["preset"]) == {"untuned", "tuned"} and heldout["value"].notna().all()
    assert "Held-out respondents" in (out / "summary.md").read_text()

    # The simulation job accepts the tuned preset.
    sim = parse_config({"population": {"cardata": True}, "method": "psii", "preset": str(out / BEST),
                        "sampling": {"n": 4, "seed": 0}, "actors": {"number": 2, "num_cpus": 0.5, "batch_size": 2}})
    assert run(sim, tmp_path / "run").ok

    # Rerunning into the directory resumes the finished search: no trial is added or redone.
    again = run_search(prepare(config, out))
    assert set(pd.read_csv(out / TRIALS)["trial_id"]) == set(trials["trial_id"])
    assert not {t for a in again.actors for t in a["served"] if "-heldout-" not in t}


def test_the_layer_sweep_writes_curves_plots_and_a_preset(ray_local, tmp_path):
    config = small(split={"validation": 6, "heldout": 6, "seed": 1}, sweep={"layers": [4, 16, 28]})
    outcome = run_sweep(prepare(config, tmp_path))
    out = tmp_path / SWEEP_DIR
    table = pd.read_csv(out / "sweep.csv")
    assert sorted(zip(table["attribute"].fillna(""), table["layer"])) == [("", 0), ("Q260", 4), ("Q260", 16),
                                                                         ("Q260", 28)]
    assert table[["kl", "ed", "entropy_sim", "entropy_human"]].notna().all().all()
    # The vector moves the answers: the curve is not flat at the reference.
    assert table["kl"].nunique() > 1
    png = (out / "Q260.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    best = int(table[table["layer"] > 0].sort_values("objective").iloc[0]["layer"])
    assert load_preset(str(out / "best_preset.yaml")).layer_of("Q260") == best
    assert "Layer sweep" in outcome.summary.read_text()
