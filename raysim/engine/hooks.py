"""Forward hooks that apply per-row injection plans at the decoder layers.

Installed once per replica; inert (return None, so outputs pass through untouched) unless a call
sets per-row state through :meth:`InjectionHooks.active`, which always clears it afterwards.
Absolute positions come from the ``position_ids`` each decoder layer receives: the backends pass
them explicitly (derived from the attention mask and the cached length), so padded rows, shared
prefixes and decode steps see the same positions as one unpadded forward of the row alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from raysim.engine.loading import decoder_layers
from raysim.engine.noise import as_seed, normals
from raysim.engine.plan import InjectionPlan


@dataclass
class _NoiseTerm:
    term: int
    rows: torch.Tensor          # [R] row indices carrying this term
    sigmas: torch.Tensor        # [R] float32


@dataclass
class _LayerState:
    add: torch.Tensor | None    # [B, H] sum of scale·v (and the final vector) per row
    noise: list[_NoiseTerm] = field(default_factory=list)


@dataclass
class _State:
    rows: int
    seeds: torch.Tensor         # [B] int64
    layers: dict[int, _LayerState]


class InjectionHooks:
    """h̃ = h + scale·v + σ·ε for every term of every row's plan, at layer ℓ's output."""

    def __init__(self, model: torch.nn.Module, n_layers: int, hidden_size: int) -> None:
        self.n_layers = n_layers
        self.hidden_size = hidden_size
        self._state: _State | None = None
        self._handles = [
            layer.register_forward_hook(self._make_hook(i + 1), with_kwargs=True)
            for i, layer in enumerate(decoder_layers(model))
        ]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def idle(self) -> bool:
        return self._state is None

    @contextmanager
    def active(self, plans: Sequence[InjectionPlan | None], device: torch.device,
               dtype: torch.dtype) -> Iterator[None]:
        """Apply ``plans[b]`` to batch row b for the forwards run inside the block.

        A single plan applies to every row (a shared prefix expanded over questions). Rows whose
        plan is None or empty get nothing.
        """
        if self._state is not None:
            raise RuntimeError("injection hooks are already active (nested calls are not supported)")
        self._state = self._build(plans, device, dtype)
        try:
            yield
        finally:
            self._state = None

    def _build(self, plans: Sequence[InjectionPlan | None], device: torch.device,
               dtype: torch.dtype) -> _State | None:
        if all(p is None or p.is_empty for p in plans):
            return None
        for plan in plans:
            if plan is not None:
                plan.validate(self.n_layers, self.hidden_size)
        rows = len(plans)
        adds: dict[int, torch.Tensor] = {}
        noise: dict[tuple[int, int], tuple[list[int], list[float]]] = {}
        for b, plan in enumerate(plans):
            if plan is None:
                continue
            for layer, add in plan.layer_adds(self.n_layers).items():
                adds.setdefault(layer, torch.zeros(rows, self.hidden_size))[b] += add
            for key in plan.noise_terms():
                rows_j, sig_j = noise.setdefault(key, ([], []))
                rows_j.append(b)
                sig_j.append(plan.sigma)
        layers: dict[int, _LayerState] = {}
        for layer in sorted(set(adds) | {layer for layer, _ in noise}):
            add = adds.get(layer)
            layers[layer] = _LayerState(None if add is None else add.to(device, dtype))
        for (layer, j), (rows_j, sig_j) in sorted(noise.items()):
            layers[layer].noise.append(_NoiseTerm(
                j, torch.tensor(rows_j, device=device), torch.tensor(sig_j, device=device)))
        seeds = torch.tensor([as_seed(p.seed) if p is not None else 0 for p in plans],
                             dtype=torch.int64, device=device)
        return _State(rows, seeds, layers)

    def _make_hook(self, layer: int):
        def hook(module, args, kwargs, output):
            state = self._state
            if state is None or layer not in state.layers:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = self._inject(state, state.layers[layer], hidden, kwargs.get("position_ids"))
            return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden
        return hook

    def _inject(self, state: _State, ls: _LayerState, hidden: torch.Tensor,
                position_ids: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = hidden.shape
        expand = state.rows == 1 and batch > 1
        if state.rows != batch and not expand:
            raise RuntimeError(f"injection plans for {state.rows} rows, forward batch has {batch}")
        if ls.add is not None:
            hidden = hidden + ls.add[:, None, :]
        if ls.noise:
            if position_ids is None:
                raise RuntimeError("noisy injection needs the position_ids passed to the decoder "
                                   "layers; call the model with explicit position_ids")
            positions = position_ids.expand(batch, length)
            seeds = state.seeds.expand(batch) if expand else state.seeds
            noise = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
            for nt in ls.noise:
                rows = torch.arange(batch, device=hidden.device) if expand else nt.rows
                sig = nt.sigmas.expand(batch) if expand else nt.sigmas
                eps = normals(seeds[rows], nt.term, positions[rows], self.hidden_size)
                noise[rows] += sig[:, None, None] * eps
            hidden = hidden + noise.to(hidden.dtype)
        return hidden
