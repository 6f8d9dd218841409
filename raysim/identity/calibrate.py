"""Noise calibration (DESIGN.md, "Identity construction"): how far injection noise moves answers.

model sensitivity = mean over sampled agents and questions of
|rank(answer with noise) − rank(answer without noise)| / number of options, and
σ = max(0, 0.4 − sensitivity). An agent is a respondent as PSII simulates them: the PE profile
prompt plus their injection plan; their answer is the most probable option under exact scoring.

Also the pieces the calibration job and the diversity-collapse analysis share: the population
argument (a path, ``synthetic:N`` or ``cardata``), the agent sample, the model + library +
preset setup and its checks. No Ray here (raysim.pipeline.calibrate runs it on Ray).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..engine.base import LM
from ..engine.loading import ModelSpec
from ..engine.plan import NOISE_SCOPES, PlanError, scoped
from ..methods.prompts import persona_prefix, request
from ..survey.batteries import battery_items
from ..survey.codebook import Codebook
from ..survey.population import BASE_COLUMNS, ID, codebook_of, read_population, records
from ..survey.profile import profile_columns, render_profile
from ..survey.sources import source_from_text
from .injection import PsiiPreset, check_setup, load_preset, psii_plan, respondent_seed
from .library import VectorLibrary, load_library

SIGMA_CAP = 0.4
"""The 0.4 in σ = max(0, 0.4 − sensitivity)."""
PROBE_SIGMA = SIGMA_CAP
ROW_COLUMNS = [ID, "qid", "n_options", "rank_clean", "rank_noisy", "shift"]


@dataclass(frozen=True)
class CalibrationResult:
    rows: pd.DataFrame
    """One row per (respondent, question): ``ROW_COLUMNS``."""
    sensitivity: float
    sigma: float
    probe_sigma: float
    n_agents: int
    n_questions: int

    def summary(self) -> dict[str, Any]:
        return {"sensitivity": self.sensitivity, "sigma": self.sigma, "probe_sigma": self.probe_sigma,
                "n_agents": self.n_agents, "n_questions": self.n_questions}


# --------------------------------------------------------------------------- agents


def agent_columns(codebook: Codebook) -> list[str]:
    """The population columns an agent needs: base columns, profile items, PSII attributes."""
    wanted = profile_columns(codebook) + codebook.attribute_candidates
    return list(BASE_COLUMNS) + list(dict.fromkeys(c for c in wanted if c not in BASE_COLUMNS))


def load_agents(population: str, n: int, seed: int = 0) -> tuple[pd.DataFrame, Codebook]:
    """``n`` respondents drawn without replacement (seeded, in id order) from ``population``,
    command-line text naming a population source (raysim.survey.sources): a canonical Parquet
    population (file or shard directory), ``synthetic:N`` (N generated WVS-7 respondents) or
    ``cardata`` (the real carData::WVS respondents). A generated one is written to a temporary
    directory."""
    if n < 1:
        raise ValueError(f"the number of agents must be >= 1, got {n}")
    source = source_from_text(population)
    with tempfile.TemporaryDirectory(prefix="raysim-agents-") as tmp:
        path = source.ensure(tmp)
        codebook = codebook_of(path)
        people = read_population(path, columns=agent_columns(codebook))
    if n > len(people):
        raise ValueError(f"{n} agents asked for, but population {population!r} has {len(people)} respondents")
    take = np.sort(np.random.default_rng(seed).choice(len(people), size=n, replace=False))
    agents = people.iloc[take][[c for c in agent_columns(codebook) if c in people.columns]]
    return agents.sort_values(ID, kind="stable").reset_index(drop=True), codebook


# --------------------------------------------------------------------------- setup


def load_setup(model: ModelSpec, library: str | None, preset: str) -> tuple[LM, VectorLibrary, PsiiPreset]:
    """Engine, library (None or "embedded": the packaged one) and preset, checked together."""
    from ..engine.backends import make_engine

    lib = load_library(library)   # the cheap parts first: a bad path fails before the model loads
    psii = load_preset(preset)
    engine = make_engine(model)
    check_setup(engine, lib, psii)
    return engine, lib, psii


def add_setup_arguments(p: argparse.ArgumentParser, agents: int) -> None:
    """The arguments the calibration and the collapse analysis share."""
    p.add_argument("--model", default="embedded", help="model name_or_path (default: the embedded default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="where the model runs (default cpu; cuda on GPU nodes)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--library", default="embedded", help="vector library directory (default: the embedded one)")
    p.add_argument("--preset", default="smollm2-135m",
                   help="model preset name (configs/models) or a YAML file with a psii block")
    p.add_argument("--population", default="synthetic:2000",
                   help="a canonical Parquet population, synthetic:N, or cardata (default synthetic:2000)")
    p.add_argument("--agents", type=int, default=agents, help=f"respondents sampled (default {agents})")
    p.add_argument("--language", default=None, help="add this language vector at the final block (default none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads per model replica (default: torch's)")
    p.add_argument("-o", "--out", required=True, help="output directory")


def model_spec(a: argparse.Namespace) -> ModelSpec:
    return ModelSpec(name_or_path=a.model, dtype=a.dtype, device=a.device)


# --------------------------------------------------------------------------- calibration


def _check_inputs(codebook: Codebook, qids: Sequence[str], probe_sigma: float, noise_scope: str) -> None:
    if not qids:
        raise ValueError("no questions to calibrate on")
    for q in qids:
        if not codebook[q].has_options:
            raise ValueError(f"question {q} has no listed options ({codebook[q].kind}): it cannot be ranked")
    if not (probe_sigma >= 0 and math.isfinite(probe_sigma)):
        raise ValueError(f"probe sigma must be a finite number >= 0, got {probe_sigma}")
    if noise_scope not in NOISE_SCOPES:
        raise PlanError(f"noise scope {noise_scope!r} not one of {NOISE_SCOPES}")


def calibration_rows(engine: LM, library: VectorLibrary, preset: PsiiPreset, respondents: pd.DataFrame,
                     codebook: Codebook, qids: Sequence[str], probe_sigma: float = PROBE_SIGMA, seed: int = 0,
                     language: str | None = None, noise_scope: str = "respondent") -> pd.DataFrame:
    """Per (respondent, question): the rank of the most probable option with the respondent's
    plan at σ = 0 and at σ = ``probe_sigma`` (noise seeded per respondent), and
    shift = |rank_noisy − rank_clean| / n_options. Rank = position on the item's scale (its
    option order; scale order for an ordinal item listed out of order, e.g. Q56)."""
    _check_inputs(codebook, qids, probe_sigma, noise_scope)
    preset = preset.for_codebook(codebook)
    batteries = battery_items(codebook)
    items = [codebook[q] for q in qids]
    requests, keys = [], []
    for row in records(respondents):
        prefix = persona_prefix(render_profile(row, codebook))
        rseed = respondent_seed(seed, row[ID])
        clean, noisy = (psii_plan(library, row, preset, rseed, language=language, sigma=s)
                        for s in (0.0, probe_sigma))
        for it in items:
            battery = batteries.get(it.id)
            # Only the noisy plan is scoped: the clean one then stays one plan for all questions.
            requests += [request(prefix, it, clean, battery=battery),
                         request(prefix, it, scoped(noisy, noise_scope, it.id), battery=battery)]
            keys.append((int(row[ID]), it))
    scored = engine.score(requests)
    out = []
    for k, (rid, it) in enumerate(keys):
        position = it.scale_positions()
        clean, noisy = (position[r.codes[int(np.argmax(r.probs))]] for r in scored[2 * k: 2 * k + 2])
        n = len(it.options)
        out.append((rid, it.id, n, clean, noisy, abs(noisy - clean) / n))
    return pd.DataFrame(out, columns=ROW_COLUMNS).astype(
        {ID: "int64", "n_options": "int64", "rank_clean": "int64", "rank_noisy": "int64", "shift": "float64"})


def combine(rows: pd.DataFrame | Sequence[pd.DataFrame], probe_sigma: float) -> CalibrationResult:
    """The calibration from per-batch rows (any split of the respondents, in any order)."""
    frames = [rows] if isinstance(rows, pd.DataFrame) else list(rows)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROW_COLUMNS)
    if table.empty:
        raise ValueError("no calibration rows to combine")
    if list(table.columns) != ROW_COLUMNS:
        raise ValueError(f"calibration rows must have columns {ROW_COLUMNS}, got {list(table.columns)}")
    if table.duplicated([ID, "qid"]).any():
        raise ValueError("calibration rows repeat a (respondent, question)")
    # Stable on respondent only: a respondent's rows keep their question order.
    table = table.sort_values(ID, kind="stable").reset_index(drop=True)
    sens = float(table["shift"].mean())
    return CalibrationResult(rows=table, sensitivity=sens, sigma=float(np.clip(SIGMA_CAP - sens, 0.0, SIGMA_CAP)),
                             probe_sigma=float(probe_sigma), n_agents=int(table[ID].nunique()),
                             n_questions=int(table["qid"].nunique()))


def sensitivity(engine: LM, library: VectorLibrary, preset: PsiiPreset, respondents: pd.DataFrame,
                codebook: Codebook, qids: Sequence[str], probe_sigma: float = PROBE_SIGMA, seed: int = 0,
                language: str | None = None, noise_scope: str = "respondent") -> CalibrationResult:
    """The model's sensitivity to injection noise and the σ it calls for, σ = max(0, 0.4 − s).

    DESIGN's formula does not fix the noise level at which sensitivity is measured; we probe at
    ``probe_sigma`` = 0.4 by default, the formula's cap (the largest σ it can return), so the
    probe is as strong as any σ the calibration may recommend. Deterministic for a seed: each
    respondent's noise seed is derived from (seed, respondent id).
    """
    check_setup(engine, library, preset.for_codebook(codebook))
    return combine(calibration_rows(engine, library, preset, respondents, codebook, qids, probe_sigma, seed,
                                    language, noise_scope), probe_sigma)
