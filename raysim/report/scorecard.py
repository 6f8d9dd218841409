"""Score a run directory and write its score files (csv, parquet, markdown) atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..atomic import write_atomic
from ..metrics.scores import OVERALL, Scores, score, to_markdown
from ..pipeline.results import read_results
from ..pipeline.rundir import load_run_config, results_dir
from ..survey.codebook import load_codebook
from ..survey.population import read_population

# Columns the scorer needs; raw_text is left on disk (it is the bulk of a generation run).
_SCORED_COLUMNS = ["method", "config_hash", "respondent_id", "country", "qid",
                   "option_codes", "probs", "sampled_code", "valid"]


@dataclass(frozen=True)
class Scorecard:
    scores: Scores
    markdown: str
    overall_markdown: str


def score_run(run_dir: str | Path, *, n_boot: int = 200, seed: int = 0, mode: str | None = None,
              by: str = "country") -> Scorecard:
    """``mode`` None: "sampled" for a run in generate mode, "probs" otherwise; ``by``: per
    country (and pooled), or the whole sample as one group (raysim.metrics.scores.score)."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if mode is None:
        mode = "sampled" if config.get("answer") == "generate" else "probs"
    codebook = load_codebook(config["codebook"])
    population = read_population(config["population"])
    results = read_results(results_dir(run_dir), columns=_SCORED_COLUMNS)
    scores = score(results, population, codebook, mode=mode, n_boot=n_boot, seed=seed, by=by)
    table: pd.DataFrame = scores.table
    md = to_markdown(scores)
    overall = to_markdown(table[table["category"] == OVERALL])
    header = (f"Scores of {run_dir.name} ({mode} mode; {n_boot} bootstrap replicates, seed {seed}). "
              "Cells: value [95% interval] ×multiple of the human noise floor.\n\n")
    write_atomic(run_dir / "scores.csv", lambda p: table.to_csv(p, index=False))
    write_atomic(run_dir / "scores.parquet", lambda p: table.to_parquet(p, index=False))
    write_atomic(run_dir / "scores.md", lambda p: p.write_text(header + md))
    return Scorecard(scores, header + md, header + overall)
