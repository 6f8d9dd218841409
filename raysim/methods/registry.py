"""Simulation methods by name, as run configs name them.

A method turns a batch of respondents into result rows (raysim.pipeline.results); the pipeline
loads a model replica only for methods that need one, and reads only the population columns
the method uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ..engine.base import LM
from ..survey.codebook import Codebook
from ..survey.population import BASE_COLUMNS
from ..survey.profile import load_templates
from .pe import pe_results
from .uniform import uniform_results

# (engine or None, respondents, codebook, qids, run_id, config_hash) -> result rows
MethodFn = Callable[[LM | None, pd.DataFrame, Codebook, list[str], str, str], pd.DataFrame]


@dataclass(frozen=True)
class Method:
    name: str
    run: MethodFn
    needs_model: bool
    profile: bool  # reads the demographic items the profile text is rendered from

    def columns(self, codebook: Codebook) -> list[str]:
        """The population columns this method reads."""
        if not self.profile:
            return list(BASE_COLUMNS)
        return list(BASE_COLUMNS) + [k for k in load_templates().order if k in codebook]


def _uniform(engine, respondents, codebook, qids, run_id, config_hash):
    return uniform_results(respondents, codebook, qids, run_id=run_id, config_hash=config_hash)


def _pe(engine, respondents, codebook, qids, run_id, config_hash):
    return pe_results(engine, respondents, codebook, qids, run_id=run_id, config_hash=config_hash,
                      method=f"pe ({engine.loaded.name})")


METHODS: dict[str, Method] = {
    "uniform": Method("uniform", _uniform, needs_model=False, profile=False),
    "pe": Method("pe", _pe, needs_model=True, profile=True),
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}") from None
