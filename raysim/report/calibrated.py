"""A run scored after calibration (paper: calibrated value personas): each question's answer
distributions widened or narrowed by the T fitted, leave-one-question-out, on the other questions
of the same respondents (fitter ``variance``): so every score is on questions the calibration did
not see. Two variants: ``tilt`` (mean-preserving) and ``temperature`` (plain temperature scaling
with T fitted to the same target, for comparison). The fits are written (``fit.yaml``), the run's
files are not touched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..fits.artefact import load_fit, write_fit
from ..fits.variance import Params, VarianceFitter
from ..metrics.scores import Scores, score
from ..postprocess import apply_steps, parse_steps
from ..runs.results import read_results
from ..runs.rundir import config_hash, load_run_config, results_dir
from ..survey.codebook import Codebook
from ..survey.columns import ID
from ..survey.population import codebook_of, read_population
from .scorecard import fit_item_sets

VARIANTS = {"tilt": True, "temperature": False}   # variant → mean-preserving


@dataclass
class _RunSample:
    """The FitContext of a finished run: its respondents and its result rows."""
    codebook: Codebook
    qids: tuple[str, ...]
    respondents: pd.DataFrame
    rows: pd.DataFrame
    answer_mode: str = "logprob"

    def answer(self) -> pd.DataFrame:
        return self.rows


def calibrated_scores(run_dir: str | Path, variant: str, fit_dir: str | Path, *, n_boot: int, seed: int,
                      by: str = "country") -> Scores:
    """Fit the variant on the run (into ``fit_dir``), apply it, score."""
    if variant not in VARIANTS:
        raise ValueError(f"calibration variant {variant!r} is not one of {list(VARIANTS)}")
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if config.get("answer") != "logprob":
        raise ValueError(f"{run_dir.name}: calibration maps answer distributions; the run has sampled answers")
    codebook = codebook_of(config["population"])
    rows = read_results(results_dir(run_dir))
    population = read_population(config["population"])
    respondents = population[population[ID].isin(rows[ID].unique())]
    fitter = VarianceFitter(Params(mean_preserving=VARIANTS[variant]))
    result = fitter.fit(_RunSample(codebook, tuple(config["questions"]), respondents, rows))
    fit = write_fit(fit_dir, fitter="variance", params=asdict(fitter.params),
                    run={"config_hash": config_hash(config), "method": config["method"], "path": str(run_dir)},
                    result=result)
    calibrated = apply_steps(rows, parse_steps(["tilt"]), codebook, fit)
    sets = fit_item_sets(load_fit(config["fit"]["path"]) if "fit" in config else None, rows["qid"].unique())
    return score(calibrated, population, codebook, n_boot=n_boot, seed=seed, by=by, item_sets=sets)
