"""An experiment: several methods, one population, one model → one run directory per method and
the paper-style tables (``raysim experiment CONFIG -o DIR``).

    name: paper_table1
    population: {synthetic: {n: 2000, seed: 0}}     # as in a run config
    sampling: {n: 100, seed: 0}
    questions: 0
    answer: logprob
    model: {name_or_path: embedded}
    methods:                                        # table group → method names
      baselines: [direct, high_temp, multilingual, divreq, pe, simvbg]
      psii: [psii]
      ablations: [psii_no_value, psii_no_demographic, psii_no_profile, psii_no_noise, psii_no_layerwise]
    boot: 200                                       # bootstrap replicates of the scores
    score_by: country                               # or sample, or an item id such as Q260
    actors: {number: 2, num_cpus: 0.5, batch_size: 4}

Every other key is a run config's (raysim.pipeline.config). A generated population is written once
into DIR/population and shared; every method runs on the same sampled respondents and questions,
so their scores share the human distributions and the noise floor. Each method's run directory
(DIR/runs/<method>) is resumable: rerunning the experiment redoes nothing complete.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..atomic import write_atomic
from ..engine.loading import EMBEDDED_NAME
from ..metrics.scores import BY, ScoreError, check_by
from ..align.aligned_set import REPORT_FILE, humans_of
from ..report.scorecard import BASELINE_FILE, FITTED, HELD_OUT, score_run
from ..report.tables import experiment_tables
from ..survey.codebook import load_codebook
from ..survey.sources import SourceError, source_from_text
from ..survey.sources.path_source import PathSource
from .config import ConfigError, RunConfig, parse_config
from .progress import log
from ..runs.metadata import read_run_json, recording
from ..runs.results import read_results, results_batches
from ..runs.rundir import EXPERIMENT_RUNS as RUNS_DIR, load_run_config, results_dir
from ..fits.base import FitterError
from ..mappings import from_mapping
from ..metrics.persona_curve import CURVE_COLUMNS, persona_curve, summarise
from ..report.calibrated import VARIANTS, calibrated_scores
from ..report.curves import plot_persona_curve
from ..survey.population import codebook_of, read_population
from .session import ray_session
from .simulate import run_many
from ..yamlfile import load_yaml

FITS_DIR = "fits"
_EXPERIMENT_KEYS = ("name", "description", "methods", "boot", "score_by", "calibrate", "persona_curve")


@dataclass(frozen=True)
class PersonaCurve:
    """``persona_curve:`` error of the country distributions against the number of personas."""
    counts: tuple[int, ...] = (1, 2, 5, 10, 20)
    draws: int = 20
    metric: str = "w1"

    def __post_init__(self) -> None:
        if not self.counts or any(n < 1 for n in self.counts) or self.draws < 1:
            raise ConfigError(f"persona_curve: counts must be positive and draws >= 1, got {self.counts}, {self.draws}")
        if self.metric not in ("w1", "kl"):
            raise ConfigError(f"persona_curve: metric must be w1 or kl, got {self.metric!r}")


@dataclass(frozen=True)
class Experiment:
    name: str
    groups: dict[str, tuple[str, ...]]
    """Table group → method names, in table order."""
    runs: dict[str, RunConfig]
    """Method name → its run config (population, sample, questions, model shared)."""
    boot: int = 200
    score_by: str = "country"
    """country: per country and pooled; sample: all respondents as one group; an item id (Q260):
    per answer to that item and pooled (raysim.metrics.scores.score)."""
    description: str = ""
    calibrate: tuple[str, ...] = ()
    """Calibration variants scored beside each method (raysim.report.calibrated): tilt, temperature."""
    persona_curve: PersonaCurve | None = None

    @property
    def methods(self) -> list[str]:
        return [m for names in self.groups.values() for m in names]


def population_override(value: str) -> dict[str, Any]:
    """``--population``: a canonical Parquet population, ``synthetic:N``, ``cardata`` (any
    source that reads command-line text, raysim.survey.sources)."""
    try:
        return source_from_text(value).to_mapping()
    except SourceError as e:
        raise ConfigError(str(e)) from None


def apply_overrides(raw: dict[str, Any], *, population: str | None = None, sample: int | None = None,
                    questions: int | None = None, model: str | None = None, answer: str | None = None) -> dict[str, Any]:
    """The command line's overrides on an experiment document (a copy)."""
    raw = copy.deepcopy(raw)
    if population is not None:
        raw["population"] = population_override(population)
    if sample is not None:
        sampling = {k: v for k, v in (raw.get("sampling") or {}).items() if k not in ("n", "per_country")}
        raw["sampling"] = {**sampling, "n": sample}
    if questions is not None:
        raw["questions"] = questions
    if model is not None:
        raw["model"] = {**{k: v for k, v in (raw.get("model") or {}).items() if k in ("dtype", "device")},
                        "name_or_path": model}
        raw.pop("preset", None)   # the new model's own preset (or an error asking for one)
        raw.pop("vectors", None)
    if answer is not None:
        raw["answer"] = answer
    return raw


def parse_experiment(raw: Any, where: str = "experiment") -> Experiment:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an experiment config is a YAML mapping")
    methods = raw.get("methods")
    if isinstance(methods, list):
        methods = {"methods": methods}
    if not isinstance(methods, dict) or not methods or \
            not all(isinstance(v, list) and v and all(isinstance(m, str) for m in v) for v in methods.values()):
        raise ConfigError(f"{where}: 'methods' must map table groups to non-empty lists of method names")
    groups = {str(g): tuple(v) for g, v in methods.items()}
    names = [m for v in groups.values() for m in v]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a method is listed twice in 'methods'")
    shared = {k: v for k, v in raw.items() if k not in _EXPERIMENT_KEYS}
    if "method" in shared:
        raise ConfigError(f"{where}: an experiment lists 'methods', not 'method'")
    runs = {}
    for name in names:
        try:
            runs[name] = parse_config({**shared, "method": name})
        except ConfigError as e:
            raise ConfigError(f"{where}, method {name}: {e}") from None
    boot = raw.get("boot", 200)
    if not isinstance(boot, int) or boot < 1:
        raise ConfigError(f"{where}: boot must be a positive integer, got {boot!r}")
    score_by = raw.get("score_by", "country")
    if score_by not in BY:   # an item id, checked against the population's codebook before Ray starts
        try:
            check_by(score_by, load_codebook(runs[names[0]].codebook_name()), name="score_by")
        except ScoreError as e:
            raise ConfigError(f"{where}: {e}") from None
    calibrate = raw.get("calibrate") or []
    if not isinstance(calibrate, list) or any(v not in VARIANTS for v in calibrate):
        raise ConfigError(f"{where}: calibrate must be a list of {list(VARIANTS)}, got {calibrate!r}")
    if calibrate and any(runs[n].answer != "logprob" for n in names):
        raise ConfigError(f"{where}: calibrate maps answer distributions: it needs answer: logprob")
    curve = raw.get("persona_curve")
    if isinstance(curve, dict) and isinstance(curve.get("counts"), list):
        curve = {**curve, "counts": tuple(curve["counts"])}
    curve = from_mapping(PersonaCurve, curve, f"{where}: persona_curve", ConfigError) if curve is not None else None
    return Experiment(name=str(raw.get("name") or Path(where).stem), groups=groups, runs=runs, boot=boot,
                      score_by=score_by, description=str(raw.get("description") or ""),
                      calibrate=tuple(calibrate), persona_curve=curve)


def load_experiment(path: str | Path, **overrides: Any) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment config")
    return parse_experiment(apply_overrides(load_yaml(path), **overrides), str(path))


def _shared_population(experiment: Experiment, out: Path) -> dict[str, RunConfig]:
    """Run configs reading one population: a generated one is written once into out/population."""
    first = next(iter(experiment.runs.values()))
    if not first.population.generated:
        return dict(experiment.runs)
    path = first.population.ensure(out)
    return {name: replace(cfg, population=PathSource(str(path))) for name, cfg in experiment.runs.items()}


def run_experiment(experiment: Experiment, out: str | Path, *, command: str | None = None,
                   emit: Callable[[str], None] = log) -> Path:
    """Run every method into ``out/runs/<method>``, score them, write ``out/tables.md`` and
    ``out/scores.csv`` (all methods' scores, ``method`` = the method's name)."""
    out = Path(out).resolve()
    for cfg in experiment.runs.values():
        cfg.check_model()
    new = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with recording(out, "experiment") as facts:
        try:
            runs = _shared_population(experiment, out)
            with ray_session(lazy=True):   # one pass: the population read once, the model loaded once per actor
                run_many([(cfg, out / RUNS_DIR / name) for name, cfg in runs.items()], emit=emit)
        except BaseException:
            if new and not any((out / RUNS_DIR).glob("*")):   # (run_many removes the run directories it made in vain)
                shutil.rmtree(out, ignore_errors=True)
            raise
        tables, notes, baseline = [], [], None
        for name in experiment.methods:
            try:
                card = score_run(out / RUNS_DIR / name, n_boot=experiment.boot, seed=runs[name].sampling.seed,
                                 by=experiment.score_by)
            except ScoreError as e:   # e.g. no valid sampled answer at all: reported, not fatal
                notes.append(f"{name} not scored: {e}")
                continue
            tables.append(card.scores.table.assign(method=name))
            baseline = card.scores.baseline if baseline is None else baseline   # the first method's respondents
            for variant in experiment.calibrate:
                try:
                    calibrated = calibrated_scores(out / RUNS_DIR / name, variant, out / FITS_DIR / f"{name}-{variant}",
                                                   n_boot=experiment.boot, seed=runs[name].sampling.seed,
                                                   by=experiment.score_by)
                except (FitterError, ScoreError) as e:
                    notes.append(f"{name} +{variant} not scored: {e}")
                    continue
                tables.append(calibrated.table.assign(method=f"{name} +{variant}"))
        if not tables:
            raise ScoreError("no method of the experiment could be scored: " + "; ".join(notes))
        scores = pd.concat(tables, ignore_index=True)
        write_atomic(out / "scores.csv", lambda p: scores.to_csv(p, index=False))
        write_atomic(out / BASELINE_FILE, lambda p: baseline.to_csv(p, index=False))
        first = runs[experiment.methods[0]]
        resolved = first.resolved(out / RUNS_DIR / experiment.methods[0])
        about = {
            "experiment": experiment.name,
            "model": _model_name(first),
            "population": experiment.runs[experiment.methods[0]].population.describe(),
            "answer": first.answer,
            "questions": len(resolved["questions"]),
            "boot": experiment.boot,
            "score_by": experiment.score_by,
            "command": command,
        }
        if first.answer == "generate":
            notes.append("Valid (parsed) answers: " + ", ".join(
                f"{n} {_valid_share(out / RUNS_DIR / n):.0%}" for n in experiment.methods) + "; invalid answers are "
                "kept in the results and left out of the sampled distributions.")
        notes += _language_notes(runs, resolved["questions"])
        humans = humans_of(resolved["population"])
        if humans is not None:
            notes.append(f"The population is an aligned persona set (raysim.align): each method's simulated personas are "
                         f"scored against the real people of the set's target ({humans}, {humans.parent.name}/"
                         f"{REPORT_FILE} has the alignment), bootstrapped apart from the personas.")
        if (scores["category"] == FITTED).any():
            notes.append(f"Columns '{FITTED}' / '{HELD_OUT}': the questions the experiment's fit was fitted to, and the "
                         "others (held out: the fit never saw their human answers).")
        if experiment.calibrate:
            notes.append(f"+tilt / +temperature: each question's answer distributions calibrated with the T fitted on "
                         f"the OTHER questions of the same respondents (leave-one-question-out, fitter variance; fits in "
                         f"{FITS_DIR}/): mean-preserving tilt / plain temperature scaling to the human normalised variance.")
        if experiment.persona_curve is not None:
            notes.append(_persona_curve(experiment, runs, out))
        groups = {g: tuple(x for m in ms for x in [m, *(f"{m} +{v}" for v in experiment.calibrate)])
                  for g, ms in experiment.groups.items()}
        text = experiment_tables(scores, groups, about, notes=notes, baseline=baseline)
        write_atomic(out / "tables.md", lambda p: p.write_text(text))
        emit(f"wrote {out / 'tables.md'} and {out / 'scores.csv'}")
        facts["rows"] = sum((read_run_json(out / RUNS_DIR / name) or {}).get("rows", 0) for name in experiment.methods)
    return out / "tables.md"


def _persona_curve(experiment: Experiment, runs: dict[str, RunConfig], out: Path) -> str:
    """DIR/persona_curve.csv (every draw), persona_curve_summary.csv and persona_curve.png."""
    spec = experiment.persona_curve
    # every run of one experiment reads the same population: read it once
    location = load_run_config(out / RUNS_DIR / experiment.methods[0])["population"]
    population, codebook = read_population(location), codebook_of(location)
    curves = []
    for name in experiment.methods:
        cfg = runs[name]
        if cfg.answer != "logprob":
            continue
        rows = results_batches(results_dir(out / RUNS_DIR / name), columns=CURVE_COLUMNS)   # never all held
        curves.append(persona_curve(rows, population, codebook,
                                    list(spec.counts), draws=spec.draws, seed=cfg.sampling.seed,
                                    metric=spec.metric).assign(method=name))
    curve = pd.concat(curves, ignore_index=True)
    summary = pd.concat([summarise(g).assign(method=m) for m, g in curve.groupby("method", sort=False)])
    write_atomic(out / "persona_curve.csv", lambda p: curve.to_csv(p, index=False, float_format="%.6f"))
    write_atomic(out / "persona_curve_summary.csv", lambda p: summary.to_csv(p, index=False, float_format="%.6f"))
    plot_persona_curve(summary, spec.metric, out / "persona_curve.png")
    return (f"Persona-count curve ({spec.metric} of the country distributions vs personas per country, "
            f"{spec.draws} draws each): persona_curve.csv, persona_curve_summary.csv, persona_curve.png.")


def _model_name(cfg: RunConfig) -> str:
    m = cfg.model
    if m.random_init:
        return f"random-init {m.random_init}"
    return f"{EMBEDDED_NAME} (the embedded default)" if m.name_or_path == "embedded" else m.name_or_path


def _valid_share(run_dir: Path) -> float:
    return float(read_results(results_dir(run_dir), columns=["valid"])["valid"].mean())


def _language_notes(runs: dict[str, RunConfig], qids: list[str]) -> list[str]:
    """How many questions the mixed-language methods could ask in each language."""
    mixed = [n for n, c in runs.items() if "translations" in c.spec.resources()]   # asks in other languages
    if not mixed:
        return []
    cfg = runs[mixed[0]]
    if cfg.translations is None:
        return [f"Prompt languages of {', '.join(mixed)}: system turn and profile in the respondent's language; "
                f"no translation cache was given, so all {len(qids)} questions were asked in English "
                "in every language (`raysim translate`, then `translations:` in the config)."]
    from ..methods.templates import LANGUAGES
    from ..methods.translation import Translations, coverage

    translations = Translations.load(cfg.translations)
    codebook = load_codebook(cfg.codebook_name())
    counts = []
    for language in LANGUAGES[1:]:
        done, fallback = coverage(translations, codebook, qids, language)
        counts.append(f"{language} {done} translated / {fallback} in English")
    return [f"Questions in the prompt language ({', '.join(mixed)}): " + "; ".join(counts) + "."]
