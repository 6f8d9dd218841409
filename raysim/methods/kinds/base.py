"""The method-kind interface, its registry, and what a run fixes for a method (``Setup``).

A kind is one module: a ``MethodKind`` subclass registered by name with ``@register_kind``,
declaring

* ``Params``: a frozen dataclass of its parameters, the keys a method YAML gives beside
  ``name``, ``kind`` and ``description`` (validated when the YAML is read; errors name file and key);
* ``resources(params)``: the named resources it needs or can use (``vectors``, ``preset``,
  ``translations``, ``fit``: see ``raysim.methods.resources``), which the run loads once per
  model replica and hands over in ``Setup.resources``;
* ``columns(params, codebook)``: the population columns it reads beyond the base ones;
* ``answer(rows)``: respondents → per respondent × question answers, through the engine.

Third-party kinds register through the entry-point group ``raysim.method_kinds``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from ...engine.base import LM
from ...registry import Registry
from ...survey.codebook import Codebook

if TYPE_CHECKING:
    from ..spec import MethodSpec

ENTRY_POINT_GROUP = "raysim.method_kinds"
ANSWER_MODES = ("logprob", "generate")


class MethodError(ValueError):
    """A method config that cannot be run; the message names the file and key."""


KINDS: Registry[type["MethodKind"]] = Registry("method kind", ENTRY_POINT_GROUP, "raysim.methods.kinds", MethodError)
register_kind = KINDS.register


@dataclass(frozen=True)
class Setup:
    """What a run fixes for its method (one per model replica)."""

    codebook: Codebook
    qids: tuple[str, ...]
    answer: str = "logprob"
    seed: int = 0
    resources: Mapping[str, Any] = field(default_factory=dict)
    """Loaded resources by name (only those the method's kind declared and the run gave)."""


Answers = dict[str, list]
"""Per respondent × question, respondent-major: ``probs`` (logprob mode: one array per row, over
the item's options in codebook order), or ``sampled_code``, ``raw_text`` and ``valid`` (generate)."""


@dataclass(frozen=True)
class NoParams:
    pass


class MethodKind(ABC):
    Params: ClassVar[type] = NoParams
    needs_model: ClassVar[bool] = True

    def __init__(self, spec: MethodSpec, engine: LM | None, setup: Setup) -> None:
        self.spec, self.params, self.engine, self.setup = spec, spec.params, engine, setup
        self.codebook = setup.codebook
        self.items = [setup.codebook[q] for q in setup.qids]

    # ------------------------------------------------------------ declared before a run starts

    @classmethod
    def check(cls, params: Any, where: str) -> None:
        """Checks of parameter values beyond their types; raise ``MethodError(f"{where}: ...")``."""

    @classmethod
    def resources(cls, params: Any) -> dict[str, bool]:
        """Resource name → required (False: used when the run gives it)."""
        return {}

    @classmethod
    def columns(cls, params: Any, codebook: Codebook) -> list[str]:
        """Population columns read beyond ``BASE_COLUMNS``."""
        return []

    @classmethod
    def check_codebook(cls, params: Any, codebook: Codebook) -> None:
        """Refuse a codebook the method cannot prompt with (a ``MethodError``), before any actor starts."""

    @classmethod
    def hash_defaults(cls) -> dict[str, Any]:
        """Keys a run's hash of the method adds to the parameters (see ``MethodSpec.to_dict``)."""
        return {}

    # ------------------------------------------------------------ at work, on a model replica

    def resource(self, name: str) -> Any:
        try:
            return self.setup.resources[name]
        except KeyError:
            raise MethodError(f"method {self.spec.name!r} needs the resource {name!r}, which the run "
                              "did not give") from None

    def label(self) -> str:
        """The ``method`` column of its result rows."""
        return self.spec.name if self.engine is None else f"{self.spec.name} ({self.engine.name})"

    @abstractmethod
    def answer(self, rows: list[dict[str, Any]]) -> Answers:
        """Answers of ``rows`` (respondent records) to every question of the setup."""
