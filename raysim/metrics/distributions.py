"""Distances between a human distribution p and a simulated one q over one item's options.

Every function takes probability vectors over the item's K substantive options in scale
order (``Item.scale_positions()``) along the last axis, so ``[..., K]`` arrays are scored
in one call (leading axes broadcast: questions, bootstrap replicates). Items with
different K are scored in separate calls.

Conventions (docs/design.md, "Scores"): natural log; ε = 1e-6 is added to p and q and both
renormalised before KL, JS and entropies; JS is in bits, so in [0, 1]. MAE, W1 and the
normalised variance use option positions r = 0..K-1 and are meaningful on ordinal items
only (the caller decides which items those are).
"""

from __future__ import annotations

import numpy as np
import ot
import torch
from scipy.special import rel_entr
from scipy.stats import entropy

EPS = 1e-6


def _prepare(*dists: np.ndarray) -> tuple[np.ndarray, ...]:
    """Broadcast to one shape, check K ≥ 2 and renormalise (inputs may be float32 or
    not sum to exactly 1)."""
    arrays = np.broadcast_arrays(*(np.asarray(d, dtype=np.float64) for d in dists))
    k = arrays[0].shape[-1] if arrays[0].ndim else 0
    if k < 2:
        raise ValueError(f"distributions need at least two options on the last axis, got shape {arrays[0].shape}")
    return tuple(a / a.sum(axis=-1, keepdims=True) for a in arrays)


def smooth(p: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Add ε to every option and renormalise: no zero cells for logs."""
    (p,) = _prepare(p)
    p = p + eps
    return p / p.sum(axis=-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p‖q) = Σ p log(p/q), in nats, on ε-smoothed p and q."""
    p, q = _prepare(p, q)
    return rel_entr(smooth(p), smooth(q)).sum(axis=-1)


def js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence in bits, ½KL(p‖m) + ½KL(q‖m) with m the midpoint.

    Computed from its definition: scipy's ``jensenshannon`` returns the distance (a square
    root) and gives NaN where rounding makes the divergence of near-equal inputs negative."""
    p, q = smooth(p), smooth(q)
    m = (p + q) / 2
    return np.maximum(0.5 * (rel_entr(p, m).sum(axis=-1) + rel_entr(q, m).sum(axis=-1)) / np.log(2), 0.0)


def _positions(k: int) -> np.ndarray:
    return np.arange(k, dtype=np.float64)


def mae(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """|E_p[r] − E_q[r]| / (K − 1): difference of mean positions, in [0, 1]."""
    p, q = _prepare(p, q)
    k = p.shape[-1]
    r = _positions(k)
    return np.abs(p @ r - q @ r) / (k - 1)


def w1(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Wasserstein-1 over positions 0..K-1 divided by K − 1 (OpinionQA / SubPOP), in [0, 1]."""
    p, q = _prepare(p, q)
    k = p.shape[-1]
    lead = p.shape[:-1]
    # POT batches over trailing axes with the support on axis 0: [K, n_distributions].
    # Its numpy backend loops over the distributions in Python; its torch backend (torch
    # is a project dependency) runs the batch as one searchsorted, ~3x faster here.
    pw = torch.from_numpy(np.ascontiguousarray(p.reshape(-1, k).T))
    qw = torch.from_numpy(np.ascontiguousarray(q.reshape(-1, k).T))
    r = torch.arange(k, dtype=torch.float64)[:, None].expand_as(pw).contiguous()
    d = ot.wasserstein_1d(r, r, pw, qw, p=1, require_sort=False)
    return d.numpy().reshape(lead) / (k - 1)


def norm_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) / log K on ε-smoothed p, in [0, 1]."""
    sp = smooth(p)
    return entropy(sp, axis=-1) / np.log(sp.shape[-1])


def ed(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Entropy deviation |H(q)/log K − H(p)/log K|."""
    p, q = _prepare(p, q)
    return np.abs(norm_entropy(q) - norm_entropy(p))


def norm_variance(p: np.ndarray) -> np.ndarray:
    """Variance of positions / (K − 1)²/4, the largest variance possible on the scale
    (half the mass at each end): 0 = everyone agrees, 1 = fully polarised."""
    (p,) = _prepare(p)
    k = p.shape[-1]
    r = _positions(k)
    var = (p * (r - (p @ r)[..., None]) ** 2).sum(axis=-1)
    return var / ((k - 1) ** 2 / 4)
