"""What a directory given to ``raysim report`` holds: a run, an experiment, a Tune search (or its
layer sweep) or a fit, recognised by the files each writes. A new kind is one more
:class:`Kind` in ``KINDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ..fits.artefact import FIT_FILE
from ..runs.rundir import CONFIG_FILE, EXPERIMENT_RUNS, FIT_RUN, RESULTS_DIR, SEARCH_CONFIG, load_run_config
from ..yamlfile import load_yaml
from .scorecard import BASELINE_FILE, DISTRIBUTIONS_FILE

SCORES_FILE = "scores.csv"


class ReportError(ValueError):
    """A directory raysim report cannot describe."""


@dataclass
class Contents:
    directory: Path
    kind: str
    runs: dict[str, Path] = field(default_factory=dict)
    """Scored runs by method name: their configs, distributions and run.json."""
    scores: pd.DataFrame | None = None
    """Every method's scores (scores.csv), ``method`` = the method's name."""
    baseline: pd.DataFrame | None = None
    """The uniform yardstick's scores (baseline.csv), where scored with it."""

    def distributions(self) -> dict[str, pd.DataFrame]:
        """Per method, its run's answer shares per question and option (distributions.parquet),
        for the runs scored since it was written."""
        out = {}
        for name, run in self.runs.items():
            path = run / DISTRIBUTIONS_FILE
            if path.is_file():
                out[name] = pd.read_parquet(path).assign(method=name)
        return out


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def is_run(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file() and (directory / RESULTS_DIR).is_dir()


def _scored_run(run: Path, score: Callable[[Path], None]) -> tuple[str, pd.DataFrame, pd.DataFrame | None]:
    """A run's method, scores and baseline, scoring it first if it never was (or was scored before
    the scorer wrote the yardstick and the distributions)."""
    if not (run / SCORES_FILE).is_file() or not (run / DISTRIBUTIONS_FILE).is_file():
        score(run)
    return load_run_config(run)["method"], pd.read_csv(run / SCORES_FILE), _csv(run / BASELINE_FILE)


def _run(directory: Path, score: Callable[[Path], None]) -> Contents:
    method, scores, baseline = _scored_run(directory, score)
    return Contents(directory, "run", {method: directory}, scores, baseline)


def _experiment(directory: Path, score: Callable[[Path], None]) -> Contents:
    runs = {p.name: p for p in sorted((directory / EXPERIMENT_RUNS).iterdir()) if is_run(p)}
    for run in runs.values():
        if not (run / DISTRIBUTIONS_FILE).is_file():
            score(run)
    return Contents(directory, "experiment", runs, pd.read_csv(directory / SCORES_FILE),
                    _csv(directory / BASELINE_FILE))


def _fit(directory: Path, score: Callable[[Path], None]) -> Contents:
    run = directory / FIT_RUN
    if not is_run(run):
        return Contents(directory, "fit")
    method, scores, baseline = _scored_run(run, score)
    return Contents(directory, "fit", {method: run}, scores, baseline)


def _search(directory: Path, score: Callable[[Path], None]) -> Contents:
    return Contents(directory, "search")


@dataclass(frozen=True)
class Kind:
    name: str
    matches: Callable[[Path], bool]
    read: Callable[[Path, Callable[[Path], None]], Contents]


KINDS = (
    Kind("experiment", lambda d: (d / EXPERIMENT_RUNS).is_dir() and (d / SCORES_FILE).is_file(), _experiment),
    Kind("fit", lambda d: (d / FIT_FILE).is_file(), _fit),
    Kind("search", lambda d: (d / SEARCH_CONFIG).is_file(), _search),
    Kind("run", is_run, _run),
)


def read_contents(directory: str | Path, score: Callable[[Path], None]) -> Contents:
    """The directory's contents; ``score(run)`` scores a run that has no scores yet."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError(f"{directory}: no such directory")
    for kind in KINDS:
        if kind.matches(directory):
            return kind.read(directory, score)
    raise ReportError(f"{directory} is not a run, experiment, Tune search or fit directory (none of "
                      f"{CONFIG_FILE} with {RESULTS_DIR}/, {EXPERIMENT_RUNS}/ with {SCORES_FILE}, {SEARCH_CONFIG}, {FIT_FILE})")


def fit_record(directory: Path) -> dict | None:
    path = directory / FIT_FILE
    return load_yaml(path) if path.is_file() else None
