"""Noise calibration (docs/design.md, "Identity construction"): how far injection noise moves answers.

model sensitivity = mean over sampled agents and questions of
|rank(answer with noise) − rank(answer without noise)| / number of options, and
σ = max(0, 0.4 − sensitivity). An agent is a respondent as PSII simulates them: the PE profile
prompt plus their injection plan; their answer is the most probable option under exact scoring.
The agents and the model setup come from raysim.identity.agents. No Ray here
(raysim.pipeline.noise_calibration_job runs it on Ray).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..engine.base import LM
from ..engine.plan import NOISE_SCOPES, PlanError, scoped
from ..methods.prompts import persona_prefix, request
from ..survey.batteries import battery_items
from ..survey.codebook import Codebook
from ..survey.population import ID, records
from ..survey.profile import render_profile
from .injection import PsiiPreset, check_setup, psii_plan, respondent_seed
from .library import VectorLibrary

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

    docs/design.md's formula does not fix the noise level at which sensitivity is measured; we probe at
    ``probe_sigma`` = 0.4 by default, the formula's cap (the largest σ it can return), so the
    probe is as strong as any σ the calibration may recommend. Deterministic for a seed: each
    respondent's noise seed is derived from (seed, respondent id).
    """
    check_setup(engine, library, preset.for_codebook(codebook))
    return combine(calibration_rows(engine, library, preset, respondents, codebook, qids, probe_sigma, seed,
                                    language, noise_scope), probe_sigma)
