"""The engine backends a run config selects with ``engine:`` (``hf``, the default, or ``vllm``).

``engine: vllm`` or a mapping ``{name: vllm, <option>: value, ...}``: the options are the
backend's own (:class:`raysim.engine.vllm_engine.VLLMOptions`; the HF engine's ``token_budget``
and ``generate_rows``) and are checked when the config is read, before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raysim.engine.base import LM
from raysim.engine.loading import ModelSpec

HF_OPTIONS = ("token_budget", "generate_rows")
ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class EngineSpec:
    name: str = "hf"
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"engine {self.name!r} not one of {list(ENGINES)}")
        known = self._known()
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ValueError(f"engine {self.name}: unknown option(s) {unknown}; known: {sorted(known)}")
        if self.name == "vllm":
            self.vllm_options()   # checks the values

    def _known(self) -> list[str]:
        from raysim.engine.vllm_engine import VLLMOptions

        return list(HF_OPTIONS) if self.name == "hf" else VLLMOptions.names()

    def vllm_options(self):
        from raysim.engine.vllm_engine import VLLMOptions

        return VLLMOptions(**self.options)

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
    if engine.name == "vllm":
        from raysim.engine.vllm_engine import VLLMEngine

        return VLLMEngine(model, engine.vllm_options())
    from raysim.engine.hf import HFEngine
    from raysim.engine.loading import load_model

    return HFEngine(load_model(model), **engine.options)
