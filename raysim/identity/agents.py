"""The agents an identity analysis runs on, and the model setup it runs with: shared by the noise
calibration (raysim.identity.noise_calibration) and the diversity-collapse analysis
(raysim.identity.collapse).

Agents are respondents drawn from a population named as on the command line (a canonical Parquet
path, ``synthetic:N`` or ``cardata``); the setup is an engine, a vector library and a PSII preset,
checked together.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd

from ..engine.base import LM
from ..engine.loading import ModelSpec
from ..survey.codebook import Codebook
from ..survey.population import BASE_COLUMNS, ID, codebook_of, read_population
from ..survey.profile import profile_columns
from ..survey.sources import source_from_text
from .injection import PsiiPreset, check_setup, load_preset
from .library import VectorLibrary, load_library


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


def load_setup(model: ModelSpec, library: str | None, preset: str) -> tuple[LM, VectorLibrary, PsiiPreset]:
    """Engine, library (None or "embedded": the packaged one) and preset, checked together."""
    from ..engine.backends import make_engine

    lib = load_library(library)   # the cheap parts first: a bad path fails before the model loads
    psii = load_preset(preset)
    engine = make_engine(model)
    check_setup(engine, lib, psii)
    return engine, lib, psii
