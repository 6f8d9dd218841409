"""Streaming overhead of the Ray pipeline over the bare engine, and its rate at WVS-7 scale.

    python bench/pipeline_overhead.py            # both parts; last line "overhead: <x>%"

Part 1 — overhead at equal batch sizes (embedded default, PE, logprob mode): (a) the model
actor's own code called directly in this process on the same batches (model load, engine,
shard writes: everything but Ray), vs (b) the same respondents through `raysim.pipeline.simulate`
(Ray Data read → filter → repartition → one-actor pool → manifests back), with the same torch
threads, one actor, Ray already started. overhead = b / a − 1 (target ≤ 10%).

Part 2 — scale (tiny random Llama, configs/models/tiny-llama.yaml): the whole synthetic
97,220-respondent population, a handful of questions, through the pipeline; respondents/s and
rows/s, and the actor pool's rate next to the bare engine's on a sample (does streaming and
writing keep up?). With --scaling, the same on a subset with 1 and 2 actors.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch

from raysim.pipeline.actor import ModelActor, Task, Work
from raysim.pipeline.config import parse_config
from raysim.runs.rundir import results_dir
from raysim.pipeline.simulate import run, sample
from raysim.survey.codebook import load_codebook
from raysim.survey.population import ID, read_population
from raysim.survey.sampling import questions_evenly
from raysim.survey.synthetic import write_synthetic


def config(population: Path, *, method: str, model: dict, questions: int, per_country: int | None,
           actors: int, num_cpus: float, batch_size: int):
    return parse_config({
        "population": {"path": str(population)},
        "sampling": {"per_country": per_country, "seed": 0},
        "questions": questions, "method": method, "model": model,
        "actors": {"number": actors, "num_cpus": num_cpus, "num_gpus": 0, "batch_size": batch_size},
    })


def pool_share(actors: int, cpus: int = 2) -> float:
    """CPUs each actor claims so that one stays free for Ray Data's tasks."""
    return min(1.0, (cpus - 1) / actors)


def direct(cfg, population: Path, out: Path, limit: int | None = None) -> tuple[float, int]:
    """The actor's code in this process over the config's respondents in its batch size."""
    people = sample(population, cfg).head(limit) if limit else sample(population, cfg)
    qids = questions_evenly(load_codebook("wvs7"), cfg.questions)
    a = cfg.actors
    results = out / "results"
    results.mkdir(parents=True)
    started = time.perf_counter()
    task = Task(method=cfg.spec, run_id="direct", config_hash="direct", results_dir=str(results),
                todo=np.sort(people[ID].to_numpy(dtype=np.int64)))
    actor = ModelActor(Work(model=cfg.model, codebook="wvs7", qids=tuple(qids), tasks=(task,),
                            threads=max(1, int(a.num_cpus))))
    rows = read_population(population, columns=cfg.spec.columns(load_codebook("wvs7")))
    rows = rows[rows[ID].isin(people[ID])].sort_values(ID).reset_index(drop=True)
    for start in range(0, len(rows), a.batch_size):
        actor(rows.iloc[start: start + a.batch_size])
    return time.perf_counter() - started, len(rows)


def through_pipeline(cfg, run_dir: Path, limit: int | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    done = run(cfg, run_dir, limit=limit, emit=lambda line: None)
    return time.perf_counter() - started, done.complete


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["overhead", "scale", "both"], default="both")
    p.add_argument("--per-country", type=int, default=1, help="part 1: respondents per country (66 countries)")
    p.add_argument("--questions", type=int, default=8, help="part 1: questions")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--respondents", type=int, default=97_220, help="part 2: synthetic population size")
    p.add_argument("--scale-questions", type=int, default=2)
    p.add_argument("--scale-actors", type=int, default=2)
    p.add_argument("--scaling", action="store_true", help="part 2: also 1 vs 2 actors on a subset")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()

    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="raysim-bench-"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        if args.part in ("overhead", "both"):
            pop = work / "pop-small"
            write_synthetic(2000, pop, seed=0)
            cfg = config(pop, method="pe", model={"name_or_path": "embedded"}, questions=args.questions,
                         per_country=args.per_country, actors=1, num_cpus=1, batch_size=args.batch_size)
            t_direct, n = direct(cfg, pop, work / "direct")
            t_pipe, m = through_pipeline(cfg, work / "run-overhead")
            assert n == m, (n, m)
            q = n * args.questions
            print(f"part 1: embedded default, PE logprob, {n} respondents × {args.questions} questions, "
                  f"batch {args.batch_size}, 1 thread")
            print(f"  (a) engine direct : {t_direct:7.1f} s  {q / t_direct:6.2f} resp-q/s")
            print(f"  (b) Ray pipeline  : {t_pipe:7.1f} s  {q / t_pipe:6.2f} resp-q/s")
            overhead = t_pipe / t_direct - 1
        if args.part in ("scale", "both"):
            pop = work / "pop-wvs7"
            t0 = time.perf_counter()
            write_synthetic(args.respondents, pop, seed=0)
            print(f"part 2: synthetic population of {args.respondents} respondents written in "
                  f"{time.perf_counter() - t0:.0f} s")
            tiny = {"random_init": "tiny-llama"}
            # The pool leaves one whole CPU to Ray Data's read tasks (a pool claiming more starves
            # them: the run refuses to start); torch still runs one thread per actor.
            share = pool_share(args.scale_actors)
            cfg = config(pop, method="pe", model=tiny, questions=args.scale_questions, per_country=None,
                         actors=args.scale_actors, num_cpus=share, batch_size=256)
            sample_n = 2000
            t_d, n_d = direct(config(pop, method="pe", model=tiny, questions=args.scale_questions, per_country=None,
                                     actors=1, num_cpus=1, batch_size=256), pop, work / "direct-tiny", limit=sample_n)
            t_s, n_s = through_pipeline(cfg, work / "run-scale")
            shards = len(list(results_dir(work / "run-scale").glob("*.parquet")))
            print(f"  bare engine (1 thread, {n_d} respondents): {n_d / t_d:8.1f} respondents/s")
            print(f"  pipeline ({args.scale_actors} actors × {share:g} CPU, 1 thread each, all {n_s} respondents): "
                  f"{n_s / t_s:8.1f} respondents/s, {n_s * args.scale_questions / t_s:8.1f} rows/s, "
                  f"{t_s:.0f} s, {shards} shards")
            print(f"  pipeline / bare-engine rate: {(n_s / t_s) / (n_d / t_d):.2f} "
                  f"(2 CPUs vs 1 thread: ≈2 when streaming and writing keep up)")
            if args.scaling:
                subset = 4000
                rates = {}
                for k in (1, 2):
                    c = config(pop, method="pe", model=tiny, questions=args.scale_questions, per_country=None,
                               actors=k, num_cpus=pool_share(k), batch_size=256)
                    t, n = through_pipeline(c, work / f"run-actors-{k}", limit=subset)
                    rates[k] = n / t
                    print(f"  {k} actor(s) × {pool_share(k):g} CPU (1 thread each), {n} respondents: "
                          f"{rates[k]:8.1f} respondents/s")
                print(f"  scaling 2 actors / 1 actor: {rates[2] / rates[1]:.2f} (linear = 2.00 on 2 cores)")
        if args.part in ("overhead", "both"):
            print(f"overhead: {100 * overhead:.1f}%")
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
