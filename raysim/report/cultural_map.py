"""``raysim map POP [--runs RUN ...] -o DIR``: the Inglehart–Welzel map of a population, fitted on
its weighted real answers, with each run's simulated respondents projected through the same fit.

    DIR/map.csv        source, country, traditional_secular, survival_selfexpression, respondents
                       (source ``human``, or the run's method name)
    DIR/loadings.csv   the rotated loadings of the ten indicators
    DIR/map.png        human vs each method per country, arrows from human to simulated
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import write_atomic
from ..metrics.iw_map import (DIMENSIONS, MAP_ITEMS, MapError, country_positions, fit_map, human_indicators,
                              simulated_indicators)
from .iw_plot import HUMAN, plot_map
from ..runs.results import read_results
from ..runs.rundir import load_run_config, results_dir
from ..survey.codebook import load_codebook
from ..survey.columns import COUNTRY, ID, WEIGHT
from ..survey.population import codebook_of, read_population


def make_map(population: str | Path, runs: list[str | Path], out: str | Path) -> pd.DataFrame:
    codebook = codebook_of(population)
    human = human_indicators(read_population(population, columns=[ID, COUNTRY, WEIGHT, *MAP_ITEMS]), codebook)
    fitted = fit_map(human)
    tables = [country_positions(fitted.scores(human), HUMAN)]
    names = set()
    for run in runs:
        config = load_run_config(run)
        name = str(config["method"])
        if name in names:
            raise MapError(f"two runs of method {name!r}: give one run per method")
        names.add(name)
        results = read_results(results_dir(run), qids=MAP_ITEMS)   # (the map's items only)
        try:
            simulated = simulated_indicators(results, load_codebook(config["codebook"]))
        except MapError as e:
            raise MapError(f"run {run}: {e}") from None
        tables.append(country_positions(fitted.scores(simulated), name))
    positions = pd.concat(tables, ignore_index=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "map.csv", lambda tmp: positions.to_csv(tmp, index=False, float_format="%.6f"))
    loadings = fitted.loadings.rename_axis("indicator").reset_index()
    write_atomic(out / "loadings.csv", lambda tmp: loadings.to_csv(tmp, index=False, float_format="%.6f"))
    plot_map(positions, out / "map.png")
    return positions


def summary(positions: pd.DataFrame) -> str:
    lines = [f"{len(positions[positions['source'] == HUMAN])} countries; sources: "
             f"{', '.join(dict.fromkeys(positions['source']))}"]
    wide = positions.pivot_table(index="country", columns="source", values=list(DIMENSIONS))
    lines.append(wide.round(2).to_string())
    return "\n".join(lines)
