"""The fitter interface and its registry.

A fitter learns something from a sample of real respondents before a method simulates (a
calibrator, a mixture, a persona weighting). ``raysim fit CONFIG -o FIT`` draws the sample,
hands the fitter a ``FitContext`` whose ``answer`` runs the config's method on the model actors,
and writes what ``fit`` returns as the artefact ``FIT/fit.yaml`` (``raysim.fits.artefact``).
A fitter of one's own is one module: subclass ``Fitter``, decorate it with
``@register_fitter("name")``, and expose the module through the ``raysim.fitters`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, ContextManager, Protocol

import numpy as np
import pandas as pd

from ..registry import Registry
from ..survey.codebook import Codebook

ENTRY_POINT_GROUP = "raysim.fitters"


class FitterError(ValueError):
    """A fit config or fit that cannot be run; the message names the key at fault."""


FITTERS: Registry[type["Fitter"]] = Registry("fitter", ENTRY_POINT_GROUP, "raysim.fits", FitterError)
register_fitter = FITTERS.register


class FitContext(Protocol):
    codebook: Codebook
    qids: tuple[str, ...]
    respondents: pd.DataFrame
    """The calibration sample: population rows (their real answers included)."""
    answer_mode: str

    def answer(self) -> pd.DataFrame:
        """Result rows of the run's method for every respondent of the sample × question."""

    def prompt_backend(self, crafter: str | None) -> ContextManager[Any]:
        """The run's model (and ``crafter``, a model name or path; None: the same model) on the
        model actors, as a ``raysim.methods.mixture.search.PromptBackend`` over the run's questions."""

    def search_weights(self, components: list[np.ndarray], observed: list[np.ndarray], samples: int,
                       seed: int) -> tuple[np.ndarray, float]:
        """Mixture weights found by a Ray Tune search of ``samples`` trials, and their objective."""


@dataclass(frozen=True)
class NoParams:
    pass


class Fitter(ABC):
    Params: ClassVar[type] = NoParams
    answer_modes: ClassVar[tuple[str, ...]] = ("logprob", "generate")
    """The answer modes of the run it can fit from."""

    def __init__(self, params: Any) -> None:
        self.params = params

    @classmethod
    def models(cls, params: Any) -> list[str]:
        """Models it loads beside the run's (names or paths), checked before the fit starts."""
        return []

    @classmethod
    def fitted_items(cls, result: dict[str, Any]) -> list[str] | None:
        """The question ids a fit with this ``result`` was fitted to, so that scores can show
        them apart from the run's other (held-out) questions; None: not fitted to items."""
        return None

    @abstractmethod
    def fit(self, context: FitContext) -> dict[str, Any]:
        """The artefact's ``result`` (plain YAML types)."""
