"""Does a Tune trial start scoring without a model load? (docs/design.md: "Tune: a trial after the
first starts scoring with no model load".)

    python bench/tune_startup.py [--trials 6] [--model embedded]   # last line "ratio: <x>"

One search on the embedded default (PSII, the carData respondents, logprob): one model actor,
trials one at a time (so no trial waits behind another's batches), each trial a single batch of
2 validation respondents. Printed side by side from the one run: the actor's model load time,
and for each trial in start order the time from the trial's start to its first scored batch.
ratio = model load / median first-batch time of trials 2..N: a trial that loaded a model would
take at least the load time (ratio ≤ 1). The first-batch time is split into the actor's compute
for that batch (2 respondents' PSII prompts on one thread) and the rest (Tune's report, the
trial's own start-up, the call's round trip).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd
import ray
import yaml

from raysim.shipped import shipped_config
from raysim.tune.config import parse_tune
from raysim.tune.data import prepare
from raysim.tune.search import TRIALS, run_search


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--model", default="embedded", help="model name_or_path (its configs/models preset)")
    a = p.parse_args(argv)
    raw = yaml.safe_load(shipped_config("tune", "cardata_small.yaml").read_text())
    raw.update(model={"name_or_path": a.model}, split={"validation": 2, "heldout": 2, "seed": 0},
               actors={"number": 1, "num_cpus": 1, "batch_size": 2}, space={"sigma": [0.0, 1.0]},
               search={"num_samples": a.trials, "rungs": 1, "max_concurrent_trials": 1, "trial_cpus": 0.25})
    config = parse_tune(raw)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_search(prepare(config, tmp), emit=lambda line: None)
            trials = pd.read_csv(Path(tmp) / TRIALS).sort_values("started_at").reset_index(drop=True)
    finally:
        ray.shutdown()
    actor = outcome.actors[0]
    load = actor["load_seconds"]
    print(f"model load (1 actor, {a.model}, once for the search): {load:.2f} s")
    print("trial  start→first scored batch (s)  of which the actor computing it (s)  the rest (s)")
    for i, t in trials.iterrows():
        compute = actor["busy"][t["trial_id"]]   # one batch per trial: its compute
        print(f"{i + 1:5d}  {t['first_batch_s']:29.3f}  {compute:36.3f}  {t['first_batch_s'] - compute:12.3f}")
    later = trials.iloc[1:]
    median = statistics.median(later["first_batch_s"])
    rest = statistics.median(later["first_batch_s"] - later["trial_id"].map(actor["busy"]))
    print(f"trials 2..{len(trials)}: median start→first batch {median:.3f} s (max {later['first_batch_s'].max():.3f}), "
          f"of which {rest:.3f} s is not the actor's compute")
    print(f"ratio: {load / median:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
