"""The end-to-end skeleton on the embedded defaults: populations → result rows → scores.

Two simulators on the same sampled respondents: the trivial uniform baseline (every option
equally likely, marked as such) and PE (the persona profile in the prompt) answered by the
embedded default model in logprob mode. Populations: the synthetic WVS-7 one and the real
carData respondents. A local, single-process run; the Ray job (issue 4) scales the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .methods.pe import pe_results
from .methods.uniform import METHOD as UNIFORM, uniform_results
from .pipeline.results import write_results_shard
from .pipeline.rundir import init_run_dir, results_dir
from .report.scorecard import score_run
from .survey.cardata import write_cardata
from .survey.codebook import Codebook
from .survey.population import codebook_of, read_population
from .survey.sampling import questions_evenly, sample_per_country
from .survey.synthetic import write_synthetic

Simulator = Callable[[pd.DataFrame, Codebook, list[str], str, str], pd.DataFrame]


@dataclass(frozen=True)
class DemoPopulation:
    name: str
    make: Callable[[Path], Path]
    per_country: int
    questions: int                  # 0: the whole questionnaire
    countries: tuple[str, ...] = ()  # () = all


def simulate(population: Path, run_dir: Path, method: str, simulator: Simulator, *,
             per_country: int, questions: int, seed: int, countries: tuple[str, ...] = (),
             batch: int = 32) -> Path:
    """Write result rows of ``simulator`` for a seeded per-country sample of ``population``,
    one atomic shard per batch of respondents."""
    cb = codebook_of(population)
    qids = questions_evenly(cb, questions)
    config = {"population": str(population.resolve()), "codebook": cb.name, "method": method,
              "questions": qids, "per_country": per_country, "countries": list(countries), "seed": seed}
    h = init_run_dir(run_dir, config)
    people = read_population(population)
    if countries:
        people = people[people["country"].isin(countries)]
    sample = sample_per_country(people, per_country, seed)
    for i, start in enumerate(range(0, len(sample), batch)):
        rows = simulator(sample.iloc[start: start + batch], cb, qids, run_dir.name, h)
        write_results_shard(rows, results_dir(run_dir), f"part-{i:05d}")
    return run_dir


def run_demo(out: Path, n: int = 2000, seed: int = 0, n_boot: int = 100,
             per_country: int | None = None, questions: int | None = None) -> None:
    """``per_country`` / ``questions`` override the demo's sample sizes (tests use tiny ones)."""
    from .engine.hf import HFEngine
    from .engine.loading import ModelSpec, load_model

    engine = HFEngine(load_model(ModelSpec()))   # the embedded default, fp32, CPU
    simulators: dict[str, Simulator] = {
        "uniform": lambda df, cb, q, run, h: uniform_results(df, cb, q, run_id=run, config_hash=h),
        "pe": lambda df, cb, q, run, h: pe_results(engine, df, cb, q, run_id=run, config_hash=h,
                                                  method=f"pe ({engine.loaded.name})"),
    }
    # Sizes that keep the demo to a few minutes on 2 CPU cores.
    populations = [
        DemoPopulation(f"synthetic-{n}", lambda p: write_synthetic(n, p, seed=seed),
                       per_country=per_country or 3, questions=questions or 24,
                       countries=("DEU", "JPN", "NGA", "USA")),
        DemoPopulation("cardata", write_cardata, per_country=per_country or 10, questions=0),
    ]
    for pop in populations:
        path = out / "populations" / pop.name
        if not path.exists():
            pop.make(path)
        for method, simulator in simulators.items():
            run_dir = out / f"{pop.name}-{method}"
            simulate(path, run_dir, method, simulator, per_country=pop.per_country,
                     questions=pop.questions, seed=seed, countries=pop.countries)
            card = score_run(run_dir, n_boot=n_boot, seed=seed)
            label = UNIFORM if method == "uniform" else f"PE, {engine.loaded.name}, logprob mode"
            print(f"\n## {pop.name}: {label}\n")
            print(card.overall_markdown)
            print(f"(run directory: {run_dir})")
