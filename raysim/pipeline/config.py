"""The run config of a simulation (YAML), validated into frozen dataclasses.

    population: {path: DIR} | {synthetic: {n: 2000, seed: 0}} | {cardata: true}
    sampling:   {per_country: 3, countries: [DEU, USA], seed: 0}   # per_country null: everyone
    questions:  24             # 0: the whole questionnaire, else N spread over the categories
    method:     pe             # raysim.methods.registry
    model:      {name_or_path: embedded, dtype: float32, device: cpu}   # ModelSpec fields
    actors:     {number: 2, num_cpus: 0.5, num_gpus: 0, batch_size: 8}

Generated populations (synthetic, cardata) are written once into RUN_DIR/population.
``resolved`` is what RUN_DIR/config.yaml holds and what its hash covers: everything that
changes result rows, nothing about resources (``actors``), so a run may resume with another
number of actors or on another cluster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..engine.loading import ModelSpec
from ..methods.registry import get_method
from ..survey.codebook import load_codebook
from ..survey.population import codebook_of
from ..survey.sampling import questions_evenly

POPULATION_DIR = "population"


class ConfigError(ValueError):
    """A run config that cannot be run; the message names the offending key."""


@dataclass(frozen=True)
class Synthetic:
    n: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ConfigError(f"population.synthetic.n must be positive, got {self.n}")


@dataclass(frozen=True)
class Population:
    path: str | None = None
    synthetic: Synthetic | None = None
    cardata: bool = False

    def __post_init__(self) -> None:
        given = [k for k, v in (("path", self.path), ("synthetic", self.synthetic), ("cardata", self.cardata)) if v]
        if len(given) != 1:
            raise ConfigError(f"population needs exactly one of path, synthetic, cardata; got {given or 'none'}")

    @property
    def generated(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class Sampling:
    per_country: int | None = None   # None: every respondent
    countries: tuple[str, ...] = ()  # (): every country
    seed: int = 0

    def __post_init__(self) -> None:
        if self.per_country is not None and self.per_country <= 0:
            raise ConfigError(f"sampling.per_country must be positive or null, got {self.per_country}")


@dataclass(frozen=True)
class Actors:
    number: int = 1
    num_cpus: float = 0.5    # fractional locally: a pool claiming every CPU starves Ray Data's reads
    num_gpus: float = 0.0    # 1 on a GPU cluster: one model replica per GPU
    batch_size: int = 8      # respondents per batch (one result shard each)

    def __post_init__(self) -> None:
        if self.number < 1 or self.batch_size < 1:
            raise ConfigError(f"actors.number and actors.batch_size must be >= 1, got {self.number}, {self.batch_size}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("actors.num_cpus and actors.num_gpus must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    population: Population
    method: str
    sampling: Sampling = Sampling()
    questions: int = 0
    model: ModelSpec = ModelSpec()
    actors: Actors = Actors()

    def __post_init__(self) -> None:
        get_method(self.method)
        if self.questions < 0:
            raise ConfigError(f"questions must be >= 0 (0: all), got {self.questions}")

    def population_path(self, run_dir: str | Path) -> Path:
        if self.population.generated:
            return Path(run_dir).resolve() / POPULATION_DIR
        return Path(self.population.path).resolve()

    def codebook_name(self) -> str:
        if self.population.synthetic:
            return "wvs7"
        if self.population.cardata:
            return "cardata"
        return codebook_of(self.population_path(".")).name

    def resolved(self, run_dir: str | Path) -> dict[str, Any]:
        """The run's identity: what RUN_DIR/config.yaml holds and its hash covers."""
        cb = load_codebook(self.codebook_name())
        pop = self.population
        return {
            "population": str(self.population_path(run_dir)),
            "population_source": ({"path": str(self.population_path(run_dir))} if pop.path else
                                  {"synthetic": dataclasses.asdict(pop.synthetic)} if pop.synthetic else
                                  {"cardata": True}),
            "codebook": cb.name,
            "method": self.method,
            "model": dataclasses.asdict(self.model) if get_method(self.method).needs_model else None,
            "per_country": self.sampling.per_country,
            "countries": list(self.sampling.countries),
            "seed": self.sampling.seed,
            "questions": questions_evenly(cb, self.questions),
        }


def _build(cls, raw: Any, where: str):
    """``cls`` from a mapping, rejecting unknown keys with their location."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**raw)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_config(raw: Any) -> RunConfig:
    """A relative population path resolves against the current directory (the repository
    root, locally and under ``ray job submit --working-dir .``)."""
    if not isinstance(raw, dict):
        raise ConfigError("a run config is a YAML mapping")
    raw = dict(raw)
    for key in ("population", "method"):
        if key not in raw:
            raise ConfigError(f"run config lacks required key {key!r}")
    pop = dict(raw["population"] or {}) if isinstance(raw["population"], dict) else raw["population"]
    if isinstance(pop, dict) and isinstance(pop.get("synthetic"), dict):
        pop["synthetic"] = _build(Synthetic, pop["synthetic"], "population.synthetic")
    sampling = dict(raw.get("sampling") or {})
    if "countries" in sampling:
        sampling["countries"] = tuple(sampling["countries"] or ())
    parts = {
        "population": _build(Population, pop, "population"),
        "sampling": _build(Sampling, sampling, "sampling"),
        "model": _build(ModelSpec, raw.get("model"), "model"),
        "actors": _build(Actors, raw.get("actors"), "actors"),
    }
    top = {k: v for k, v in raw.items() if k not in parts}
    return _build(RunConfig, {**top, **parts}, "run config")


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    return parse_config(yaml.safe_load(path.read_text()))
