"""A Ray Tune search over the weights of a prompt mixture, beside SLSQP's: Optuna proposes one
value in [0, 1] per prompt, normalised onto the simplex, and a trial reports the same objective
SLSQP minimises. The prompts' distributions are exact (logprob mode) and were asked once on the
fit's model actors, so trials are light CPU tasks that load no model."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..methods.mixture.weights import objective

METRIC = "objective"


def _simplex(config: dict[str, float], n: int) -> np.ndarray:
    u = np.array([config[f"u{k}"] for k in range(n)], dtype=np.float64)
    return u / u.sum() if u.sum() > 0 else np.full(n, 1.0 / n)


def _trial(config: dict[str, float], *, components: list[np.ndarray], observed: list[np.ndarray]) -> None:
    from ray import tune

    tune.report({METRIC: objective(components, observed, _simplex(config, components[0].shape[0]))})


def tune_weights(components: list[np.ndarray], observed: list[np.ndarray], samples: int, seed: int,
                 storage: str | Path | None = None) -> tuple[np.ndarray, float]:
    """The best weights of ``samples`` trials and their objective (``storage``: Tune's
    experiment directory; a temporary one by default)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    n = components[0].shape[0]
    if n == 1:
        return np.ones(1), objective(components, observed, np.ones(1))
    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trial, components=components, observed=observed), {"cpu": 0.25}),
            param_space={f"u{k}": tune.uniform(0.0, 1.0) for k in range(n)},
            tune_config=tune.TuneConfig(metric=METRIC, mode="min", num_samples=samples,
                                        search_alg=OptunaSearch(metric=METRIC, mode="min", seed=seed),
                                        max_concurrent_trials=1),
            run_config=tune.RunConfig(name="mixture_weights", storage_path=str(storage or tmp), verbose=0))
        with contextlib.redirect_stdout(sys.stderr):   # Tune's banners: the log file, not the command's output
            best = tuner.fit().get_best_result(metric=METRIC, mode="min")
    w = _simplex(best.config, n)
    return w, objective(components, observed, w)
