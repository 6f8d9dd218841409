"""The model actor: one engine replica in a Ray Data actor pool (``map_batches`` with this
callable class).

One pass may serve several methods (an experiment): the actor runs each method on the batch's
respondents that method still needs. Each method's rows of a batch are written by the actor
itself as one atomic shard in that method's run directory, named by a hash of the respondent ids,
and only a small manifest (respondent, country, shard) flows back: result rows never travel
through the object store to the driver. A batch retried after an actor dies has the same
respondents, so it rewrites the same shards: no row is lost or duplicated.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.backends import EngineSpec
from ..engine.loading import ModelSpec
from ..methods.resources import load_resource
from ..methods.simulator import Setup, Simulator
from ..methods.spec import MethodSpec
from ..survey.codebook import load_codebook
from ..survey.population import COUNTRY, ID
from ..runs.results import write_results_shard

SHARD = "shard"


@dataclass(frozen=True)
class Task:
    """One method's share of a pass: where its rows go and which respondents it still needs."""

    method: MethodSpec
    run_id: str
    config_hash: str
    results_dir: str
    todo: np.ndarray = field(compare=False)
    """Sorted respondent ids this method still needs (others in a batch are complete already)."""
    answer: str = "logprob"
    seed: int = 0
    resources: dict[str, str] = field(default_factory=dict, compare=False)
    """Where each resource the method's kind declared lies (raysim.methods.resources)."""


@dataclass(frozen=True)
class Work:
    """What every actor of a pass needs (picklable: it goes to every actor). Several methods
    share one pass over the population, and one model replica per actor."""

    model: ModelSpec
    codebook: str
    qids: tuple[str, ...]
    tasks: tuple[Task, ...]
    threads: int = 1
    engine: EngineSpec = EngineSpec()


def shard_name(respondent_ids: np.ndarray) -> str:
    """The shard of a set of respondents: the same set gives the same name, in any order."""
    ids = np.sort(np.asarray(respondent_ids, dtype=np.int64))
    return "part-" + hashlib.sha256(ids.tobytes()).hexdigest()[:20]


class ModelActor:
    def __init__(self, work: Work) -> None:
        import torch

        # Several actors share a node's cores: torch's default thread count oversubscribes them
        # and small matmuls slow down by orders of magnitude.
        torch.set_num_threads(work.threads)
        self.work = work
        self._loaded: dict[tuple[str, str], object] = {}
        codebook = load_codebook(work.codebook)
        # The cheap parts first: a bad resource fails before the model loads.
        setups = [self._setup(task, codebook) for task in work.tasks]
        self.engine = None
        if any(t.method.needs_model for t in work.tasks):   # loaded once per actor, never per batch
            from ..engine.backends import make_engine

            self.engine = make_engine(work.model, work.engine)
        self.setups = setups
        self.simulators = [self.simulator(i) for i in range(len(work.tasks))]

    def simulator(self, index: int, **resources: object) -> Simulator:
        """Task ``index``'s simulator on this replica, with some resources replaced (a Tune trial's
        preset), without loading anything again."""
        task, setup = self.work.tasks[index], self.setups[index]
        if resources:
            setup = dataclasses.replace(setup, resources={**setup.resources, **resources})
        return Simulator(task.method, self.engine if task.method.needs_model else None, setup)

    def _setup(self, task: Task, codebook) -> Setup:
        loaded = {name: self._once(name, location) for name, location in task.resources.items()}
        return Setup(codebook=codebook, qids=self.work.qids, answer=task.answer, seed=task.seed, resources=loaded)

    def _once(self, name: str, location: str):
        """Each resource loaded once per actor however many methods use it."""
        if (name, location) not in self._loaded:
            self._loaded[name, location] = load_resource(name, location)
        return self._loaded[name, location]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.sort_values(ID, kind="stable").reset_index(drop=True)
        ids = batch[ID].to_numpy(dtype=np.int64)
        for task, simulator in zip(self.work.tasks, self.simulators):
            mine = batch[np.isin(ids, task.todo, assume_unique=True)]
            if len(mine):
                rows = simulator(mine.reset_index(drop=True), task.run_id, task.config_hash)
                write_results_shard(rows, Path(task.results_dir), shard_name(mine[ID].to_numpy()))
        return pd.DataFrame({ID: ids, COUNTRY: batch[COUNTRY].astype(str), SHARD: shard_name(ids)})
