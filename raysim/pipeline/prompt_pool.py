"""The model actors of a mixture fit: each holds one replica of the run's model (and of the
crafter, when another model writes the prompts) and answers batches of candidate prompts
(their option distributions) or crafting turns. The search on the driver sees one
``PromptBackend``: lists are cut into batches spread over the pool and gathered in order."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np

from ..engine.backends import EngineSpec
from ..engine.loading import ModelSpec
from ..methods.mixture.backend import EngineBackend
from ..survey.codebook import load_codebook
from .config import Actors
from .session import ray_connect


class PromptActor:
    def __init__(self, model: ModelSpec, engine: EngineSpec, crafter: ModelSpec | None, codebook: str,
                 qids: tuple[str, ...], threads: int) -> None:
        import torch

        from ..engine.backends import make_engine

        torch.set_num_threads(threads)   # actors share the node's cores (see ModelActor)
        answering = make_engine(model, engine)
        self.backend = EngineBackend(answering, load_codebook(codebook), qids,
                                     make_engine(crafter, engine) if crafter else None)

    def item_distributions(self, prompts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        return self.backend.item_distributions(prompts)

    def complete(self, turns: Sequence[tuple[str, str, int]]) -> list[str]:
        return self.backend.complete(turns)


class PoolBackend:
    def __init__(self, actors: list, batch_size: int) -> None:
        self.actors, self.batch_size = actors, batch_size

    def _spread(self, method: str, items: Sequence) -> list:
        import ray

        refs = [getattr(self.actors[i % len(self.actors)], method).remote(items[lo:lo + self.batch_size])
                for i, lo in enumerate(range(0, len(items), self.batch_size))]
        return [x for part in ray.get(refs) for x in part]

    def item_distributions(self, prompts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        return self._spread("item_distributions", list(prompts))

    def complete(self, turns: Sequence[tuple[str, str, int]]) -> list[str]:
        return self._spread("complete", list(turns))


def crafter_spec(model: ModelSpec, crafter: str | None) -> ModelSpec | None:
    """The crafter's model: ``crafter`` (a name or path) loaded like the run's model; None: the run's."""
    if crafter is None or crafter == model.name_or_path:
        return None
    return dataclasses.replace(model, name_or_path=crafter, random_init=None, n_layers=None, revision=None)


@contextmanager
def prompt_pool(model: ModelSpec, engine: EngineSpec, actors: Actors, codebook: str, qids: tuple[str, ...],
                crafter: str | None = None) -> Iterator[PoolBackend]:
    """The loaded pool as a PromptBackend; the actors are killed on exit."""
    import ray

    ray_connect()
    crafting = crafter_spec(model, crafter)
    if crafting is not None:
        crafting.check()
    remote = ray.remote(PromptActor).options(num_cpus=actors.num_cpus, num_gpus=actors.num_gpus,
                                             max_restarts=1, max_task_retries=1)
    handles = [remote.remote(model, engine, crafting, codebook, qids, max(1, int(actors.num_cpus)))
               for _ in range(actors.number)]
    try:
        yield PoolBackend(handles, actors.batch_size)
    finally:
        for h in handles:
            ray.kill(h)
