"""The fit job: ``raysim fit CONFIG -o FIT``, a fitter (raysim.fits) on a sample of real respondents.

    fitter: temperature          # a registered fitter
    params: {}                   # the fitter's parameters
    run:                         # a run config (a mapping, or the path of one): the method, model and
      population: {cardata: true}  # population; its sampling is the calibration sample
      sampling: {n: 40, seed: 1}
      method: pe

The run is simulated on the model actors (Ray Data, as ``raysim simulate``) into FIT/run, a run
directory like any other: a killed fit resumes where it stopped. The fitter then reads the
sample's rows and real answers and ``FIT/fit.yaml`` is written atomically (raysim.fits.artefact).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import pandas as pd

from ..fits import FITTERS, Fit, Fitter, FitterError, write_fit
from ..mappings import from_mapping
from ..runs.results import read_results
from ..runs.metadata import read_run_json, recording
from ..runs.rundir import FIT_RUN as RUN, config_hash, load_run_config, results_dir
from ..survey.codebook import Codebook, load_codebook
from ..survey.columns import BASE_COLUMNS, ID
from ..survey.population import read_population
from .config import ConfigError, RunConfig, load_config, parse_config
from .progress import log
from .prompt_pool import PoolBackend, crafter_spec, prompt_pool
from .simulate import run, sample
from ..tune.mixture_weights import tune_weights
from ..yamlfile import load_yaml



@dataclass(frozen=True)
class FitConfig:
    fitter: Fitter
    name: str
    run: RunConfig


def parse_fit_config(raw: Any, where: str = "fit config") -> FitConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a fit config is a YAML mapping")
    unknown = sorted(set(raw) - {"fitter", "params", "run"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: ['fitter', 'params', 'run']")
    for key in ("fitter", "run"):
        if key not in raw:
            raise ConfigError(f"{where}: lacks required key {key!r}")
    try:
        cls = FITTERS.get(str(raw["fitter"]), f"{where}: fitter")
        params = from_mapping(cls.Params, raw.get("params"), f"{where}: params", FitterError)
    except FitterError as e:
        raise ConfigError(str(e)) from None
    run_config = load_config(raw["run"]) if isinstance(raw["run"], str) else parse_config(raw["run"])
    for name in cls.models(params):   # other models the fitter loads: refused before anything runs
        try:
            spec = crafter_spec(run_config.model, name)
            if spec is not None:
                spec.check()
        except (OSError, ValueError) as e:
            raise ConfigError(f"{where}: params: model {name!r}: {e}") from None
    if run_config.answer not in cls.answer_modes:
        raise ConfigError(f"{where}: fitter {raw['fitter']!r} fits from answer modes {list(cls.answer_modes)}, "
                          f"the run's is {run_config.answer!r}")
    return FitConfig(fitter=cls(params), name=str(raw["fitter"]), run=run_config)


def load_fit_config(path: str | Path) -> FitConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such fit config")
    return parse_fit_config(load_yaml(path), str(path))


@dataclass
class _Sample:
    """The ``FitContext`` of a fit: the simulated run's rows, the sample's real answers, and the
    run's model on actors for fitters that ask it more (mixtures)."""

    codebook: Codebook
    qids: tuple[str, ...]
    respondents: pd.DataFrame
    answer_mode: str
    run_dir: Path
    run: RunConfig

    def answer(self) -> pd.DataFrame:
        return read_results(results_dir(self.run_dir))

    def prompt_backend(self, crafter: str | None) -> ContextManager[PoolBackend]:
        return prompt_pool(self.run.model, self.run.engine, self.run.actors, self.codebook.name, self.qids, crafter)

    def search_weights(self, components: list[np.ndarray], observed: list[np.ndarray], samples: int,
                       seed: int) -> tuple[np.ndarray, float]:
        return tune_weights(components, observed, samples, seed)


def fit(config: FitConfig, out: str | Path, emit: Callable[[str], None] = log) -> Fit:
    out = Path(out).resolve()
    with recording(out, "fit") as facts:
        run_dir = out / RUN
        new = not out.exists()
        try:
            run(config.run, run_dir, emit=emit)
        except BaseException:
            if new and out.is_dir() and not any(out.iterdir()):   # the run removed its own directory
                out.rmdir()
            raise
        resolved = load_run_config(run_dir)
        qids = tuple(resolved["questions"])
        population = resolved["population"]
        ids = sample(Path(population), config.run)[ID].to_numpy()
        people = read_population(population, columns=[*BASE_COLUMNS, *qids], ids=ids)
        context = _Sample(load_codebook(resolved["codebook"]), qids, people, config.run.answer, run_dir, config.run)
        emit(f"fitting {config.name} on {len(people)} respondents × {len(qids)} questions")
        result = config.fitter.fit(context)
        done = write_fit(out, fitter=config.name, params=asdict(config.fitter.params),
                         run={"config_hash": config_hash(resolved), "method": resolved["method"],
                              "answer": resolved["answer"], "population_source": resolved["population_source"],
                              "respondents": len(people), "questions": len(qids)},
                         result=result)
        brief = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}   # lists stay in the file
        emit(f"fit written: {done.path} ({', '.join(f'{k}: {v}' for k, v in brief.items())})")
        facts.update(rows=(read_run_json(run_dir) or {}).get("rows", 0), fitter=config.name)
    return done
