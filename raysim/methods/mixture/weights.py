"""Mixture weights on the simplex that bring the mixture closest to the observed distributions:
SLSQP (scipy) minimising the mean over targets of the normalised Wasserstein distance."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ...metrics.distributions import w1


def mixture(components: list[np.ndarray], weights: np.ndarray) -> list[np.ndarray]:
    """Per target, Σ_k w_k p_k (``components[j]``: [prompts, K_j])."""
    return [np.asarray(weights, dtype=np.float64) @ c for c in components]


def objective(components: list[np.ndarray], observed: list[np.ndarray], weights: np.ndarray) -> float:
    """Mean over targets of W1(mixture, observed) / (K − 1)."""
    return float(np.mean([w1(m, o) for m, o in zip(mixture(components, weights), observed)]))


def slsqp(components: list[np.ndarray], observed: list[np.ndarray], start: np.ndarray | None = None) -> np.ndarray:
    """The weights minimising ``objective``: SLSQP from the uniform weights and from ``start``
    (the current weights), the better result kept, never worse than ``start`` itself, so a
    search that re-optimises after each change never goes up."""
    n = components[0].shape[0]
    if n == 1:
        return np.ones(1)
    # On 1-D supports W1 is the L1 distance of the CDFs: linear in the weights, so the problem
    # is a small convex one; SLSQP with the simplex as bounds and one equality constraint.
    cdfs = [np.cumsum(c, axis=1)[:, :-1] for c in components]
    targets = [np.cumsum(o)[:-1] for o in observed]
    scale = [max(c.shape[1] - 1, 1) for c in components]

    def f(w: np.ndarray) -> float:
        return float(np.mean([np.abs(w @ c - t).sum() / s for c, t, s in zip(cdfs, targets, scale)]))

    def grad(w: np.ndarray) -> np.ndarray:
        return np.mean([c @ np.sign(w @ c - t) / s for c, t, s in zip(cdfs, targets, scale)], axis=0)

    starts = [np.full(n, 1.0 / n)] + ([_simplex(start)] if start is not None else [])
    best = starts[-1]
    for x0 in starts:
        res = minimize(f, x0, jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * n,
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
                       options={"maxiter": 500, "ftol": 1e-12})
        cand = _simplex(res.x)
        if f(cand) < f(best) - 1e-12:
            best = cand
    return best


def _simplex(w: np.ndarray) -> np.ndarray:
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
