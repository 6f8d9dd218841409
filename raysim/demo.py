"""The end-to-end skeleton on the embedded defaults: populations → result rows → scores.

Until the model engine lands, the simulator is the trivial uniform baseline (marked as
such in every table); the populations are the synthetic WVS-7 one and the real carData
respondents.
"""

from __future__ import annotations

from pathlib import Path

from .methods.uniform import METHOD, uniform_results
from .pipeline.results import write_results_shard
from .pipeline.rundir import init_run_dir, results_dir
from .report.scorecard import score_run
from .survey.cardata import write_cardata
from .survey.population import codebook_of, iter_batches
from .survey.synthetic import write_synthetic


def simulate_uniform(population: Path, run_dir: Path, batch_size: int = 4096) -> Path:
    """Write uniform result rows for every respondent × opinion item, one shard per batch."""
    cb = codebook_of(population)
    qids = cb.question_ids
    config = {"population": str(population.resolve()), "codebook": cb.name,
              "method": "uniform", "questions": qids}
    h = init_run_dir(run_dir, config)
    for i, batch in enumerate(iter_batches(population, batch_size=batch_size,
                                           columns=["respondent_id", "country", "weight"])):
        rows = uniform_results(batch, cb, qids, run_id=run_dir.name, config_hash=h)
        write_results_shard(rows, results_dir(run_dir), f"part-{i:05d}")
    return run_dir


def run_demo(out: Path, n: int = 2000, seed: int = 0, n_boot: int = 100) -> None:
    pops = out / "populations"
    populations = {
        f"synthetic-{n}": lambda p: write_synthetic(n, p, seed=seed),
        "cardata": write_cardata,
    }
    for name, make in populations.items():
        path = pops / name
        if not path.exists():
            make(path)
        run_dir = out / f"{name}-uniform"
        simulate_uniform(path, run_dir)
        scores = score_run(run_dir, n_boot=n_boot, seed=seed)
        print(f"\n## {name}: {METHOD} — not a model; the reference point for later methods\n")
        print(scores.overall_markdown)
        print(f"\n(run directory: {run_dir})")
