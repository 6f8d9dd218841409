"""The model actor: one engine replica in a Ray Data actor pool (``map_batches`` with this
callable class).

Each batch's result rows are written by the actor itself as one atomic shard named by a hash of
the batch's respondent ids, and only a small manifest (respondent, country, shard) flows back:
result rows never travel through the object store to the driver. A batch retried after an actor
dies has the same respondents, so it rewrites the same shard: no row is lost or duplicated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.loading import ModelSpec
from ..methods.registry import get_method
from ..survey.codebook import load_codebook
from ..survey.population import COUNTRY, ID
from .results import write_results_shard

SHARD = "shard"


@dataclass(frozen=True)
class Work:
    """What every actor of a run needs (small and picklable: it goes to every actor)."""

    method: str
    model: ModelSpec
    codebook: str
    qids: tuple[str, ...]
    run_id: str
    config_hash: str
    results_dir: str
    threads: int = 1


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
        self.method = get_method(work.method)
        self.codebook = load_codebook(work.codebook)
        self.engine = None
        if self.method.needs_model:   # loaded once per actor, never per batch
            from ..engine.hf import HFEngine
            from ..engine.loading import load_model

            self.engine = HFEngine(load_model(work.model))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        w = self.work
        batch = batch.sort_values(ID, kind="stable").reset_index(drop=True)
        rows = self.method.run(self.engine, batch, self.codebook, list(w.qids), w.run_id, w.config_hash)
        name = shard_name(batch[ID].to_numpy())
        write_results_shard(rows, Path(w.results_dir), name)
        return pd.DataFrame({ID: batch[ID].to_numpy(dtype=np.int64), COUNTRY: batch[COUNTRY].astype(str), SHARD: name})
