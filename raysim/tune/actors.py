"""The model actors a search shares: each loads one replica once (the pipeline's ``ModelActor``)
and answers batches of respondents for any trial, with that trial's PSII preset. Trials are
light drivers: they send respondents and a preset, never load a model."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from ..identity.injection import PsiiPreset
from ..pipeline.actor import ModelActor, Task, Work
from ..pipeline.config import Actors, RunConfig
from .config import TuneError


class ScoringActor:
    """One replica for every trial: ``answer`` builds the trial's plans on the loaded model."""

    def __init__(self, work: Work) -> None:
        started = time.perf_counter()
        self.replica = ModelActor(work)
        self.load_seconds = time.perf_counter() - started
        self.served: Counter[str] = Counter()
        self.busy: Counter[str] = Counter()

    def answer(self, respondents: pd.DataFrame, preset: PsiiPreset, run_id: str) -> pd.DataFrame:
        started = time.perf_counter()
        task = self.replica.work.tasks[0]
        rows = self.replica.simulator(0, preset=preset)(respondents.reset_index(drop=True), run_id, task.config_hash)
        self.served[run_id] += len(respondents)
        self.busy[run_id] += time.perf_counter() - started
        return rows

    def stats(self) -> dict:
        """Load time, and respondents answered and seconds spent per run (trial): a search's
        evidence that each actor loaded once and served every trial."""
        return {"load_seconds": self.load_seconds, "served": dict(self.served), "busy": dict(self.busy)}


def pool_work(run: RunConfig, qids: list[str], codebook: str, search_id: str) -> Work:
    """The one task every actor of a search runs (rows go back to the trials, not to a run dir)."""
    task = Task(method=run.spec, run_id=search_id, config_hash=search_id, results_dir="",
                todo=np.empty(0, np.int64), answer=run.answer, seed=run.sampling.seed,
                resources=run.resource_locations())
    return Work(model=run.model, engine=run.engine, codebook=codebook, qids=tuple(qids), tasks=(task,),
                threads=max(1, int(run.actors.num_cpus)))


def check_cpus(actors: Actors, trials: int, trial_cpus: float) -> None:
    """Refuse a search whose actors and concurrent trials claim more CPUs than the cluster has:
    the trials would wait forever for a CPU."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    claimed = actors.number * actors.num_cpus + trials * trial_cpus
    if claimed > total:
        raise TuneError(f"actors ({actors.number} × {actors.num_cpus:g} CPU) and {trials} concurrent trials "
                          f"(× {trial_cpus:g} CPU) claim {claimed:g} of the cluster's {total:g} CPUs: lower "
                          "actors.num_cpus, search.trial_cpus or search.max_concurrent_trials")


@contextmanager
def shared_pool(work: Work, actors: Actors) -> Iterator[tuple[list, list[float]]]:
    """The actors, loaded (waits for every load), and their load times in seconds; killed on
    exit. Tune keeps references to them (the trainable's parameters), so they would otherwise
    outlive the search and hold their CPUs from whatever runs next in the session."""
    import ray

    remote = ray.remote(ScoringActor).options(num_cpus=actors.num_cpus, num_gpus=actors.num_gpus,
                                              max_restarts=1, max_task_retries=1)
    handles = [remote.remote(work) for _ in range(actors.number)]
    try:
        yield handles, [s["load_seconds"] for s in ray.get([h.stats.remote() for h in handles])]
    finally:
        for h in handles:
            ray.kill(h)


@dataclass(frozen=True)
class Answered:
    rows: pd.DataFrame
    first_seconds: float
    """perf_counter() when the first batch came back."""


def submit(actors: list, respondents: pd.DataFrame, preset: PsiiPreset, run_id: str, batch_size: int,
           start: int = 0) -> list:
    """``respondents`` under ``preset`` in batches spread over the pool from actor ``start`` on
    (trials start at different actors, so concurrent ones share the load): the result refs."""
    return [actors[(start + i) % len(actors)].answer.remote(respondents.iloc[lo:lo + batch_size], preset, run_id)
            for i, lo in enumerate(range(0, len(respondents), batch_size))]


def answer_on_pool(actors: list, respondents: pd.DataFrame, preset: PsiiPreset, run_id: str,
                   batch_size: int, start: int = 0) -> Answered:
    """Result rows of ``respondents`` under ``preset`` (``submit``, then wait)."""
    import ray

    refs = submit(actors, respondents, preset, run_id, batch_size, start)
    ray.wait(refs, num_returns=1)
    first = time.perf_counter()
    return Answered(pd.concat(ray.get(refs), ignore_index=True), first)
