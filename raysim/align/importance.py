"""Importance weights that make a weighted pool match a reference over some attributes.

- ``rake``: marginals only, by raking (iterative proportional fitting: each attribute's weighted
  shares scaled to the target's in turn until all agree). Written here because none of the
  project's libraries rakes survey weights; it is a few lines of pandas.
- ``density_ratio``: a joint reference sample; w(x) = p_target(x) / p_pool(x) estimated by a
  probabilistic classifier (scikit-learn's logistic regression) telling target rows from pool rows.
- ``trim`` caps extreme weights; ``effective_sample_size`` is Kish's (Σw)² / Σw².
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd


class AlignError(ValueError):
    """Attributes or targets that cannot be aligned; the message names the attribute."""


def effective_sample_size(weights: np.ndarray) -> float:
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / np.square(w).sum())


def _normalised(w: np.ndarray) -> np.ndarray:
    total = w.sum()
    if not total > 0:
        raise AlignError("the weights sum to zero")
    return w / total


def rake(pool: pd.DataFrame, marginals: Mapping[str, Mapping[object, float]], base: np.ndarray | None = None, *,
         tol: float = 1e-10, max_iter: int = 1000) -> np.ndarray:
    """Weights (summing to 1) of ``pool``'s rows whose weighted share of each value of each
    attribute equals ``marginals[attribute][value]`` (shares of each attribute normalised)."""
    w = _normalised(np.ones(len(pool)) if base is None else np.asarray(base, dtype=np.float64))
    steps = []
    for attr, shares in marginals.items():
        if attr not in pool.columns:
            raise AlignError(f"{attr}: not an attribute of the pool")
        target = pd.Series(shares, dtype=np.float64)
        target = target[target > 0] / target[target > 0].sum()
        codes = pool[attr].to_numpy()
        have = set(pd.unique(codes[w > 0]))
        lacking = [v for v in target.index if v not in have]
        if lacking:
            raise AlignError(f"{attr}: the pool has no one with value(s) {lacking[:5]} that the target has")
        steps.append((attr, codes, target))
    for _ in range(max_iter):
        for attr, codes, target in steps:
            current = pd.Series(w).groupby(codes).sum()
            factor = (target / current).reindex(current.index).fillna(0.0)   # values the target lacks go to 0
            w = _normalised(w * factor.reindex(codes).to_numpy())
        worst = max(float((pd.Series(w).groupby(codes).sum().reindex(target.index).fillna(0) - target).abs().max())
                    for _, codes, target in steps)
        if worst < tol:
            return w
    raise AlignError(f"raking did not converge in {max_iter} rounds (largest share error {worst:.2e}): "
                     "the marginals may be incompatible with the pool's joint structure")


def _features(frame: pd.DataFrame, categorical: list[str], numeric: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
                              ("num", StandardScaler(), numeric)]).fit(frame)


def density_ratio(pool: pd.DataFrame, target: pd.DataFrame, categorical: list[str], numeric: list[str] = (), *,
                  target_weights: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Weights (summing to 1) of ``pool``'s rows ∝ p_target(x) / p_pool(x), x = the attributes."""
    from sklearn.linear_model import LogisticRegression

    cols = [*categorical, *numeric]
    missing = [c for c in cols if c not in pool.columns or c not in target.columns]
    if missing:
        raise AlignError(f"{missing[0]}: not an attribute of both the pool and the target")
    both = pd.concat([pool[cols], target[cols]], ignore_index=True)
    for c in categorical:
        both[c] = both[c].astype(str)
    x = _features(both, list(categorical), list(numeric)).transform(both)
    y = np.r_[np.zeros(len(pool)), np.ones(len(target))]
    tw = np.ones(len(target)) if target_weights is None else np.asarray(target_weights, dtype=np.float64)
    # each side weighted to total mass 1, so the odds are the density ratio itself
    sw = np.r_[np.full(len(pool), 1.0 / len(pool)), tw / tw.sum()] * len(y)
    model = LogisticRegression(C=1e4, max_iter=5000, random_state=seed).fit(x, y, sample_weight=sw)
    logit = model.decision_function(x[: len(pool)])
    return _normalised(np.exp(logit - logit.max()))


def trim(weights: np.ndarray, cap: float) -> np.ndarray:
    """Weights capped at ``cap`` × their mean (the cap re-applied as the mean moves), summing to 1."""
    if cap <= 1:
        raise AlignError(f"the trimming cap must be > 1 (× the mean weight), got {cap}")
    w = _normalised(np.asarray(weights, dtype=np.float64))
    for _ in range(100):
        limit = cap / len(w)
        over = w > limit * (1 + 1e-12)
        if not over.any():
            break
        # hold the capped ones at the limit, spread what they lose over the others
        excess = (w[over] - limit).sum()
        w[over] = limit
        free = ~over & (w < limit)
        w[free] += excess * w[free] / w[free].sum()
    return w


def resample(weights: np.ndarray, n: int, seed: int, order: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``n`` rows drawn with probability ∝ weight (systematic sampling: low variance,
    deterministic given the seed). ``order``: the rows' order for the pass, e.g. sorted by the
    attributes, so each cell gets its share of the draws to within one (implicit stratification)."""
    w = _normalised(np.asarray(weights, dtype=np.float64))
    order = np.arange(len(w)) if order is None else np.asarray(order)
    start = np.random.default_rng(seed).uniform(0, 1.0 / n)
    at = np.searchsorted(np.cumsum(w[order]), start + np.arange(n) / n, side="right").clip(0, len(w) - 1)
    return order[at]
