"""The Tune search: Optuna suggests presets, ASHA stops poor trials early, and every trial runs
on the same model actors (loaded once, before the first trial).

A trial turns its parameters into a PSII preset, sends the validation respondents (in
``search.rungs`` fixed chunks) with that preset to the shared actors, and after each chunk
reports the objective over the respondents answered so far; ASHA compares trials at those
rungs. The best trial that answered every validation respondent is then scored on the held-out
respondents beside the untuned preset, and written as DIR/best_preset.yaml (a preset file that
run configs accept as ``preset:``). DIR/search is Tune's experiment: rerunning into DIR
resumes it (finished trials are kept).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..runs.rundir import SEARCH_TRIALS as TRIALS
from ..atomic import write_atomic
from ..identity.injection import PsiiPreset
from ..pipeline.progress import log
from ..survey.codebook import load_codebook
from .actors import answer_on_pool, check_cpus, pool_work, shared_pool
from .config import Objective, TuneError
from .data import Prepared
from .objective import evaluate
from .progress import TrialProgress
from .output import Outcome, heldout_table, write_preset, write_summary
from .space import Range, SearchSpace

SEARCH_DIR = "search"
BEST = "best_preset.yaml"
METRIC = "objective"


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its parameters (sent once through the object store)."""

    space: SearchSpace
    base: PsiiPreset
    objective: Objective
    codebook: str
    answer: str
    rungs: int
    batch_size: int


def trial(params: dict[str, Any], *, actors: list, validation: pd.DataFrame, context: TrialContext) -> None:
    """A Tune function trainable: a light driver of the shared actors (loads no model)."""
    from ray import tune

    started, started_at = time.perf_counter(), time.time()
    trial_id = tune.get_context().get_trial_id()
    preset = context.space.preset(context.base, params)
    codebook = load_codebook(context.codebook)
    start = zlib.crc32(trial_id.encode()) % len(actors)
    parts, first_batch_s = [], None
    for rung, chunk in enumerate(np.array_split(np.arange(len(validation)), context.rungs), 1):
        answered = answer_on_pool(actors, validation.iloc[chunk], preset, trial_id, context.batch_size, start)
        if first_batch_s is None:
            first_batch_s = answered.first_seconds - started
        parts.append(answered.rows)
        seen = validation.iloc[: chunk[-1] + 1]
        ev = evaluate(pd.concat(parts, ignore_index=True), seen, codebook, context.objective, answer=context.answer)
        tune.report({**ev.metrics(), "rung": rung, "first_batch_s": first_batch_s, "started_at": started_at,
                     "trial_seconds": time.perf_counter() - started})


def _domain(r: Range):
    from ray import tune

    if r.integer:
        return tune.randint(int(r.low), int(r.high) + 1)   # upper bound exclusive
    return tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)


def _trials_table(results, parameters: list[str], n_validation: int) -> pd.DataFrame:
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append({"trial_id": m.get("trial_id", Path(r.path).name), "status": "error" if r.error else "ok",
                     "rungs": m.get("rung", 0), "respondents": m.get("respondents", 0),
                     "complete": m.get("respondents", 0) == n_validation,
                     **{k: m.get(k, np.nan) for k in (METRIC, "kl", "ed", "first_batch_s", "trial_seconds", "started_at")},
                     **{p: (r.config or {}).get(p, np.nan) for p in parameters}})
    table = pd.DataFrame(rows)
    return table.sort_values(["complete", METRIC], ascending=[False, True], kind="stable").reset_index(drop=True)


def run_search(prepared: Prepared, *, emit: Callable[[str], None] = log) -> Outcome:
    """The search into ``prepared.out``, on actors loaded for it and freed afterwards."""
    config = prepared.config
    parameters = config.space.parameters(prepared.base, config.attributes())
    check_cpus(config.run.actors, config.concurrency, config.search.trial_cpus)
    work = pool_work(config.run, prepared.qids, prepared.codebook.name, prepared.search_id)
    with shared_pool(work, config.run.actors) as (actors, loads):
        emit(f"{len(actors)} model actors loaded in {', '.join(f'{t:.1f}' for t in loads)} s; searching "
             f"{list(parameters)} with {config.search.num_samples} trials on {len(prepared.validation)} "
             f"validation respondents × {len(prepared.qids)} questions")
        return _search(prepared, parameters, actors, emit)


def _search(prepared: Prepared, parameters: dict[str, Range], actors: list, emit: Callable[[str], None]) -> Outcome:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    config, out = prepared.config, prepared.out
    s, run = config.search, config.run
    context = TrialContext(config.space, prepared.base, config.objective, prepared.codebook.name, run.answer,
                           s.rungs, run.actors.batch_size)
    trainable = tune.with_resources(
        tune.with_parameters(trial, actors=actors, validation=prepared.validation, context=context),
        {"cpu": s.trial_cpus})
    path = out / SEARCH_DIR
    if tune.Tuner.can_restore(path):
        emit(f"resuming the search in {path}")
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        start = config.space.point(prepared.base, parameters)
        searcher = OptunaSearch(metric=METRIC, mode="min", seed=s.seed, points_to_evaluate=[start] if start else None)
        tuner = tune.Tuner(
            trainable, param_space={name: _domain(r) for name, r in parameters.items()},
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="min", search_alg=searcher, num_samples=s.num_samples,
                max_concurrent_trials=config.concurrency,
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=s.rungs, grace_period=1,
                                        reduction_factor=s.reduction_factor)),
            run_config=tune.RunConfig(name=SEARCH_DIR, storage_path=str(out), verbose=0,
                                      callbacks=[TrialProgress(s.num_samples, METRIC, s.rungs, emit)]))
    results = tuner.fit()
    table = _trials_table(results, list(parameters), len(prepared.validation))
    write_atomic(out / TRIALS, lambda tmp: table.to_csv(tmp, index=False))
    complete = table[table["complete"] & table[METRIC].notna()]
    if complete.empty:
        raise TuneError(f"no trial answered every validation respondent (see {out / TRIALS} and {path})")
    best = complete.iloc[0]
    tuned = config.space.preset(prepared.base, {p: best[p] for p in parameters})
    emit(f"{len(table)} trials, {int((~table['complete']).sum())} stopped early; best {best['trial_id']}: "
         f"{METRIC} {best[METRIC]:.4f} (kl {best['kl']:.4f}, ed {best['ed']:.4f}); scoring held-out respondents")
    heldout = heldout_table(actors, prepared, {"untuned": prepared.base, "tuned": tuned}, out)
    write_preset(out / BEST, tuned, prepared, source=f"trial {best['trial_id']} of {len(table)}",
                 validation={k: float(best[k]) for k in (METRIC, "kl", "ed")}, heldout=heldout)
    stats = ray.get([a.stats.remote() for a in actors])
    served = {t for x in stats for t in x["served"] if "-heldout-" not in t}
    loads = ", ".join(f"{x['load_seconds']:.1f}" for x in stats)
    summary = write_summary(out, prepared, heldout, title="Tune search",
                         lines=[f"trials: {len(table)} ({int((~table['complete']).sum())} stopped early by ASHA), "
                                f"table: {TRIALS}",
                                f"best: {best['trial_id']}, validation {METRIC} {best[METRIC]:.4f}",
                                f"model actors: {len(stats)}, each loaded once ({loads} s), served {len(served)} "
                                "trials",
                                f"preset: {BEST}"])
    return Outcome(summary, stats)
