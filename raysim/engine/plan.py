"""Injection plans: what one request adds to the hidden states (docs/design.md, "Injection semantics").

Layer ℓ ∈ 1..n_layers is the output of decoder block ℓ−1 (``hidden_states[ℓ]`` in transformers'
indexing). Each term adds ``scale · vector`` plus its own noise ``σ·ε`` at every position; the
optional final vector is added, without noise, at the output of the last decoder block.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from raysim.engine.noise import derive_seed

Vector = torch.Tensor | np.ndarray


class PlanError(ValueError):
    """A plan that does not fit the model it is applied to."""


def _as_tensor(vector: Vector) -> torch.Tensor:
    """The vector as a CPU float32 tensor. A tensor that requires grad keeps its graph, so the
    hooks' additions pass gradients back to it (a vector trained through the engine)."""
    t = torch.as_tensor(np.asarray(vector) if not isinstance(vector, torch.Tensor) else vector)
    return (t if t.requires_grad else t.detach()).to("cpu", torch.float32)


@dataclass(frozen=True, eq=False)   # vectors are arrays: compare plans by key instead
class Term:
    layer: int
    vector: Vector
    scale: float = 1.0

    def __post_init__(self) -> None:
        if _as_tensor(self.vector).ndim != 1:
            raise PlanError(f"term vector at layer {self.layer} must be 1-D, got shape "
                            f"{tuple(_as_tensor(self.vector).shape)}")

    def scaled(self) -> torch.Tensor:
        """scale · vector as a CPU float32 tensor (hooks cast it to the model's dtype/device)."""
        return _as_tensor(self.vector) * float(self.scale)


@dataclass(frozen=True, eq=False)
class InjectionPlan:
    terms: tuple[Term, ...] = ()
    sigma: float = 0.0
    seed: int = 0
    final_vector: Vector | None = None
    _key: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))
        if self.sigma < 0:
            raise PlanError(f"sigma must be >= 0, got {self.sigma}")
        if self.final_vector is not None and _as_tensor(self.final_vector).ndim != 1:
            raise PlanError("final_vector must be 1-D")
        object.__setattr__(self, "_key", self._digest())

    def _digest(self) -> str:
        # Content hash, so two plans built separately from the same vectors group together.
        return self._hash_vectors(hashlib.sha256(f"{self.sigma!r}|{int(self.seed)}".encode()))

    def _hash_vectors(self, h) -> str:
        for term in self.terms:
            h.update(f"|{term.layer}|{float(term.scale)!r}|".encode())
            h.update(_as_tensor(term.vector).detach().numpy().tobytes())
        if self.final_vector is not None:
            h.update(b"|final|" + _as_tensor(self.final_vector).detach().numpy().tobytes())
        return h.hexdigest()[:24]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InjectionPlan) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self._key)

    @property
    def key(self) -> str:
        """Stable identity of the plan's content (for grouping and prefix reuse)."""
        return self._key

    @property
    def is_empty(self) -> bool:
        """True when the plan cannot change anything (no terms, no final vector)."""
        return not self.terms and self.final_vector is None

    def validate(self, n_layers: int, hidden_size: int) -> None:
        """Raise PlanError unless every layer is in 1..n_layers and every vector has hidden_size."""
        for i, term in enumerate(self.terms):
            if not 1 <= term.layer <= n_layers:
                raise PlanError(f"term {i}: layer {term.layer} out of range 1..{n_layers} "
                                f"(layer ℓ is the output of decoder block ℓ−1)")
            size = _as_tensor(term.vector).shape[0]
            if size != hidden_size:
                raise PlanError(f"term {i} (layer {term.layer}): vector has size {size}, "
                                f"model hidden size is {hidden_size}")
        if self.final_vector is not None and _as_tensor(self.final_vector).shape[0] != hidden_size:
            raise PlanError(f"final_vector has size {_as_tensor(self.final_vector).shape[0]}, "
                            f"model hidden size is {hidden_size}")

    def layer_adds(self, n_layers: int) -> dict[int, torch.Tensor]:
        """Per layer, the sum of scale·v of its terms (and the final vector at ``n_layers``): what
        the plan adds there besides noise, as CPU float32 tensors."""
        adds: dict[int, torch.Tensor] = {}
        for term in self.terms:
            adds[term.layer] = adds[term.layer] + term.scaled() if term.layer in adds else term.scaled()
        final = self.final()
        if final is not None:
            adds[n_layers] = adds[n_layers] + final if n_layers in adds else final
        return adds

    def noise_terms(self) -> list[tuple[int, int]]:
        """(layer, term index) of every term that draws noise: the index keys its noise stream."""
        return [(term.layer, j) for j, term in enumerate(self.terms)] if self.sigma > 0 else []

    @property
    def vectors_key(self) -> str:
        """Identity of the plan's vectors alone (not its sigma or seed): plans differing only in
        their noise share one upload of their vectors to a vLLM replica."""
        return self._hash_vectors(hashlib.sha256())

    def with_seed(self, seed: int) -> InjectionPlan:
        return InjectionPlan(self.terms, self.sigma, seed, self.final_vector)

    def for_question(self, qid: str) -> InjectionPlan:
        """The plan under noise scope ``question``: a fresh seed per question, derived
        deterministically from (seed, qid). Scope ``respondent`` uses the plan as it is."""
        return self.with_seed(derive_seed(self.seed, qid))

    def final(self) -> torch.Tensor | None:
        return None if self.final_vector is None else _as_tensor(self.final_vector)


NOISE_SCOPES = ("respondent", "question")


def scoped(plan: InjectionPlan, scope: str, qid: str) -> InjectionPlan:
    """Apply a noise scope policy to a respondent's plan for question ``qid``."""
    if scope == "respondent":
        return plan
    if scope == "question":
        return plan.for_question(qid)
    raise PlanError(f"noise scope {scope!r} not one of {NOISE_SCOPES}")
