"""The engine backends a run config selects with ``engine:`` (``hf``, the default, ``vllm``, or
``dry``: tokenises like the model and computes nothing, raysim.engine.dry),
and :func:`make_engine`, the one place an engine replica is built.

``engine: vllm`` or a mapping ``{name: vllm, <option>: value, ...}``: the options are the fields
of the backend's options dataclass (:class:`raysim.engine.hf.HFOptions`,
:class:`raysim.engine.vllm_engine.VLLMOptions`) and are checked when the config is read, before
anything loads. A new backend is one entry in ``BACKENDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from raysim.engine.base import LM
from raysim.engine.dry import DryEngine, DryOptions
from raysim.engine.hf import HFEngine, HFOptions
from raysim.engine.loading import ModelSpec, load_model
from raysim.engine.vllm_engine import VLLMEngine, VLLMOptions
from raysim.mappings import from_mapping


@dataclass(frozen=True)
class Backend:
    options_class: type
    """A frozen dataclass of the backend's settings: the keys ``engine:`` may give."""
    build: Callable[[ModelSpec, Any], LM]
    """(model, options instance) → one loaded replica."""


BACKENDS = {
    "hf": Backend(HFOptions, lambda model, options: HFEngine(load_model(model), options)),
    "vllm": Backend(VLLMOptions, VLLMEngine),
    "dry": Backend(DryOptions, DryEngine),
}


@dataclass(frozen=True)
class EngineSpec:
    """A backend and the options a config gave it (only those: ``to_dict`` writes them back as
    given, the backend's defaults fill in the rest)."""

    name: str = "hf"
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"engine {self.name!r} not one of {list(BACKENDS)}")
        self.backend_options()   # bad names and values fail when the config is read

    def backend_options(self) -> Any:
        """The options as the backend's dataclass."""
        return from_mapping(BACKENDS[self.name].options_class, self.options, f"engine {self.name}")

    @classmethod
    def parse(cls, raw: Any) -> EngineSpec:
        """``None`` (the HF engine), a backend name, or a mapping with ``name`` and options."""
        if raw is None:
            return cls()
        if isinstance(raw, str):
            return cls(raw)
        if isinstance(raw, dict):
            raw = dict(raw)
            return cls(raw.pop("name", "hf"), raw)
        raise ValueError(f"engine: expected a backend name or a mapping, got {type(raw).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


def make_engine(model: ModelSpec, engine: EngineSpec = EngineSpec()) -> LM:
    """Load ``model`` on the ``engine`` backend (one replica)."""
    return BACKENDS[engine.name].build(model, engine.backend_options())
