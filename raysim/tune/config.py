"""A Tune config (``configs/tune/*.yaml``), validated before Ray starts.

The run part is a run config's (population, method, answer, questions, model, vectors, preset,
translations, actors; ``sampling.seed`` seeds the method: noise, prompt languages) with an
injecting method; ``preset`` is the untuned preset the search starts from and is compared with.
The tune part:

    split:     {validation: 200, heldout: 200, seed: 0}   # disjoint respondent samples
    objective: {kl: 1.0, ed: 1.0, by: country}   # weights of mean KL and mean entropy deviation;
                                                 # by: country (mean over countries) | sample
    search:    {num_samples: 8, rungs: 2, reduction_factor: 2, seed: 0, trial_cpus: 0.25,
                max_concurrent_trials: null}     # null: one per model actor
    space:     ...                               # raysim.tune.space
    sweep:     {attributes: [], layers: [], sigma: 0.0}   # the layer sweep (--layer-sweep);
                                                 # empty: every attribute / every layer
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from ..identity.injection import load_preset
from ..identity.injection import PsiiPreset
from ..identity.library import LibraryError, VectorLibrary, load_library
from ..mappings import from_mapping
from ..methods.templates import LANGUAGES
from ..pipeline.config import ConfigError, RunConfig, parse_config
from ..survey.codebook import load_codebook
from .space import SearchSpace, SpaceError, parse_space
from ..yamlfile import load_yaml

TUNE_KEYS = ("split", "objective", "search", "space", "sweep")


class TuneError(ValueError):
    """A tune config that cannot be searched; the message names the key."""


@dataclass(frozen=True)
class Split:
    validation: int
    heldout: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.validation < 1 or self.heldout < 1:
            raise TuneError(f"split.validation and split.heldout must be >= 1, got {self.validation}, {self.heldout}")


@dataclass(frozen=True)
class Objective:
    kl: float = 1.0
    ed: float = 1.0
    by: str = "country"

    def __post_init__(self) -> None:
        if self.kl < 0 or self.ed < 0 or self.kl + self.ed == 0:
            raise TuneError(f"objective weights kl, ed must be >= 0 and not both 0, got {self.kl}, {self.ed}")
        if self.by not in ("country", "sample"):
            raise TuneError(f"objective.by must be country or sample, got {self.by!r}")

    def __call__(self, kl: float, ed: float) -> float:
        return self.kl * kl + self.ed * ed


@dataclass(frozen=True)
class Search:
    num_samples: int = 8
    rungs: int = 2
    """Validation chunks: a trial reports after each, and ASHA may stop it there."""
    reduction_factor: int = 2
    seed: int = 0
    trial_cpus: float = 0.25
    max_concurrent_trials: int | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.rungs < 1 or self.reduction_factor < 2:
            raise TuneError("search: num_samples and rungs must be >= 1, reduction_factor >= 2")
        if self.trial_cpus < 0 or (self.max_concurrent_trials is not None and self.max_concurrent_trials < 1):
            raise TuneError("search: trial_cpus must be >= 0 and max_concurrent_trials >= 1")


@dataclass(frozen=True)
class Sweep:
    attributes: tuple[str, ...] = ()
    layers: tuple[int, ...] = ()
    sigma: float = 0.0


@dataclass(frozen=True)
class TuneConfig:
    run: RunConfig
    split: Split
    objective: Objective
    search: Search
    space: SearchSpace
    sweep: Sweep
    raw: dict = dataclasses.field(compare=False, repr=False)

    @property
    def concurrency(self) -> int:
        return self.search.max_concurrent_trials or self.run.actors.number

    def library(self) -> VectorLibrary:
        return load_library(self.run.vector_library())

    def base_preset(self) -> PsiiPreset:
        """The model's preset, with the attribute groups the population's codebook declares."""
        return load_preset(self.run.preset_name()).for_codebook(load_codebook(self.run.codebook_name()))

    def qids(self) -> list[str]:
        return self.run.question_ids(load_codebook(self.run.codebook_name()))

    def attributes(self) -> tuple[str, ...]:
        """The preset's attributes that the library has vectors for and the population's codebook
        has (the ones that inject)."""
        codebook = load_codebook(self.run.codebook_name())
        return tuple(a for a in self.base_preset().attributes if a in self.library().attributes and a in codebook)

    def sweep_layers(self) -> tuple[int, ...]:
        return self.sweep.layers or tuple(range(1, self.library().manifest.n_layers + 1))

    def sweep_attributes(self) -> tuple[str, ...]:
        return self.sweep.attributes or self.attributes()

    def digest(self) -> str:
        """What a search directory was made with: a rerun must use the same config to resume."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_tune(raw: Any) -> TuneConfig:
    if not isinstance(raw, dict):
        raise TuneError("a tune config is a YAML mapping")
    run_raw = {k: v for k, v in raw.items() if k not in TUNE_KEYS}
    sampling = run_raw.get("sampling") or {}
    if set(sampling) - {"seed"}:
        raise TuneError("sampling: only seed is read (split: decides the respondents)")
    if "split" not in raw or "space" not in raw:
        raise TuneError("a tune config needs split: and space:")
    try:
        run = parse_config(run_raw)
    except ConfigError as e:
        raise TuneError(str(e)) from None
    if not run.injects:
        raise TuneError(f"method {run.spec.name!r} injects nothing: tune searches injection parameters "
                        "(use psii or one of its ablations)")

    def part(cls, key: str):
        return from_mapping(cls, raw.get(key), key, TuneError)

    sweep = dict(raw.get("sweep") or {})
    for key in ("attributes", "layers"):
        sweep[key] = tuple(sweep.get(key) or ())
    config = TuneConfig(run=run, split=part(Split, "split"), objective=part(Objective, "objective"),
                        search=part(Search, "search"), space=SearchSpace(),
                        sweep=from_mapping(Sweep, sweep, "sweep", TuneError), raw=raw)
    try:
        library = config.library()
    except LibraryError as e:
        raise TuneError(f"vectors: {e}") from None
    n_layers = library.manifest.n_layers
    try:
        space = parse_space(raw["space"], n_layers, LANGUAGES)
        space.parameters(config.base_preset(), config.attributes())
    except SpaceError as e:
        raise TuneError(str(e)) from None
    if space.language_mix and run.spec.language != "mixed":
        raise TuneError(f"space.language_mix: method {run.spec.name!r} prompts in one language ({run.spec.language})")
    bad = [a for a in config.sweep.attributes if a not in config.attributes()]
    if bad:
        raise TuneError(f"sweep.attributes {bad} are not attributes of both the library and the population "
                        f"({list(config.attributes())})")
    outside = [layer for layer in config.sweep.layers if not 1 <= layer <= n_layers]
    if outside:
        raise TuneError(f"sweep.layers {outside} are outside the model's layers 1..{n_layers}")
    return dataclasses.replace(config, space=space)


def load_tune(path: str | Path) -> TuneConfig:
    path = Path(path)
    if not path.is_file():
        raise TuneError(f"{path}: no such tune config")
    return parse_tune(load_yaml(path))
