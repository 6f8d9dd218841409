"""The simulation job: a run config → result shards in a run directory, on Ray Data.

The driver decides the sample from the (respondent_id, country) columns alone and subtracts
the respondents already complete in the run directory; Ray Data reads only the columns the
method needs from the population's Parquet shards, keeps the respondents to do, and streams
them in explicit batches through a pool of model actors (raysim.pipeline.actor), which write
the result shards. The population never reaches the driver, nor do result rows.

Why not ``Dataset.write_parquet``: its files are named per write task and a rerun or a retried
task may leave a second copy of rows; shards named by their respondents make a retry and a
resume idempotent, and a shard commits atomically (rename), so a partial file is never visible.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..survey.codebook import load_codebook
from ..survey.population import COUNTRY, ID, WEIGHT, dataset, read_population
from ..survey.sampling import sample_n, sample_per_country
from .actor import ModelActor, Task, Work
from .config import Actors, ConfigError, RunConfig
from .progress import CountryProgress, log
from .session import ray_connect
from ..runs.coverage import question_counts
from ..runs.lock import run_lock
from ..runs.metadata import recording
from ..runs.rundir import init_run_dir, results_dir, write_postprocess


class IncompleteRunError(RuntimeError):
    """A run whose result rows are missing or duplicated after the pipeline finished."""


@dataclass(frozen=True)
class Completeness:
    respondents: int     # expected
    questions: int
    complete: int        # expected respondents with a row for every question
    rows: int
    duplicates: int      # rows beyond the first per (method, respondent_id, qid)

    @property
    def ok(self) -> bool:
        return self.complete == self.respondents and self.duplicates == 0 and \
            self.rows == self.complete * self.questions


def sample(population: Path, config: RunConfig) -> pd.DataFrame:
    """The run's respondents (respondent_id, country, weight), from those three columns only.
    Respondents whose weights sum to zero could not be scored: refused before simulating."""
    people = read_population(population, columns=[ID, COUNTRY, WEIGHT])
    s = config.sampling
    if s.countries:
        unknown = sorted(set(s.countries) - set(people[COUNTRY]))
        if unknown:
            raise ValueError(f"sampling.countries {unknown} have no respondents in {population}")
        people = people[people[COUNTRY].isin(s.countries)]
    if s.n is not None:
        chosen = sample_n(people, s.n, s.seed)
    elif s.per_country is None:
        chosen = people.sort_values([COUNTRY, ID], kind="stable").reset_index(drop=True)
    else:
        chosen = sample_per_country(people, s.per_country, s.seed)
    if not chosen[WEIGHT].sum() > 0:
        raise ConfigError(f"the {len(chosen)} sampled respondents' weights sum to zero (population "
                          f"{config.population.to_mapping()}): nothing could be scored")
    return chosen


def complete_respondents(run_dir: Path, n_questions: int) -> set[int]:
    counts = question_counts(results_dir(run_dir))
    return set(counts.loc[counts["qids"] == n_questions, ID].astype(np.int64))


def check(run_dir: Path, expected: pd.Series, n_questions: int) -> Completeness:
    """Uniqueness of (method, respondent_id, qid) and completeness of the expected respondents."""
    counts = question_counts(results_dir(run_dir))
    complete = counts[(counts["qids"] == n_questions) & counts[ID].isin(expected)]
    return Completeness(respondents=int(expected.nunique()), questions=n_questions,
                        complete=int(complete[ID].nunique()), rows=int(counts["rows"].sum()),
                        duplicates=int((counts["rows"] - counts["qids"]).sum()))


def _keep(batch: pa.Table, ids: np.ndarray) -> pa.Table:
    return batch.filter(pc.is_in(batch[ID], value_set=pa.array(ids)))


def _remove_partial_writes(run_dir: Path) -> None:
    """Temporary files of writers that died (never visible as shards); called when no actor runs."""
    for tmp in results_dir(run_dir).glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


def check_resources(actors: Actors) -> None:
    """Refuse a pool that leaves Ray Data no whole CPU: its read tasks (1 CPU each) would wait
    forever behind the actors and the run would hang."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    claimed = actors.number * actors.num_cpus
    if total - claimed < 1:
        raise ConfigError(f"actors claim {claimed:g} of the cluster's {total:g} CPUs ({actors.number} × num_cpus "
                          f"{actors.num_cpus:g}): Ray Data's read tasks need one free CPU; lower actors.num_cpus "
                          f"(fractions are fine: torch uses max(1, int(num_cpus)) threads per actor)")


def _shared(runs: list[tuple[RunConfig, Path]]) -> RunConfig:
    """The first config, after checking that all runs of one pass share what the pass shares."""
    first, first_dir = runs[0]
    for config, run_dir in runs[1:]:
        for what, get in (("population", lambda c, d: c.population_path(d)), ("sampling", lambda c, d: c.sampling),
                          ("questions", lambda c, d: c.questions), ("actors", lambda c, d: c.actors)):
            if get(config, run_dir) != get(first, first_dir):
                raise ValueError(f"runs of one pass must share their {what}: {run_dir.name} differs from {first_dir.name}")
        if config.spec.needs_model and first.spec.needs_model and (config.model, config.engine) != (first.model, first.engine):
            raise ValueError(f"runs of one pass must share their model and engine: {run_dir.name} differs "
                             f"from {first_dir.name}")
    return first


def _task(config: RunConfig, run_dir: Path, h: str, todo: np.ndarray) -> Task:
    return Task(method=config.spec, run_id=run_dir.name, config_hash=h, results_dir=str(results_dir(run_dir)),
                todo=np.sort(todo), answer=config.answer, seed=config.sampling.seed,
                resources=config.resource_locations())


def run(config: RunConfig, run_dir: str | Path, *, limit: int | None = None,
        emit: Callable[[str], None] = log) -> Completeness:
    """Simulate the config's respondents into ``run_dir``, skipping those already complete.
    ``limit`` stops after that many more respondents (a smoke test; rerun to finish). Raises
    IncompleteRunError if, at the end, rows are duplicated or (without a limit) missing."""
    return run_many([(config, Path(run_dir))], limit=limit, emit=emit)[0]


def run_many(runs: list[tuple[RunConfig, Path]], *, limit: int | None = None,
             emit: Callable[[str], None] = log) -> list[Completeness]:
    """Several runs (methods) over the same respondents in one pass: the population is read once
    and each actor loads the model once for all of them. Each run keeps its own directory, config
    hash and resumption; a respondent goes through the pass if any run still lacks it, and each
    method answers only for the runs that lack it.

    Each run directory is locked for the pass (a second run into it is refused), and one this
    call created is removed again if the pass fails before writing a result."""
    runs = [(config, Path(run_dir).resolve()) for config, run_dir in runs]
    new = [run_dir for _, run_dir in runs if not run_dir.exists()]
    with ExitStack() as locks:
        for _, run_dir in runs:
            locks.enter_context(run_lock(run_dir))
        facts = [locks.enter_context(recording(run_dir, "run")) for _, run_dir in runs]
        try:
            return _run_locked(runs, limit, emit, facts)
        except BaseException:
            for run_dir in new:
                if not any(results_dir(run_dir).glob("*.parquet")):
                    shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _run_locked(runs: list[tuple[RunConfig, Path]], limit: int | None, emit: Callable[[str], None],
                facts: list[dict]) -> list[Completeness]:
    """``facts[k]``: what run k's run.json records of this pass (raysim.runs.metadata)."""
    import ray

    config0 = _shared(runs)
    for config, _ in runs:
        config.check_model()
    population = config0.population.ensure(runs[0][1])
    resolved = [config.resolved(run_dir) for config, run_dir in runs]
    chosen = sample(population, config0)   # unknown countries fail before a directory is claimed
    hashes = [init_run_dir(run_dir, r) for (_, run_dir), r in zip(runs, resolved)]
    for config, run_dir in runs:
        if config.postprocess:
            write_postprocess(run_dir, list(config.postprocess))
    for _, run_dir in runs:
        _remove_partial_writes(run_dir)   # ours to remove: the lock says no other run writes here
    qids = resolved[0]["questions"]
    codebook = load_codebook(resolved[0]["codebook"])

    done = [chosen[ID].isin(complete_respondents(run_dir, len(qids))) for _, run_dir in runs]
    all_done = np.logical_and.reduce([d.to_numpy() for d in done])
    todo = chosen[~all_done].head(limit) if limit is not None else chosen[~all_done]
    todo_ids = todo[ID].to_numpy(dtype=np.int64)
    tasks = []
    for (config, run_dir), h, d, fact in zip(runs, hashes, done, facts):
        mine = np.intersect1d(chosen.loc[~d, ID].to_numpy(dtype=np.int64), todo_ids)
        fact.update(rows=len(mine) * len(qids), respondents=len(mine), method=config.spec.name, config_hash=h)
        emit(f"run {run_dir.name} ({h}): {config.spec.name} ({config.answer}), {len(chosen)} respondents × "
             f"{len(qids)} questions; {int(d.sum())} already complete, {len(mine)} to do")
        if len(mine):
            tasks.append(_task(config, run_dir, h, mine))

    if tasks:
        ray_connect()
        a = config0.actors
        check_resources(a)
        work = Work(model=config0.model, engine=config0.engine, codebook=codebook.name, qids=tuple(qids), tasks=tuple(tasks),
                    threads=max(1, int(a.num_cpus)))
        needed = list(dict.fromkeys(c for t in tasks for c in t.method.columns(codebook)))
        ds = ray.data.read_parquet(dataset(population).files).select_columns(needed)
        ds = ds.map_batches(_keep, fn_kwargs={"ids": todo_ids}, batch_format="pyarrow")
        # One block per batch (streaming, no shuffle): a block is the unit an actor task takes,
        # so this spreads the batches over the whole pool.
        ds = ds.repartition(target_num_rows_per_block=a.batch_size)
        ds = ds.map_batches(
            ModelActor, fn_constructor_kwargs={"work": work}, batch_size=a.batch_size, batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=a.number), num_cpus=a.num_cpus, num_gpus=a.num_gpus)
        # Ray Data's actor pools restart a dead actor and retry its tasks without limit
        # (max_restarts=-1, max_task_retries=-1 by default); a retried batch rewrites its shards.
        progress = CountryProgress(total=chosen[COUNTRY].value_counts().to_dict(),
                                   done=chosen[all_done][COUNTRY].value_counts().to_dict(), emit=emit)
        try:
            for manifest in ds.iter_batches(batch_size=None, batch_format="pandas"):
                progress.update(manifest)
        finally:
            progress.close()
        if not progress.finished:   # a limited run: the last count was not logged
            emit(progress.line())
        for _, run_dir in runs:
            _remove_partial_writes(run_dir)

    results = []
    for _, run_dir in runs:
        result = check(run_dir, chosen[ID], len(qids))
        if result.duplicates or (limit is None and not result.ok):
            raise IncompleteRunError(f"{run_dir}: {result}")
        emit(f"results: {result.rows} rows, {result.complete}/{result.respondents} respondents complete, "
             f"no duplicates, in {results_dir(run_dir)}")
        results.append(result)
    return results
