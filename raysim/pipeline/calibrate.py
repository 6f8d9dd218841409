"""The noise-calibration job on Ray: the sampled agents through a pool of model actors.

Each actor loads the engine, the vector library and the preset once (refusing a library built
for another model) and turns a batch of respondents into calibration rows
(raysim.identity.calibrate); the driver combines the rows and writes ``calibration.csv`` (the
rows), ``calibration.json`` and ``calibration.md`` (sensitivity, σ, counts, probe σ, model)
atomically into the output directory. The sample is small (tens of agents), so it is built on
the driver and handed to Ray Data as a frame.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..engine.loading import ModelSpec
from ..engine.plan import NOISE_SCOPES
from ..identity.calibrate import (PROBE_SIGMA, SIGMA_CAP, CalibrationResult, add_setup_arguments,
                                  calibration_rows, combine, load_agents, load_setup, model_spec)
from ..identity.injection import load_preset
from ..identity.library import embedded_library_path, load_library
from ..atomic import write_atomic
from ..survey.codebook import Codebook
from ..survey.population import write_json_atomic
from ..survey.sampling import questions_evenly
from .progress import log
from .simulate import ray_session

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_setup_arguments(p, agents=20)
    p.add_argument("--questions", type=int, default=20,
                   help="questions spread evenly over the categories (default 20; 0: all)")
    p.add_argument("--probe-sigma", type=float, default=PROBE_SIGMA,
                   help=f"noise σ the answers are probed with (default {PROBE_SIGMA}, the formula's cap)")
    p.add_argument("--noise-scope", default="respondent", choices=list(NOISE_SCOPES))
    p.add_argument("--actors", type=int, default=1, help="model actors (default 1)")
    p.add_argument("--num-cpus", type=float, default=0.5, help="CPUs per actor (default 0.5)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor (1 on a GPU cluster)")
    p.add_argument("--batch-size", type=int, default=4, help="agents per actor task (default 4)")


def run_args(a: argparse.Namespace, emit: Callable[[str], None] = log) -> int:
    """Run the calibration the parsed arguments describe and write its outputs (exit status 0)."""
    # Everything that can be checked without the model is checked before Ray starts.
    agents, codebook = load_agents(a.population, a.agents, a.seed)
    qids = questions_evenly(codebook, a.questions)
    library = load_library(a.library)
    load_preset(a.preset)
    spec = model_spec(a)
    work = CalibrationWork(model=spec, library=a.library, preset=a.preset, codebook=codebook, qids=tuple(qids),
                           probe_sigma=a.probe_sigma, seed=a.seed, language=a.language, noise_scope=a.noise_scope,
                           threads=a.threads or max(1, int(a.num_cpus)))
    emit(f"calibration: {len(agents)} agents × {len(qids)} questions, probe σ {a.probe_sigma:g}, "
         f"model {spec.name_or_path}, {a.actors} actor(s)")
    with ray_session():
        result = calibrate(agents, work, actors=a.actors, num_cpus=a.num_cpus, num_gpus=a.num_gpus,
                           batch_size=a.batch_size, emit=emit)
    library_path = embedded_library_path() if a.library in (None, "embedded") else Path(a.library)
    meta = {"model": library.manifest.model, "model_fingerprint": library.manifest.fingerprint,
            "model_source": spec.name_or_path, "library": str(library_path), "preset": a.preset,
            "population": a.population, "seed": a.seed, "noise_scope": a.noise_scope, "language": a.language,
            "qids": list(qids)}
    write_outputs(result, a.out, meta)
    emit(f"sensitivity {result.sensitivity:.4f} → σ = {result.sigma:.4f} (set psii.sigma in the model preset); "
         f"wrote {a.out}/{CSV}, {JSON}, {MD}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``raysim identity calibrate``: the noise calibration on Ray (a local instance, or the
    cluster RAY_ADDRESS names under ``ray job submit``)."""
    p = argparse.ArgumentParser(prog="raysim identity calibrate", description=main.__doc__)
    add_arguments(p)
    return run_args(p.parse_args(argv))
