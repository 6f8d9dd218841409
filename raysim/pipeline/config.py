"""The run config of a simulation (YAML), validated into frozen dataclasses.

    population: {path: DIR} | {synthetic: {n: 2000, seed: 0}} | {cardata: true}
                | {survey: {file: F, codebook: CB.yaml, id: COL, country_code: NZL, weight: COL}}
                               # any registered source (raysim.survey.sources)
    sampling:   {per_country: 3, countries: [DEU, USA], seed: 0}   # or {n: 100}; neither: everyone
    questions:  24             # 0: the whole questionnaire, else N spread over the categories;
                               # or a list of question ids: exactly those
    method:     pe             # configs/methods/<name>.yaml, or a method YAML file
    answer:     logprob        # logprob (exact option probabilities) | generate (sampled answers)
    model:      {name_or_path: embedded, dtype: float32, device: cpu}   # ModelSpec fields
    vectors:    embedded       # injecting methods: the vector library (default: the embedded one
                               # for the embedded model); preset: configs/models name (default: the model's)
    translations: DIR          # mixed-language methods: the cache of `raysim translate` (optional)
    fit:        FIT            # a directory `raysim fit` wrote: for fitted methods and post-processing;
                               # its content is part of the run's hash
    postprocess: [temperature] # steps applied to the answer distributions when the run is scored
                               # (raysim.postprocess); scores only, outside the run's hash
    actors:     {number: 2, num_cpus: 0.5, num_gpus: 0, batch_size: 8}

The seed (``sampling.seed``) also seeds the method: prompt languages, noise, sampled answers.

Generated populations (synthetic, cardata, survey) are written once into RUN_DIR/population.
``resolved`` is what RUN_DIR/config.yaml holds and what its hash covers: everything that
changes result rows, nothing about resources (``actors``), so a run may resume with another
number of actors or on another cluster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from ..engine.backends import EngineSpec
from ..engine.loading import ModelSpec
from ..engine.loading import EMBEDDED_PRESET, preset_for
from ..mappings import from_mapping
from ..fits.artefact import FitError, load_fit
from ..methods.spec import ANSWER_MODES, MethodError, MethodSpec, get_method
from ..postprocess import StepError, parse_steps
from ..survey.codebook import Codebook, load_codebook, resolve_ids
from ..survey.sampling import questions_evenly
from ..survey.sources import PopulationSource, SourceError, parse_source
from ..yamlfile import load_yaml


class ConfigError(ValueError):
    """A run config that cannot be run; the message names the offending key."""


@dataclass(frozen=True)
class RespondentSample:
    """Which respondents of the population a run simulates (``sampling:`` in the config)."""

    per_country: int | None = None   # None: every respondent (or n of them)
    countries: tuple[str, ...] = ()  # (): every country
    seed: int = 0
    n: int | None = None             # respondents drawn from the whole population (the paper's 100)

    def __post_init__(self) -> None:
        if self.per_country is not None and self.per_country <= 0:
            raise ConfigError(f"sampling.per_country must be positive or null, got {self.per_country}")
        if self.n is not None and self.n <= 0:
            raise ConfigError(f"sampling.n must be positive or null, got {self.n}")
        if self.n is not None and self.per_country is not None:
            raise ConfigError("sampling: give per_country or n, not both")


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
    population: PopulationSource
    method: str
    sampling: RespondentSample = RespondentSample()
    questions: int | tuple[str, ...] = 0
    answer: str = "logprob"
    model: ModelSpec = ModelSpec()
    engine: EngineSpec = EngineSpec()
    vectors: str | None = None
    preset: str | None = None
    translations: str | None = None
    fit: str | None = None
    postprocess: tuple = ()
    actors: Actors = Actors()

    def __post_init__(self) -> None:
        try:
            self.spec
        except MethodError as e:
            raise ConfigError(f"method: {e}") from None
        if isinstance(self.questions, tuple):
            if not self.questions or len(set(self.questions)) != len(self.questions):
                raise ConfigError(f"questions: a list of distinct question ids, got {list(self.questions)}")
        elif self.questions < 0:
            raise ConfigError(f"questions must be >= 0 (0: all), got {self.questions}")
        if self.answer not in ANSWER_MODES:
            raise ConfigError(f"answer must be one of {list(ANSWER_MODES)}, got {self.answer!r}")
        if self.injects and self.vectors is None and preset_for(self.model) != EMBEDDED_PRESET:
            raise ConfigError(f"method {self.spec.name!r} injects vectors: set vectors: to the library "
                              f"built for {self.model.name_or_path} (raysim identity build)")
        if self.translations is not None and not Path(self.translations).is_dir():
            raise ConfigError(f"translations: {self.translations} is not a directory")
        if self.fit is not None:
            try:
                load_fit(self.fit)
            except FitError as e:
                raise ConfigError(f"fit: {e}") from None
        try:
            parse_steps(list(self.postprocess))
        except StepError as e:
            raise ConfigError(str(e)) from None

    def check_model(self) -> None:
        """The model exists (as far as the driver can tell without loading it)."""
        if self.spec.needs_model:
            try:
                self.model.check()
            except (OSError, ValueError) as e:
                raise ConfigError(f"model: {e}") from None

    @property
    def spec(self) -> MethodSpec:
        return get_method(self.method)

    @property
    def injects(self) -> bool:
        """The method adds identity vectors (its kind needs a vector library)."""
        return "vectors" in self.spec.resources()

    def resource_locations(self) -> dict[str, str]:
        """Where each resource the method's kind declares lies (raysim.methods.resources), as the
        actors load it; a required one the config lacks is refused."""
        given = {"vectors": self.vector_library, "preset": self.preset_name,
                 "translations": lambda: str(Path(self.translations).resolve()) if self.translations else None,
                 "fit": lambda: str(load_fit(self.fit).path) if self.fit else None}
        out = {}
        for name, required in self.spec.resources().items():
            location = given[name]() if name in given else None
            if location is None and required:
                raise ConfigError(f"method {self.spec.name!r} needs {name}: set {name}: in the run config")
            if location is not None:
                out[name] = location
        return out

    def preset_name(self) -> str:
        name = self.preset or preset_for(self.model)
        if name is None:
            raise ConfigError(f"no model preset for {self.model.name_or_path!r} in configs/models: set preset:")
        return name

    def vector_library(self) -> str | None:
        """The library an injecting method uses: the given one, or the embedded default's."""
        if not self.injects:
            return None
        return str(Path(self.vectors).resolve()) if self.vectors not in (None, "embedded") else "embedded"

    def population_path(self, run_dir: str | Path) -> Path:
        return self.population.location(run_dir)

    def codebook_name(self, run_dir: str | Path = ".") -> str:
        return self.population.codebook(run_dir).name

    def resolved(self, run_dir: str | Path) -> dict[str, Any]:
        """The run's identity: what RUN_DIR/config.yaml holds and its hash covers."""
        cb = load_codebook(self.codebook_name(run_dir))
        self._check_codebook(cb)
        return {
            "population": str(self.population_path(run_dir)),
            "population_source": self.population.to_mapping(),
            "codebook": cb.name,
            # a shipped codebook is named; any other is recorded by content too
            **({"codebook_sha256": cb.sha256} if Path(cb.name).is_absolute() else {}),
            "method": self.spec.name,
            "method_spec": self.spec.to_dict(),
            "answer": self.answer,
            "model": self.model.to_dict() if self.spec.needs_model else None,
            # Backends agree to float rounding, not bit for bit: a run keeps its backend. (The HF
            # default adds no key, so runs made before backends were selectable still resume.)
            **({"engine": self.engine.name} if self.spec.needs_model and self.engine.name != "hf" else {}),
            "injection": self._injection(),
            "translations": self.resource_locations().get("translations"),
            "per_country": self.sampling.per_country,
            "sample_n": self.sampling.n,
            "countries": list(self.sampling.countries),
            "seed": self.sampling.seed,
            "questions": self.question_ids(cb),
            # (no key without a fit: runs made before fits existed keep their hash)
            **({"fit": self._fit()} if self.fit else {}),
        }

    def question_ids(self, codebook: Codebook) -> list[str]:
        """The run's questions: N drawn evenly over the categories, or the ids listed."""
        if isinstance(self.questions, int):
            return questions_evenly(codebook, self.questions)
        try:
            return resolve_ids(codebook, self.questions)
        except ValueError as e:
            raise ConfigError(f"questions: {e}") from None

    def _fit(self) -> dict[str, Any]:
        fit = load_fit(self.fit)
        return {"path": str(fit.path), "fitter": fit.fitter, "sha256": fit.sha256}

    def _check_codebook(self, codebook: Codebook) -> None:
        """A codebook the method cannot prompt with (e.g. profiles in languages it has no
        templates for) is refused here, before any actor starts."""
        try:
            self.spec.kind_class.check_codebook(self.spec.params, codebook)
        except ValueError as e:
            raise ConfigError(f"method {self.spec.name!r}: {e}") from None

    def _injection(self) -> dict[str, Any] | None:
        """Which vectors and preset an injecting method uses (their content, so a rebuilt library
        or an edited preset is a different run)."""
        if not self.injects:
            return None
        from ..identity.injection import check_preset_layers, load_preset
        from ..identity.library import load_library

        library = load_library(self.vector_library())
        try:   # the library was built on the model: its layer count is the model's
            preset = load_preset(self.preset_name())
            check_preset_layers(preset, library, library.manifest.n_layers, library.manifest.model)
        except ValueError as e:
            raise ConfigError(f"preset {self.preset_name()!r}: {e}") from None
        return {"vectors": self.vector_library(), "library_fingerprint": library.manifest.fingerprint,
                "dataset_hash": library.manifest.dataset_hash, "preset": self.preset_name(),
                "psii": dataclasses.asdict(preset)}


def _build(cls, raw: Any, where: str):
    return from_mapping(cls, raw, where, ConfigError)


def parse_config(raw: Any) -> RunConfig:
    """A relative population path resolves against the current directory (the repository
    root, locally and under ``ray job submit --working-dir .``); the population is any
    registered source (``raysim.survey.sources``)."""
    if not isinstance(raw, dict):
        raise ConfigError("a run config is a YAML mapping")
    raw = dict(raw)
    for key in ("population", "method"):
        if key not in raw:
            raise ConfigError(f"run config lacks required key {key!r}")
    try:
        population = parse_source(raw["population"])
    except SourceError as e:
        raise ConfigError(str(e)) from None
    sampling = dict(raw.get("sampling") or {})
    if isinstance(sampling.get("countries"), list):
        sampling["countries"] = tuple(sampling["countries"])
    elif sampling.get("countries", ()) is None:
        sampling["countries"] = ()
    parts = {
        "population": population,
        "sampling": _build(RespondentSample, sampling, "sampling"),
        "model": _build(ModelSpec, raw.get("model"), "model"),
        "actors": _build(Actors, raw.get("actors"), "actors"),
    }
    try:
        parts["engine"] = EngineSpec.parse(raw.get("engine"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(raw.get("postprocess") or [], list):
        raise ConfigError("postprocess: expected a list of steps")
    parts["postprocess"] = tuple(raw.get("postprocess") or ())
    if isinstance(raw.get("questions"), list):
        parts["questions"] = tuple(str(q) for q in raw["questions"])
    top = {k: v for k, v in raw.items() if k not in parts}
    return _build(RunConfig, {**top, **parts}, "run config")


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return parse_config(load_yaml(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
