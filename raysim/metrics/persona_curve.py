"""The persona-count curve (paper: calibrated value personas): how a country's predicted
distribution, the weighted mean over N of its sampled personas, approaches the human one as N
grows, with the spread over repeated draws of N personas.

For each N and draw: N respondents of each country drawn without replacement (seeded by seed, N,
draw and country), each question's predicted distribution = their weighted mean, the error
(Wasserstein-1 over the scale on ordinal items, KL on every item) against the country's human
distribution over all its matched respondents, averaged over questions and countries.
"""

from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np
import pandas as pd

from ..survey.codebook import Codebook
from ..survey.columns import COUNTRY, ID, WEIGHT
from . import distributions as D
from .answers import human_distribution, simulated_matrix

METRICS = {"w1": (D.w1, True), "kl": (D.kl, False)}


CURVE_COLUMNS = ["qid", ID, COUNTRY, "option_codes", "probs"]   # all it reads of the result rows


def persona_curve(results: pd.DataFrame | Iterable[pd.DataFrame], population: pd.DataFrame, codebook: Codebook,
                  counts: list[int], *, draws: int = 20, seed: int = 0, metric: str = "w1") -> pd.DataFrame:
    """Rows (n_personas, draw, error, countries); a country with fewer respondents than N is left
    out of that N. ``results``: the result rows, or batches of them in their order (a run scanned
    shard by shard: only each question's probability matrix is held, not the rows)."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {list(METRICS)}")
    if not counts or any(not isinstance(n, int) or n < 1 for n in counts) or draws < 1:
        raise ValueError(f"counts must be positive integers and draws >= 1, got {counts}, {draws}")
    fn, ordinal_only = METRICS[metric]
    people = population.set_index(ID)
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}   # qid → (ids, countries, q) per batch
    for batch in [results] if isinstance(results, pd.DataFrame) else results:
        for qid, rows in batch.groupby("qid", sort=False):
            item = codebook[qid]
            if item.kind not in ("ordinal", "nominal") or (ordinal_only and item.kind != "ordinal") or qid not in people:
                continue
            q = simulated_matrix(rows["option_codes"], rows["probs"], item)
            parts.setdefault(qid, []).append((rows[ID].to_numpy(), rows[COUNTRY].to_numpy(), q))
    blocks = []   # per (country, question): human p, personas' q [n, K], weights
    for qid in sorted(parts):
        item = codebook[qid]
        ids, countries, q = (np.concatenate(x) for x in zip(*parts.pop(qid)))
        keep = q.sum(axis=1) > 0
        ids, countries, q = ids[keep], countries[keep], q[keep] / q[keep].sum(axis=1, keepdims=True)
        for country, idx in pd.DataFrame({COUNTRY: countries}).groupby(COUNTRY).indices.items():
            w = people.loc[ids[idx], WEIGHT].to_numpy(dtype=np.float64)
            p = human_distribution(people.loc[ids[idx], qid], w, item)
            if p.sum() > 0 and w.sum() > 0:
                blocks.append((country, p / p.sum(), q[idx], w))
    if not blocks:
        raise ValueError(f"no question of the results can be scored with {metric}")
    out = []
    for n in counts:
        for d in range(draws):
            errors: dict[str, list[float]] = {}
            for country, p, q, w in blocks:
                if len(w) < n:
                    continue
                rng = np.random.default_rng([seed, n, d, zlib.crc32(str(country).encode())])
                take = rng.choice(len(w), size=n, replace=False)
                if w[take].sum() <= 0:
                    continue
                predicted = np.average(q[take], axis=0, weights=w[take])
                errors.setdefault(country, []).append(float(fn(p, predicted)))
            if errors:
                out.append({"n_personas": n, "draw": d, "error": float(np.mean([np.mean(v) for v in errors.values()])),
                            "countries": len(errors)})
    return pd.DataFrame(out, columns=["n_personas", "draw", "error", "countries"])


def summarise(curve: pd.DataFrame) -> pd.DataFrame:
    """Per N: mean error, its SD over draws and the 10th/90th percentiles."""
    g = curve.groupby("n_personas")["error"]
    return pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "p10": g.quantile(0.1), "p90": g.quantile(0.9),
                         "draws": g.size()}).reset_index()
