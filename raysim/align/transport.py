"""Subgroup adaptation by optimal transport (POT): a pool's personas matched to a subgroup's
people over mixed categorical and numeric attributes.

- ``ground_cost``: per attribute, 0/1 for a categorical mismatch and |x − y| / range for a numeric
  one, weighted (default 1 each) and divided by the total weight, so costs lie in [0, 1].
- ``coupling``: the balanced plan between the pool (masses ``a``) and the subgroup (``b``),
  exact (``ot.emd``) or entropic (``ot.sinkhorn``).
- ``subgroup_weights``: the personas' masses in the plan that carries the subgroup exactly
  while the pool's side is only held near its own weights (``ot.unbalanced.sinkhorn_unbalanced``
  with the pool marginal KL-relaxed by ``stay`` and the subgroup's hard): with a small ``stay``
  each person's mass goes to their nearest personas, with a large one the pool keeps its weights.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import ot
import pandas as pd

from .importance import AlignError

METHODS = ("emd", "sinkhorn")


def ground_cost(pool: pd.DataFrame, target: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str] = (),
                weights: Mapping[str, float] | None = None) -> np.ndarray:
    """[len(pool), len(target)] costs in [0, 1]."""
    attrs = [*categorical, *numeric]
    if not attrs:
        raise AlignError("no attribute to compare personas and people by")
    for c in attrs:
        if c not in pool.columns or c not in target.columns:
            raise AlignError(f"{c}: not an attribute of both the pool and the target")
    weights = weights or {}
    cost = np.zeros((len(pool), len(target)))
    for c in categorical:
        x, y = pool[c].astype(str).to_numpy(), target[c].astype(str).to_numpy()
        cost += weights.get(c, 1.0) * (x[:, None] != y[None, :])
    for c in numeric:
        x, y = pool[c].to_numpy(dtype=np.float64), target[c].to_numpy(dtype=np.float64)
        if np.isnan(x).any() or np.isnan(y).any():
            raise AlignError(f"{c}: a numeric attribute with missing values")
        span = max(x.max(), y.max()) - min(x.min(), y.min())
        cost += weights.get(c, 1.0) * (np.abs(x[:, None] - y[None, :]) / span if span > 0 else 0.0)
    return cost / sum(weights.get(c, 1.0) for c in attrs)


def _masses(w: np.ndarray | None, n: int) -> np.ndarray:
    w = np.full(n, 1.0 / n) if w is None else np.asarray(w, dtype=np.float64)
    if len(w) != n or (w < 0).any() or not w.sum() > 0:
        raise AlignError(f"masses must be {n} non-negative numbers with a positive sum")
    return w / w.sum()


def coupling(cost: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None, *,
             method: str = "emd", reg: float = 0.05) -> np.ndarray:
    """The transport plan (rows: pool, columns: subgroup), its marginals ``a`` and ``b``."""
    if method not in METHODS:
        raise AlignError(f"OT method {method!r} is not one of {list(METHODS)}")
    a, b = _masses(a, cost.shape[0]), _masses(b, cost.shape[1])
    if method == "emd":
        return ot.emd(a, b, cost)
    return ot.sinkhorn(a, b, cost, reg, stopThr=1e-12, numItermax=100_000)


def subgroup_weights(cost: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None, *,
                     reg: float = 0.01, stay: float = 0.1) -> np.ndarray:
    """Persona weights (summing to 1) for the subgroup (module docstring)."""
    if reg <= 0 or stay <= 0:
        raise AlignError(f"need reg > 0 and stay > 0, got {reg}, {stay}")
    a, b = _masses(a, cost.shape[0]), _masses(b, cost.shape[1])
    plan = ot.unbalanced.sinkhorn_unbalanced(a, b, cost, reg, (stay, float("inf")), numItermax=10_000,
                                             stopThr=1e-10)
    w = plan.sum(axis=1)
    return w / w.sum()
