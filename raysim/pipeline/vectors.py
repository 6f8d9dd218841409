"""The vector-build job: a dataset's units through a pool of model actors, resumable.

Work directory ``<LIB>.work`` (next to the library being built):

    config.yaml          what the parts were made with (model, dataset hash, generation); a rerun
                         with anything else is refused, so parts never mix
    results/<unit>.safetensors   one atomic part per unit: the summed response means [L+1, H],
                         the response count and texts, and the model's fingerprint

A rerun skips units whose part exists. When every part is there, the driver assembles the
library (raysim.identity.build), adds the language vectors (trained in one Ray task where a
GPU is, if asked) and writes it atomically; the work directory is then removed.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from ..atomic import write_atomic

from ..engine.backends import EngineSpec, make_engine
from ..engine.loading import ModelSpec
from ..identity.build import BuildParams, Unit, UnitResult, assemble, run_units, units
from ..identity.dataset import DemographicDataset, dataset_hash
from ..identity.library import VectorLibrary
from .progress import Progress, log
from ..runs.lock import run_lock
from ..runs.rundir import init_run_dir, results_dir

SUFFIX = ".safetensors"


@dataclass(frozen=True)
class ModelInfo:
    model: str
    fingerprint: str
    n_layers: int
    hidden_size: int
    dtype: str


@dataclass(frozen=True)
class BuildWork:
    """What every actor needs (small, picklable)."""

    model: ModelSpec
    params: BuildParams
    parts_dir: str
    threads: int = 1
    generate_rows: int = 96


def save_part(result: UnitResult, info: ModelInfo, parts_dir: Path) -> Path:
    meta = {"unit": result.unit, "attribute": result.attribute, "value": str(result.value),
            "count": str(result.count), "texts": json.dumps(result.texts), "model": json.dumps(asdict(info))}
    tensors = {"sum": np.ascontiguousarray(result.sum)}
    return write_atomic(parts_dir / f"{result.unit}{SUFFIX}", lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_part(path: Path) -> tuple[UnitResult, ModelInfo]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    total = load_file(str(path))["sum"]
    result = UnitResult(meta["unit"], meta["attribute"], int(meta["value"]), total, int(meta["count"]),
                        json.loads(meta["texts"]))
    return result, ModelInfo(**json.loads(meta["model"]))


class VectorActor:
    """One engine replica answering units and writing their parts."""

    def __init__(self, work: BuildWork) -> None:
        import torch

        torch.set_num_threads(work.threads)   # actors share a node's cores (see pipeline.actor)
        self.work = work
        engine = make_engine(work.model, EngineSpec("hf", {"generate_rows": work.generate_rows}))
        self.engine = engine
        self.info = ModelInfo(engine.name, engine.fingerprint, engine.n_layers, engine.hidden_size, work.model.dtype)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch_units = [Unit(row["attribute"], int(row["value"]), int(row["index"]), row["instruction"],
                            tuple(row["questions"])) for row in batch.to_dict("records")]
        results = run_units(self.engine, batch_units, self.work.params, self.info.n_layers)
        for result in results:
            save_part(result, self.info, Path(self.work.parts_dir))
        return pd.DataFrame({"unit": [r.unit for r in results]})


def work_dir(library: Path) -> Path:
    return library.with_name(library.name + ".work")


def pool_size(actors: int | None, num_cpus: float | None, num_gpus: float) -> tuple[int, float]:
    """Fill in what the user left open from the cluster: one actor per GPU share on GPUs; on CPUs
    two actors sharing 90% of the CPUs (the rest keeps Ray Data's own tasks running)."""
    import ray

    resources = ray.cluster_resources()
    if num_gpus > 0:
        return actors or max(1, int(resources.get("GPU", 0) // num_gpus)), num_cpus or 1.0
    actors = actors or 2
    return actors, num_cpus or round(0.9 * resources.get("CPU", 1) / actors, 2)


def build_library(dataset: DemographicDataset, model: ModelSpec, out: str | Path, *,
                  params: BuildParams = BuildParams(), actors: int | None = None, num_cpus: float | None = None,
                  num_gpus: float = 0.0, batch_size: int = 8, limit: int | None = None,
                  language_step: Callable[[VectorLibrary], VectorLibrary] | None = None,
                  emit: Callable[[str], None] = log) -> VectorLibrary | None:
    """Build (or resume building) the library at ``out``. ``limit`` stops after that many more
    units and returns None (rerun to finish). ``language_step`` adds language vectors before the
    library is written."""
    import ray

    out = Path(out).resolve()
    work = work_dir(out)
    with run_lock(work):   # one build at a time into a library
        init_run_dir(work, {"model": model.to_dict(), "dataset": dataset_hash(dataset), "params": asdict(params)})
        parts = results_dir(work)
        for tmp in parts.glob(".*.tmp-*"):   # writers that died mid-write
            tmp.unlink(missing_ok=True)
        all_units = units(dataset)
        done = {p.name.removesuffix(SUFFIX) for p in parts.glob(f"*{SUFFIX}")}
        todo = [u for u in all_units if u.name not in done]
        if limit is not None:
            todo = todo[:limit]
        emit(f"vector build → {out}: {len(all_units)} units ({len(done)} done, {len(todo)} to do), "
             f"model {model.name_or_path}")
        if todo:
            actors, num_cpus = pool_size(actors, num_cpus, num_gpus)
            emit(f"{actors} model actor(s) × {num_cpus:g} CPU, {num_gpus:g} GPU")
            bw = BuildWork(model, params, str(parts), threads=max(1, int(num_cpus)))
            ds = ray.data.from_items([asdict(u) for u in todo], override_num_blocks=-(-len(todo) // batch_size))
            ds = ds.map_batches(VectorActor, fn_constructor_kwargs={"work": bw}, batch_size=batch_size,
                                batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=actors),
                                num_cpus=num_cpus, num_gpus=num_gpus)
            progress = Progress(len(all_units), initial=len(done), unit="unit", desc="units", emit=emit, every_s=0)
            try:
                for manifest in ds.iter_batches(batch_size=None, batch_format="pandas"):
                    progress.update(len(manifest))
            finally:
                progress.close()
        if limit is not None and len(done) + len(todo) < len(all_units):
            return None

        results, infos = [], set()
        for u in all_units:
            result, info = load_part(parts / f"{u.name}{SUFFIX}")
            results.append(result)
            infos.add(info)
        if len(infos) != 1:
            raise RuntimeError(f"{work}: parts were made by different models {sorted(i.fingerprint for i in infos)}")
        info = infos.pop()
        library = assemble(dataset, results, model=info.model, fingerprint=info.fingerprint, n_layers=info.n_layers,
                           hidden_size=info.hidden_size, dtype=info.dtype, params=params)
        if language_step is not None:
            library = language_step(library)
        library.save(out)
        shutil.rmtree(work, ignore_errors=True)
        emit(f"library written: {out} ({len(library.attributes)} attributes, "
             f"{sum(map(len, library.attributes.values()))} values, languages {library.languages or 'none'})")
        return library


def _train_languages(model: ModelSpec, languages: list[str], corpus: dict[str, list[str]] | None,
                     threads: int) -> tuple[str, dict[str, np.ndarray], dict]:
    import torch

    from ..identity.language import cross_language, load_corpus, summary, train_all

    torch.set_num_threads(threads)
    engine = make_engine(model)   # the HF engine: training needs gradients through the model
    splits = load_corpus(languages, corpus)
    vectors = train_all(engine, splits, languages)
    report = {"training": vectors[languages[0]].parameters,
              "heldout": summary(vectors).drop(columns=["norm"]).round(4).to_dict(orient="index"),
              "cross_language_change": cross_language(engine, vectors, splits).round(4).to_dict(orient="index")}
    return engine.fingerprint, {k: v.vector for k, v in vectors.items()}, report


def language_step(model: ModelSpec, languages: list[str], corpus: dict[str, list[str]] | None = None, *,
                  num_cpus: float | None = None, num_gpus: float = 0.0,
                  emit: Callable[[str], None] = log) -> Callable[[VectorLibrary], VectorLibrary]:
    """A build step training the language vectors in one Ray task (where the model fits) and
    adding them, with their held-out report, to the library."""
    import ray

    def step(library: VectorLibrary) -> VectorLibrary:
        # One task, after the actor pool is gone: on CPUs it may take what the pool had.
        cpus = num_cpus or (1.0 if num_gpus else round(0.9 * ray.cluster_resources().get("CPU", 1), 2))
        emit(f"training language vectors {languages}")
        task = ray.remote(num_cpus=cpus, num_gpus=num_gpus)(_train_languages)
        fingerprint, vectors, report = ray.get(task.remote(model, languages, corpus, max(1, math.ceil(cpus))))
        if fingerprint != library.manifest.fingerprint:
            raise RuntimeError(f"language vectors were trained on another model ({fingerprint}) than the "
                               f"library's ({library.manifest.fingerprint})")
        for code, row in report["heldout"].items():
            emit(f"  {code}: held-out loss {row['heldout_before']:.4f} → {row['heldout_after']:.4f} nats/token")
        return library.with_languages(vectors, report)

    return step
