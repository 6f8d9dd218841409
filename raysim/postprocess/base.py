"""The post-processing-step interface and its registry.

A step maps a run's answer distributions to new ones (a calibrator): it reads result rows in
logprob mode and returns new probabilities, never editing result files. Steps run when a run
is scored (``raysim score``, from the run config's ``postprocess:`` list or ``--postprocess``).
A step of one's own is one module: subclass ``Step``, decorate it with ``@register_step("name")``,
and expose the module through the ``raysim.postprocess_steps`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from ..mappings import from_mapping
from ..registry import Registry
from ..survey.codebook import Codebook

if TYPE_CHECKING:
    from ..fits.artefact import Fit

ENTRY_POINT_GROUP = "raysim.postprocess_steps"


class StepError(ValueError):
    """A post-processing step that cannot be applied; the message names the key at fault."""


STEPS: Registry[type["Step"]] = Registry("post-processing step", ENTRY_POINT_GROUP, "raysim.postprocess", StepError)
register_step = STEPS.register


@dataclass(frozen=True)
class NoParams:
    pass


class Step(ABC):
    Params: ClassVar[type] = NoParams

    def __init__(self, name: str, params: Any) -> None:
        self.name, self.params = name, params

    @abstractmethod
    def apply(self, rows: pd.DataFrame, codebook: Codebook, fit: Fit | None) -> pd.Series:
        """New ``probs`` for ``rows`` (result rows with probabilities), in their order; ``fit``
        is the run's fitted artefact if it names one."""

    def to_config(self) -> dict[str, Any]:
        return {self.name: asdict(self.params)}


def parse_steps(raw: Any, where: str = "postprocess") -> list[Step]:
    """A ``postprocess:`` list: each entry a step name, or a one-key mapping {name: params}."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StepError(f"{where}: expected a list of steps, got {type(raw).__name__}")
    steps = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise StepError(f"{at}: a step is a name or a mapping with one key, got {entry!r}")
        (name, params), = entry.items()
        cls = STEPS.get(str(name), at)
        steps.append(cls(str(name), from_mapping(cls.Params, params, f"{at}.{name}", StepError)))
    return steps


def apply_steps(rows: pd.DataFrame, steps: list[Step], codebook: Codebook, fit: Fit | None = None) -> pd.DataFrame:
    """A copy of ``rows`` with each step applied in turn to ``probs``."""
    if not steps:
        return rows
    if "probs" not in rows or rows["probs"].isna().any():
        raise StepError("post-processing steps map answer distributions: the run has none (generate mode)")
    out = rows.copy()
    for step in steps:
        out["probs"] = step.apply(out, codebook, fit).to_numpy()
    return out
