"""The vLLM side of the vLLM engine: a worker extension and a logits processor, on stock vLLM.

Loaded inside vLLM's workers (``worker_extension_cls`` and ``logits_processors`` name this
module). Each request carries its part of the work in ``SamplingParams.extra_args["raysim"]``:

* ``v`` (a vectors id uploaded once per replica by :meth:`RaysimWorkerExtension.raysim_put_vectors`),
  ``sigma``, ``seed``, ``noise`` ([layer, term] pairs): the injection plan. Layer ℓ's hook adds the
  request's scale·v sum and σ·ε(seed, term, absolute position) to the residual stream after
  decoder block ℓ−1, exactly what the HF engine adds (:mod:`raysim.engine.hooks`).
* ``score``: {key, from, T}: log-softmax(logits / T) of the prompt's own tokens at positions
  ``from``.. (the option continuation), read from the final hidden states in a hook.
* ``capture``: {key, layers, from, to}: the (injected) residual stream at those layers for the
  positions [from, to) as they are computed, prompt or decode tokens alike.
* ``sample``: {T, top_k, top_p, seed}: the counter-based draw of :mod:`raysim.engine.sampling`,
  applied by :class:`CounterSampler` (the request itself is greedy).

A continuous batch is one flat row of tokens: ``input_batch.req_ids`` and ``query_start_loc``
say which tokens belong to which request, and the decoder layers receive the tokens' absolute
positions, so a request's additions do not depend on its batch, on chunked prefill or on decode
scheduling. Score and capture results are kept per position (a preempted request recomputed
later overwrites, never double counts) until the driver takes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from raysim.engine.noise import normals
from raysim.engine.sampling import sample
from raysim.engine.vllm_engine import KEY


@dataclass
class _Noise:
    term: int
    tokens: torch.Tensor    # [n] rows of the flat batch
    seeds: torch.Tensor     # [n] int64
    sigmas: torch.Tensor    # [n] float32


@dataclass
class _Capture:
    key: str
    rows: torch.Tensor      # flat-batch rows to read
    slots: torch.Tensor     # their index in the result buffer (position − from)
    layers: list[int]


@dataclass
class _Step:
    """What one forward of the continuous batch adds and reads, built once per forward."""

    positions: torch.Tensor
    adds: dict[int, torch.Tensor] = field(default_factory=dict)        # layer → [N, H]
    noise: dict[int, list[_Noise]] = field(default_factory=dict)       # layer → terms
    captures: list[_Capture] = field(default_factory=list)
    scores: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]] = field(default_factory=list)
    """(key, rows, slots, target ids, temperature)."""


class _Replica:
    """Hooks and per-replica state on one vLLM worker's model."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        model = runner.model
        self.inner = model.model
        self.layers = self.inner.layers
        self.n_layers = len(self.layers)
        self.hidden_size = int(model.config.hidden_size)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.vectors: dict[str, dict[int, torch.Tensor]] = {}
        self.scores: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.captures: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.step: _Step | None = None
        # Not on the inner model itself: vLLM's compile decorator replaces its __call__, so its
        # own hooks never run. Its first block sees the positions and the embeddings (layer 0),
        # its final norm the states the logits come from.
        self.layers[0].register_forward_pre_hook(self._begin)
        for i, layer in enumerate(self.layers):
            layer.register_forward_hook(self._layer_hook(i + 1))
        self.inner.norm.register_forward_hook(self._final)

    # ------------------------------------------------------------------ per-forward state

    def _begin(self, module, args) -> None:
        self.step = None
        positions, embeddings = args[0], args[1]
        n = self.runner.input_batch.num_reqs
        if n == 0:    # profiling and dummy runs
            return
        starts = self.runner.query_start_loc.np[: n + 1]
        step = _Step(positions)
        rows_of: dict[int, list[tuple[torch.Tensor, dict]]] = {}   # layer → [(rows, vectors)]
        for i, rid in enumerate(self.runner.input_batch.req_ids[:n]):
            state = self.runner.requests[rid]
            extra = (state.sampling_params.extra_args or {}) if state.sampling_params else {}
            spec = extra.get(KEY)
            if not spec:
                continue
            lo, hi = int(starts[i]), int(starts[i + 1])
            if hi <= lo:
                continue
            rows = torch.arange(lo, hi, device=positions.device)
            pos = positions[lo:hi]
            if spec.get("v") is not None:
                for layer, vec in self.vectors[spec["v"]].items():
                    rows_of.setdefault(layer, []).append((rows, vec))
            for layer, term in spec.get("noise", ()):
                step.noise.setdefault(layer, []).append(_Noise(
                    term, rows, torch.full((hi - lo,), spec["seed"], dtype=torch.int64, device=rows.device),
                    torch.full((hi - lo,), float(spec["sigma"]), device=rows.device)))
            if "capture" in spec:
                cap = spec["capture"]
                keep = (pos >= cap["from"]) & (pos < cap["to"])
                if bool(keep.any()):
                    step.captures.append(_Capture(cap["key"], rows[keep], pos[keep] - cap["from"], cap["layers"]))
            if "score" in spec:
                sc = spec["score"]
                prompt = state.prompt_token_ids
                # Row at position p predicts prompt token p + 1: read rows from − 1 .. len − 2.
                keep = (pos >= sc["from"] - 1) & (pos < len(prompt) - 1)
                if bool(keep.any()):
                    targets = torch.tensor(prompt, device=pos.device)[pos[keep] + 1]
                    step.scores.append((sc["key"], rows[keep], pos[keep] + 1 - sc["from"], targets, float(sc["T"])))
        total = positions.shape[0]
        for layer, parts in rows_of.items():
            add = torch.zeros((total, self.hidden_size), dtype=torch.float32, device=self.device)
            for rows, vec in parts:
                add[rows] += vec
            step.adds[layer] = add.to(self.dtype)
        self.step = step
        self._capture(0, embeddings)

    def _delta(self, step: _Step, layer: int, like: torch.Tensor) -> torch.Tensor | None:
        add = step.adds.get(layer)
        terms = step.noise.get(layer)
        if add is None and not terms:
            return None
        delta = add if add is not None else torch.zeros_like(like)
        if terms:
            noise = torch.zeros(like.shape, dtype=torch.float32, device=like.device)
            for t in terms:
                eps = normals(t.seeds, t.term, step.positions[t.tokens][:, None], self.hidden_size)[:, 0]
                noise[t.tokens] += t.sigmas[:, None] * eps
            # The HF engine adds the vectors, then the noise cast to the model's dtype.
            delta = delta + noise.to(like.dtype)
        return delta

    # ------------------------------------------------------------------ hooks

    def _layer_hook(self, layer: int):
        def hook(module, args, output):
            step = self.step
            if step is None:
                return None
            hidden, residual = output
            delta = self._delta(step, layer, hidden)
            if delta is not None:
                # vLLM's blocks return (block output, stream before it); the stream after the
                # block is their sum, so adding to the first lands in the residual stream. Out of
                # place: the next layer's fused add-norm may overwrite its inputs.
                hidden = hidden + delta
            if step.captures:
                self._capture(layer, hidden + residual)
            return None if delta is None else (hidden, residual)
        return hook

    def _capture(self, layer: int, stream: torch.Tensor) -> None:
        step = self.step
        if step is None:
            return
        for cap in step.captures:
            if layer in cap.layers:
                values, filled = self.captures[cap.key]
                values[cap.slots, cap.layers.index(layer)] = stream[cap.rows].float()
                filled[cap.slots] = True

    def _final(self, module, args, output) -> None:
        step = self.step
        self.step = None
        if step is None or not step.scores:
            return
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        for key, rows, slots, targets, temperature in step.scores:
            logits = self.runner.model.compute_logits(hidden[rows]).float()
            logprobs = torch.log_softmax(logits / temperature, dim=-1)
            values, filled = self.scores[key]
            values[slots] = logprobs.gather(-1, targets[:, None])[:, 0].double()
            filled[slots] = True

    # ------------------------------------------------------------------ driver calls

    def expect(self, scores: dict[str, int], captures: dict[str, tuple[int, int]]) -> None:
        """Result buffers for the coming requests: score key → targets, capture key → (positions, layers)."""
        for key, n in scores.items():
            self.scores[key] = (torch.zeros(n, dtype=torch.float64, device=self.device),
                                torch.zeros(n, dtype=torch.bool, device=self.device))
        for key, (n, n_layers) in captures.items():
            self.captures[key] = (torch.zeros((n, n_layers, self.hidden_size), device=self.device),
                                  torch.zeros(n, dtype=torch.bool, device=self.device))

    def take(self, keys: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for key in keys:
            values, filled = self.scores.pop(key, None) or self.captures.pop(key)
            out[key] = (values.cpu().numpy(), filled.cpu().numpy())
        return out


class RaysimWorkerExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``); called through
    ``LLM.collective_rpc``. Names carry a prefix: vLLM refuses an extension that shadows any
    attribute of its worker."""

    def raysim_install(self) -> dict[str, int]:
        if not hasattr(self, "_raysim"):
            self._raysim = _Replica(self.model_runner)
        return {"n_layers": self._raysim.n_layers, "hidden_size": self._raysim.hidden_size}

    def raysim_put_vectors(self, vectors: dict[str, dict[int, np.ndarray]], drop: list[str]) -> int:
        """Keep each id's per-layer additions on the device (once per replica); forget ``drop``."""
        rep = self._raysim
        for key in drop:
            rep.vectors.pop(key, None)
        for key, layers in vectors.items():
            rep.vectors[key] = {int(layer): torch.as_tensor(np.asarray(v, dtype=np.float32)).to(rep.device)
                                for layer, v in layers.items()}
        return len(rep.vectors)

    def raysim_expect(self, scores: dict[str, int], captures: dict[str, tuple[int, int]]) -> None:
        self._raysim.expect(scores, captures)

    def raysim_take(self, keys: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self._raysim.take(keys)


class CounterSampler(AdapterLogitsProcessor):
    """Draws a request's token as the HF engine does (counter-based Gumbel-max keyed by seed and
    step) and leaves only that token: the request runs greedy, so vLLM picks it."""

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params):
        spec = ((params.extra_args or {}).get(KEY) or {}).get("sample")
        if not spec:
            return None
        temperature, top_k, top_p = float(spec["T"]), int(spec["top_k"]), float(spec["top_p"])
        seed = int(spec["seed"])

        def pick(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            seeds = torch.tensor([seed], dtype=torch.int64, device=logits.device)
            steps = torch.tensor([len(output_ids)], dtype=torch.int64, device=logits.device)
            token = sample(logits[None].float(), temperature, top_k, top_p, seeds, steps)[0]
            only = torch.full_like(logits, float("-inf"))
            only[token] = 0.0
            return only

        return pick
