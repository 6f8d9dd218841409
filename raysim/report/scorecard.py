"""Score a run directory and write its score files atomically: the score table (csv, parquet,
markdown) and the per-question table (``scores_by_question.parquet``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from ..align.aligned_set import humans_of
from ..atomic import write_atomic
from ..metrics.scores import OVERALL, Scores, check_by, score, to_markdown
from ..runs.results import results_dataset
from ..fits.artefact import Fit, load_fit
from ..fits.base import FITTERS
from ..postprocess import Step, apply_steps, parse_steps
from ..runs.rundir import load_postprocess, load_run_config, results_dir
from ..survey.population import codebook_of, read_population


FITTED, HELD_OUT = "fitted items", "held-out items"
BASELINE_FILE = "baseline.csv"
"""The uniform yardstick's scores (``Scores.baseline``), columns as scores.csv."""
DISTRIBUTIONS_FILE = "distributions.parquet"
"""Per question and option, the human and simulated answer shares (``Scores.distributions``)."""


@dataclass(frozen=True)
class Scorecard:
    scores: Scores
    markdown: str
    overall_markdown: str
    files: tuple[Path, ...] = ()
    """The files written, in the run directory."""


def score_run(run_dir: str | Path, *, n_boot: int = 200, seed: int = 0, mode: str | None = None,
              by: str = "country", postprocess: list[Any] | None = None) -> Scorecard:
    """``mode`` None: "sampled" for a run in generate mode, "probs" otherwise; ``by``: per
    country (and pooled), the whole sample as one group, or per answer to an item of the
    population (and pooled) (raysim.metrics.scores.score). ``postprocess``: steps applied to
    the answer distributions before scoring (raysim.postprocess), instead of the run config's."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if mode is None:
        mode = "sampled" if config.get("answer") == "generate" else "probs"
    # the population's own codebook: a survey's copy is there, whatever became of the file it came from
    codebook = codebook_of(config["population"])
    population = read_population(config["population"])
    humans = humans_of(config["population"])   # an aligned persona set is scored against its target's people
    humans = read_population(humans) if humans is not None else None
    check_by(by, codebook, population.columns)   # a bad by fails before the results are read
    steps = parse_steps(load_postprocess(run_dir) if postprocess is None else postprocess)
    fit = load_fit(config["fit"]["path"]) if "fit" in config else None
    # the result rows are scanned shard by shard, never held (a full-population run has 25 M per method)
    results = results_dataset(results_dir(run_dir))
    passed: Counter[str] = Counter()

    def postprocessed(rows: pd.DataFrame) -> pd.DataFrame:
        out = apply_steps(rows, steps, codebook, fit)
        passed.update({s.name: getattr(s, "passed", 0) for s in steps})
        return out

    scores = score(results, population, codebook, mode=mode, n_boot=n_boot, seed=seed, by=by,
                   item_sets=fit_item_sets(fit, _questions(results)) if fit is not None else None, humans=humans,
                   transform=postprocessed if steps else None)
    table: pd.DataFrame = scores.table
    both = pd.concat([table, scores.baseline], ignore_index=True)   # each method beside the yardstick
    md = to_markdown(both)
    overall = to_markdown(both[both["category"] == OVERALL])
    header = (f"Scores of {run_dir.name} ({mode} mode; {n_boot} bootstrap replicates, seed {seed}). "
              f"{_against(config['population'], humans)}{_postprocessed(steps, passed)}{_left_out(scores, by)}Cells: value [95% interval] ×multiple of the human noise floor.\n\n")
    writers = {
        "scores.csv": lambda p: table.to_csv(p, index=False),
        "scores.parquet": lambda p: table.to_parquet(p, index=False),
        "scores.md": lambda p: p.write_text(header + md),
        "scores_by_question.parquet": lambda p: scores.per_question.to_parquet(p, index=False),
        BASELINE_FILE: lambda p: scores.baseline.to_csv(p, index=False),
        DISTRIBUTIONS_FILE: lambda p: scores.distributions.to_parquet(p, index=False),
    }
    for name, write in writers.items():
        write_atomic(run_dir / name, write)
    return Scorecard(scores, header + md, header + overall, tuple(run_dir / name for name in writers))



def fit_item_sets(fit: Fit | None, questions: Iterable[str]) -> dict[str, list[str]] | None:
    """For a fit made on some items (a prompt mixture): the run's questions split into those
    it was fitted to and the others, scored as two more categories."""
    fitted = FITTERS.get(fit.fitter).fitted_items(fit.result) if fit is not None else None
    if not fitted:
        return None
    return {FITTED: [q for q in questions if q in fitted], HELD_OUT: [q for q in questions if q not in fitted]}


def _questions(results) -> list[str]:
    """The questions a run's result shards hold (one column scanned)."""
    return list(dict.fromkeys(q for b in results.to_batches(columns=["qid"]) for q in b.column(0).unique().to_pylist()))


def _against(population: str, humans: pd.DataFrame | None) -> str:
    if humans is None:
        return ""
    return (f"The population is an aligned persona set: its simulation is compared with the {len(humans)} people "
            f"of its target ({humans_of(population)}), bootstrapped apart from the personas. ")


def _postprocessed(steps: list[Step], passed: Counter[str]) -> str:
    """``passed``: per step, the rows it left unchanged (summed over the batches scored)."""
    if not steps:
        return ""
    text = f"Answer distributions post-processed by {yaml.safe_dump([s.to_config() for s in steps], default_flow_style=True).strip()}. "
    unchanged = [f"{s.name}: {passed[s.name]}" for s in steps if passed[s.name]]
    if unchanged:   # e.g. nominal items, which have no order to tilt along
        text += f"Rows left unchanged by a step ({', '.join(unchanged)}). "
    return text


def _left_out(scores: Scores, by: str) -> str:
    """A sentence on the respondents in no group (no answer to the item grouped by), if any."""
    n = max(scores.ungrouped.values(), default=0)
    text = f"{n} respondents with no answer to {by} are in no group. " if n else ""
    if scores.weightless:
        text += f"Left out, their respondents' weights summing to zero: {', '.join(scores.weightless)}. "
    return text
