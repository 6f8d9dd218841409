"""The noise-calibration job on Ray: the sampled agents through a pool of model actors.

Each actor loads the engine, the vector library and the preset once (refusing a library built
for another model) and turns a batch of respondents into calibration rows
(raysim.identity.noise_calibration); the driver combines the rows and writes ``calibration.csv``
(the rows), ``calibration.json`` and ``calibration.md`` (sensitivity, σ, counts, probe σ, model)
atomically into the output directory. The sample is small (tens of agents), so it is built on
the driver and handed to Ray Data as a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..engine.loading import ModelSpec
from ..identity.agents import load_agents, load_setup
from ..identity.injection import load_preset
from ..identity.noise_calibration import PROBE_SIGMA, SIGMA_CAP, CalibrationResult, calibration_rows, combine
from ..identity.library import embedded_library_path, load_library
from ..atomic import write_atomic
from ..survey.codebook import Codebook
from ..survey.population import write_json_atomic
from ..survey.sampling import questions_evenly
from .progress import log
from .session import ray_session

CSV, JSON, MD = "calibration.csv", "calibration.json", "calibration.md"


@dataclass(frozen=True)
class CalibrationWork:
    """What every actor needs (small and picklable: it goes to every actor)."""

    model: ModelSpec
    library: str
    preset: str
    codebook: Codebook
    qids: tuple[str, ...]
    probe_sigma: float = PROBE_SIGMA
    seed: int = 0
    language: str | None = None
    noise_scope: str = "respondent"
    threads: int = 1


class CalibrationActor:
    """One engine replica (with its library and preset) computing calibration rows."""

    def __init__(self, work: CalibrationWork) -> None:
        import torch

        torch.set_num_threads(work.threads)   # actors share a node's cores (see pipeline.actor)
        self.work = work
        self.engine, self.library, self.preset = load_setup(work.model, work.library, work.preset)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        w = self.work
        return calibration_rows(self.engine, self.library, self.preset, batch, w.codebook, list(w.qids),
                                w.probe_sigma, w.seed, w.language, w.noise_scope)


def calibrate(agents: pd.DataFrame, work: CalibrationWork, *, actors: int = 1, num_cpus: float = 0.5,
              num_gpus: float = 0.0, batch_size: int = 4, emit: Callable[[str], None] = log) -> CalibrationResult:
    """Calibration rows for ``agents`` from a pool of ``actors`` model actors, combined."""
    import ray

    if actors < 1 or batch_size < 1:
        raise ValueError(f"actors and batch_size must be >= 1, got {actors}, {batch_size}")
    # One block per batch, made on the driver: a repartition task would need a CPU that a pool
    # sized to the node's CPUs leaves to nobody (the dataset would wait forever).
    ds = ray.data.from_pandas([agents.iloc[i: i + batch_size] for i in range(0, len(agents), batch_size)])
    ds = ds.map_batches(CalibrationActor, fn_constructor_kwargs={"work": work}, batch_size=batch_size,
                        batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=actors),
                        num_cpus=num_cpus, num_gpus=num_gpus)
    parts, done = [], 0
    for rows in ds.iter_batches(batch_size=None, batch_format="pandas"):
        parts.append(rows)
        done += rows["respondent_id"].nunique()
        emit(f"agents done: {done}/{len(agents)}")
    return combine(parts, work.probe_sigma)


def write_outputs(result: CalibrationResult, out: str | Path, meta: dict[str, Any]) -> Path:
    """``calibration.csv``, ``.json`` and ``.md`` in ``out``, each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {**meta, **result.summary()}
    write_atomic(out / CSV, lambda p: result.rows.to_csv(p, index=False))
    write_json_atomic(summary, out / JSON)
    per_q = result.rows.groupby("qid", sort=False).agg(n_options=("n_options", "first"), mean_shift=("shift", "mean"),
                                                      changed=("shift", lambda s: float((s > 0).mean())))
    lines = [f"# Noise calibration: {meta.get('model', '')}", "",
             f"- sensitivity (mean |Δrank| / options): **{result.sensitivity:.4f}**",
             f"- σ = max(0, {SIGMA_CAP} − sensitivity) = **{result.sigma:.4f}**",
             f"- probe σ: {result.probe_sigma:g}; agents: {result.n_agents}; questions: {result.n_questions}",
             *(f"- {k}: {v}" for k, v in meta.items() if k not in ("model", "qids")),
             "", "| question | options | mean shift | answers changed |", "|---|---:|---:|---:|"]
    lines += [f"| {q} | {r.n_options} | {r.mean_shift:.4f} | {r.changed:.0%} |" for q, r in per_q.iterrows()]
    write_atomic(out / MD, lambda p: p.write_text("\n".join(lines) + "\n"))
    return out


def run_calibration(model: ModelSpec, out: str | Path, *, library: str = "embedded", preset: str = "smollm2-135m",
                    population: str = "synthetic:2000", agents: int = 20, questions: int = 20,
                    probe_sigma: float = PROBE_SIGMA, seed: int = 0, language: str | None = None,
                    noise_scope: str = "respondent", actors: int = 1, num_cpus: float = 0.5, num_gpus: float = 0.0,
                    batch_size: int = 4, threads: int = 0,
                    emit: Callable[[str], None] = log) -> CalibrationResult:
    """The noise calibration of ``model`` with ``library`` and ``preset`` on ``agents`` respondents
    of ``population`` (a path, ``synthetic:N`` or ``cardata``) and ``questions`` questions spread
    over the categories (0: all), on Ray (a local instance, or the cluster RAY_ADDRESS names under
    ``ray job submit``); its outputs are written into ``out``. ``threads``: torch threads per actor
    (0: the actor's whole CPUs)."""
    # Everything that can be checked without the model is checked before Ray starts.
    sample, codebook = load_agents(population, agents, seed)
    qids = questions_evenly(codebook, questions)
    lib = load_library(library)
    load_preset(preset)
    work = CalibrationWork(model=model, library=library, preset=preset, codebook=codebook, qids=tuple(qids),
                           probe_sigma=probe_sigma, seed=seed, language=language, noise_scope=noise_scope,
                           threads=threads or max(1, int(num_cpus)))
    emit(f"calibration: {len(sample)} agents × {len(qids)} questions, probe σ {probe_sigma:g}, "
         f"model {model.name_or_path}, {actors} actor(s)")
    with ray_session():
        result = calibrate(sample, work, actors=actors, num_cpus=num_cpus, num_gpus=num_gpus,
                           batch_size=batch_size, emit=emit)
    library_path = embedded_library_path() if library in (None, "embedded") else Path(library)
    meta = {"model": lib.manifest.model, "model_fingerprint": lib.manifest.fingerprint,
            "model_source": model.name_or_path, "library": str(library_path), "preset": preset,
            "population": population, "seed": seed, "noise_scope": noise_scope, "language": language,
            "qids": list(qids)}
    write_outputs(result, out, meta)
    emit(f"sensitivity {result.sensitivity:.4f} → σ = {result.sigma:.4f} (set psii.sigma in the model preset); "
         f"wrote {out}/{CSV}, {JSON}, {MD}")
    return result
