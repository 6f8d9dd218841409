"""Tolerances for floats that two different kernel paths compute (issue 17, "Hardening").

The same number computed two ways — a padded batch and a lone forward, a packed prefix tree and a
full prompt, eager and sdpa attention, step-by-step decoding and one forward, another batch shape or
thread count — differs by float rounding, and how much depends on the machine's kernels (AVX2,
AVX-512, AMX each sum in their own order and blocking). That rounding grows with the size of the
values involved, so a fixed absolute tolerance passes on one machine and fails on the next: a padded
fp32 batch's logits differed from lone forwards by 7.5e-4 on an AVX-512/AMX machine (logits of ~30),
where the test's absolute 1e-4 had passed on the machine it was written on (and fails there too with a
few more columns of padding). The comparisons here therefore scale with what they compare:

* raw logits, hidden states, vectors: ``|a - b| <= rel * max|b|``, the maximum taken over the whole
  array or per slice (``axis``): per position for logits, per vector for hidden states (a massive
  activation in one token of one layer must not set the tolerance for every other one);
* option distributions: compared as log-probabilities, ``|log p - log q| <= nats``, which bounds the
  relative error of every option's probability, small ones included (``|Δp| <~ p·nats``); kernel
  noise enters through the log-likelihoods, whose error does not depend on how probable an option is.

Measured on the 2-core AVX-512 (no AMX) machine these were tuned on, at 1 and 2 threads, over
padded batches and packed trees of several shapes: logits differ by up to 1.6e-5 of their
per-position maximum (3.1e-4 absolute: an absolute 1e-4 fails here too), hidden-state vectors by
up to 9e-7 of theirs, option log-probabilities by up to 5e-5 nats. The faults the tests guard
against are orders of magnitude larger. On logits (embedded default): a plan's noise from another
seed or without its noise 7e-2 .. 0.4 of the maximum, no plan or another row's plan 0.2 .. 0.5,
noise at positions shifted by one 0.1 .. 1, even a term scaled by 0.99 instead of 1 3e-3 .. 6e-2.
On option log-probabilities (embedded default and tiny Llama): no plan, another seed or no noise
0.45 .. 6.7 nats, a term scaled by 0.99 1.7e-2 .. 0.34 nats.

Comparisons of one computation with itself (same shapes, same thread count, same seeds) are not
done with these: they stay exact, as the project promises bit-identical results there.
"""

from __future__ import annotations

import numpy as np

SCALE_RTOL = 3e-4
"""Logits, hidden states, vectors: allowed difference as a fraction of the reference's largest
magnitude: ~20x the largest kernel difference measured here, ~10x the one reported on AVX-512/AMX
(7.5e-4 on logits of ~25-30), 10x below the smallest fault measured (a term scaled by 0.99)."""

LOGPROB_ATOL = 2e-3
"""Option distributions: allowed difference of option log-probabilities, in nats: 40x the largest
kernel difference measured here, 9x below the smallest fault measured (a term scaled by 0.99)."""


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):   # a torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_close_to_scale(actual, desired, rel: float = SCALE_RTOL, axis=None, scale=None,
                          err_msg: str = "") -> None:
    """``|actual - desired| <= rel * max|desired|`` elementwise, the maximum over ``axis`` (None:
    the whole array; an int or tuple: per slice, e.g. ``-1`` for each position's logits or each
    hidden-state vector). ``scale`` (broadcastable to the arrays) replaces ``max|desired|`` where
    the reference does not carry the magnitude, e.g. a difference of hidden states expected to be
    zero: pass the states' own magnitude. Arrays or tensors of any float dtype."""
    a, d = _array(actual), _array(desired)
    if a.shape != d.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {d.shape}. {err_msg}")
    if scale is None:
        scale = np.abs(d).max(axis=axis, keepdims=axis is not None)
    scale = np.asarray(scale, dtype=np.float64)
    excess = np.abs(a - d) - rel * scale
    if not np.all(excess <= 0):   # NaNs fail too
        worst = np.unravel_index(np.argmax(np.where(np.isnan(excess), np.inf, excess)), a.shape)
        bound = float(np.broadcast_to(rel * scale, a.shape)[worst])
        raise AssertionError(
            f"not close at {tuple(int(i) for i in worst)}: {a[worst]!r} vs {d[worst]!r}, difference "
            f"{abs(a[worst] - d[worst]):.3g} > {bound:.3g} (= {rel:g} x the scale {bound / rel:.4g}); "
            f"largest difference {np.nanmax(np.abs(a - d)):.3g}. {err_msg}")


def assert_distributions_close(actual, desired, nats: float = LOGPROB_ATOL, err_msg: str = "") -> None:
    """Probability vectors (last axis sums to 1) as close as kernel noise allows: every option's
    log-probability within ``nats`` (so every probability within a factor e^±nats)."""
    p, q = _array(actual), _array(desired)
    if p.shape != q.shape:
        raise AssertionError(f"shapes differ: {p.shape} vs {q.shape}. {err_msg}")
    with np.errstate(divide="ignore"):
        lp, lq = np.log(p), np.log(q)
    np.testing.assert_allclose(lp, lq, rtol=0, atol=nats,
                               err_msg=f"option log-probabilities (nats) differ beyond {nats:g}. {err_msg}")
