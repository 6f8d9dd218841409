"""Finding the prompts of a mixture: EM and gradient boosting over crafted system prompts.

Both only ever keep a change that lowers the objective (the mean normalised Wasserstein distance
of the fitted targets, weights re-optimised by SLSQP after every change), so the objective never
goes up from one iteration to the next.

EM: K prompts crafted toward observations sampled by weight. E-step: the distance between each
observation and each prompt's distribution (E_p|X − y| / (K − 1), averaged over the targets the
observation answered), assignment ∝ exp(−sharpness · d), one assignment sampled per
observation. M-step: each prompt with assigned observations is re-crafted toward one of them
(sampled by weight), told what it mostly produces instead; a revision is kept if it lowers the
objective. Stops after ``iterations`` or when an iteration changes neither prompts nor weights.

Gradient boosting: the default prompt with weight 1; each round takes the residual between the
observed and the mixture's distributions, samples a target answer from its positive part, crafts
a prompt for it, appends it and re-optimises all weights (kept if the objective drops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from .crafting import Completer, Crafted, CraftRequest, craft
from .scenario import Observed, Target
from .weights import objective, slsqp

TOL = 1e-12


class PromptBackend(Completer, Protocol):
    def item_distributions(self, prompts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """Per prompt: item id → its option distribution in scale order, answered under that
        system prompt (logprob mode: exact)."""


class Distributions:
    """Each prompt's distribution on every target, asked once per prompt text (batched)."""

    def __init__(self, backend: PromptBackend, targets: list[Target]) -> None:
        self.backend, self.targets = backend, targets
        self._cache: dict[str, list[np.ndarray]] = {}

    def __call__(self, prompts: Sequence[str]) -> list[np.ndarray]:
        """Per target: [prompts, K] (``prompts`` in order)."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if new:
            for p, probs in zip(new, self.backend.item_distributions(new)):
                self._cache[p] = [t.distribution(probs) for t in self.targets]
        return [np.stack([self._cache[p][j] for p in prompts]) for j in range(len(self.targets))]


@dataclass
class Fitted:
    prompts: list[str]
    weights: np.ndarray
    history: list[dict] = field(default_factory=list)
    """Per iteration (0: the start): objective and what changed."""
    crafting: dict = field(default_factory=lambda: {"attempts": 0, "rejected_leak": 0, "rejected_invalid": 0,
                                                    "no_prompt": 0, "examples": []})
    stopped: str = ""


@dataclass
class Search:
    targets: list[Target]
    observed: Observed
    backend: PromptBackend
    seed: int = 0
    attempts: int = 3
    sharpness: float = 10.0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.dists = Distributions(self.backend, self.targets)

    # ------------------------------------------------------------------ shared steps

    def score(self, prompts: list[str], start: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        comps = self.dists(prompts)
        w = slsqp(comps, self.observed.distributions, start)
        return w, objective(comps, self.observed.distributions, w)

    def craft(self, fitted: Fitted, requests: list[CraftRequest]) -> list[str | None]:
        made: Crafted = craft(self.backend, requests, attempts=self.attempts, seed=self.seed)
        c = fitted.crafting
        c["attempts"] += made.attempts
        c["rejected_leak"] += made.rejected_leak
        c["rejected_invalid"] += made.rejected_invalid
        c["no_prompt"] += sum(p is None for p in made.prompts)
        c["examples"] = (c["examples"] + made.examples)[:5]
        return made.prompts

    def sample_observation(self, among: np.ndarray) -> tuple[int, int]:
        """(target, position) of one observation of ``among`` drawn by weight, one of its
        answered targets drawn at random."""
        w = self.observed.weights[among]
        i = among[self.rng.choice(len(among), p=w / w.sum())]
        answered = np.flatnonzero(~np.isnan(self.observed.positions[i]))
        j = int(self.rng.choice(answered))
        return j, int(self.observed.positions[i, j])

    def answerable(self) -> np.ndarray:
        return np.flatnonzero((~np.isnan(self.observed.positions)).any(axis=1) & (self.observed.weights > 0))

    # ------------------------------------------------------------------ EM

    def em(self, k: int, iterations: int = 20) -> Fitted:
        pool = self.answerable()
        fitted = Fitted([], np.ones(0))
        prompts: list[str] = []
        for attempt in range(3):   # crafting may fail for some draws: draw again for the missing ones
            draws = [self.sample_observation(pool) for _ in range(k - len(prompts))]
            made = self.craft(fitted, [CraftRequest(self.targets[j], y, key=f"em:init:{attempt}:{n}")
                                       for n, (j, y) in enumerate(draws)])
            prompts += [p for p in made if p is not None and p not in prompts]
            if len(prompts) >= k:
                break
        if not prompts:
            raise RuntimeError("the crafter wrote no usable prompt (every attempt leaked the answer or was unusable)")
        weights, value = self.score(prompts)
        fitted.history.append({"iteration": 0, "objective": value, "changed": len(prompts)})
        for it in range(1, iterations + 1):
            comps = self.dists(prompts)
            d = self.distances(comps)                                # [prompts, observations]
            r = np.exp(-self.sharpness * (d - d.min(axis=0)))
            r /= r.sum(axis=0)
            z = np.array([self.rng.choice(len(prompts), p=r[:, i]) for i in range(d.shape[1])])
            requests, which = [], []
            for kk in range(len(prompts)):
                assigned = pool[z[pool] == kk] if len(pool) else pool
                if not len(assigned):
                    continue
                j, y = self.sample_observation(assigned)
                answered = int(np.argmax(comps[j][kk]))
                requests.append(CraftRequest(self.targets[j], y, previous=prompts[kk], answered=answered,
                                             key=f"em:{it}:{kk}"))
                which.append(kk)
            changed = 0
            for kk, candidate in zip(which, self.craft(fitted, requests)):
                if candidate is None or candidate in prompts:
                    continue
                trial = prompts[:kk] + [candidate] + prompts[kk + 1:]
                w, v = self.score(trial, weights)
                if v < value - TOL:
                    prompts, weights, value, changed = trial, w, v, changed + 1
            w, v = self.score(prompts, weights)
            moved = float(np.abs(w - weights).max())
            if v < value - TOL:
                weights, value = w, v
            fitted.history.append({"iteration": it, "objective": value, "changed": changed})
            if changed == 0 and moved < 1e-6:
                fitted.stopped = f"unchanged at iteration {it}"
                break
        else:
            fitted.stopped = f"{iterations} iterations"
        fitted.prompts, fitted.weights = prompts, weights
        return fitted

    def distances(self, comps: list[np.ndarray]) -> np.ndarray:
        """[prompts, observations]: E_p|X − y| / (K − 1), averaged over the answered targets."""
        pos = self.observed.positions
        total = np.zeros((comps[0].shape[0], len(pos)))
        count = np.zeros(len(pos))
        for j, c in enumerate(comps):
            ok = ~np.isnan(pos[:, j])
            grid = np.arange(c.shape[1], dtype=np.float64)
            gap = np.abs(grid[:, None] - np.nan_to_num(pos[:, j])[None, :]) / max(c.shape[1] - 1, 1)
            total += (c @ gap) * ok
            count += ok
        return total / np.maximum(count, 1)

    # ------------------------------------------------------------------ gradient boosting

    def boost(self, default_prompt: str, rounds: int) -> Fitted:
        fitted = Fitted([default_prompt], np.ones(1))
        prompts, weights = [default_prompt], np.ones(1)
        value = objective(self.dists(prompts), self.observed.distributions, weights)
        fitted.history.append({"iteration": 0, "objective": value, "changed": 1})
        for it in range(1, rounds + 1):
            mix = [weights @ c for c in self.dists(prompts)]
            residual = [np.clip(o - m, 0, None) for o, m in zip(self.observed.distributions, mix)]
            mass = np.array([r.sum() for r in residual])
            if mass.sum() <= TOL:
                fitted.stopped = f"no residual at round {it}"
                break
            j = int(self.rng.choice(len(mass), p=mass / mass.sum()))
            y = int(self.rng.choice(len(residual[j]), p=residual[j] / mass[j]))
            (candidate,) = self.craft(fitted, [CraftRequest(self.targets[j], y, key=f"gb:{it}")])
            changed = 0
            if candidate is not None and candidate not in prompts:
                w, v = self.score(prompts + [candidate], np.append(weights, 0.0))
                if v < value - TOL:
                    prompts, weights, value, changed = prompts + [candidate], w, v, 1
            fitted.history.append({"iteration": it, "objective": value, "changed": changed})
        else:
            fitted.stopped = f"{rounds} rounds"
        fitted.prompts, fitted.weights = prompts, weights
        return fitted
