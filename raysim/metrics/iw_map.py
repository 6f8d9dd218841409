"""The Inglehart–Welzel cultural map: two value dimensions fitted once on weighted human answers,
simulated respondents projected through the same fitted rotation.

The ten indicators (Inglehart & Welzel 2005, p. 49; the WVS-7 items), each recoded so that high
is the secular-rational or the self-expression pole:

    traditional → secular-rational           survival → self-expression
    God not important (Q164, 11 − answer)    post-materialism (Q154/Q155: 1 + choices of "more say"/"free speech")
    autonomy index (Q8 + Q14 − Q15 − Q17)    happiness (Q46, 5 − answer)
    abortion justifiable (Q184)              homosexuality justifiable (Q182)
    national pride low (Q254; 5 = not a national: missing)   signed a petition (Q209, 4 − answer)
    respect for authority bad (Q45)          most people can be trusted (Q57 = 1)

Recipe: indicators standardised with the human weighted means and SDs (a missing indicator is
set to the mean, a respondent needs ``MIN_INDICATORS`` of ten), principal components of the
weighted correlation matrix, the first two rotated by varimax, each named by the five items it
loads on and oriented so those load positively, regression (Thomson) scores ``Z R⁻¹ Λ``, and the
published rescaling of the WVS map (``RESCALE``). Countries sit at the weighted mean of their
respondents' scores.

An indicator is an expectation over answer probabilities: a real answer is a one-hot
distribution, a simulated respondent in logprob mode contributes its option probabilities (the
composite indices are linear in them), in generate mode its sampled answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..survey.codebook import Codebook
from ..survey.columns import COUNTRY, ID, WEIGHT

TRADITIONAL_SECULAR, SURVIVAL_SELFEXPRESSION = "traditional_secular", "survival_selfexpression"
DIMENSIONS = (TRADITIONAL_SECULAR, SURVIVAL_SELFEXPRESSION)
MIN_INDICATORS = 7
# The rescaling of the factor scores used for the published map, as in the public replication of
# the IVS cultural map (PPCA, varimax): survival/self-expression (x) = 1.81·score + 0.38,
# traditional/secular-rational (y) = 1.61·score − 0.01. The WVS's own note was not reachable from
# here to check it against. It puts scores fitted on the data at hand on the published map's
# scale; positions are comparable with the published ones only when the fit is on the WVS-7 release.
RESCALE = {SURVIVAL_SELFEXPRESSION: (1.81, 0.38), TRADITIONAL_SECULAR: (1.61, -0.01)}

Expect = Callable[[str, Callable[[int], float | None]], np.ndarray]
"""expect(qid, score): per respondent, the expected score of the item's answer (NaN: unanswered)."""


@dataclass(frozen=True)
class Indicator:
    name: str
    dimension: str
    value: Callable[[Expect], np.ndarray]
    items: tuple[str, ...]


def _is(code: int) -> Callable[[int], float]:
    return lambda c: 1.0 if c == code else 0.0


def _postmaterialist(c: int) -> float:   # "more say" (2) and "freedom of speech" (4)
    return 1.0 if c in (2, 4) else 0.0


INDICATORS = (
    Indicator("god_unimportant", TRADITIONAL_SECULAR, lambda e: e("Q164", lambda c: 11.0 - c), ("Q164",)),
    Indicator("autonomy", TRADITIONAL_SECULAR,
              lambda e: e("Q8", _is(1)) + e("Q14", _is(1)) - e("Q15", _is(1)) - e("Q17", _is(1)),
              ("Q8", "Q14", "Q15", "Q17")),
    Indicator("abortion", TRADITIONAL_SECULAR, lambda e: e("Q184", float), ("Q184",)),
    Indicator("low_pride", TRADITIONAL_SECULAR, lambda e: e("Q254", lambda c: float(c) if c <= 4 else None),
              ("Q254",)),
    Indicator("authority_bad", TRADITIONAL_SECULAR, lambda e: e("Q45", float), ("Q45",)),
    Indicator("postmaterialism", SURVIVAL_SELFEXPRESSION,
              lambda e: 1.0 + e("Q154", _postmaterialist) + e("Q155", _postmaterialist), ("Q154", "Q155")),
    Indicator("happiness", SURVIVAL_SELFEXPRESSION, lambda e: e("Q46", lambda c: 5.0 - c), ("Q46",)),
    Indicator("homosexuality", SURVIVAL_SELFEXPRESSION, lambda e: e("Q182", float), ("Q182",)),
    Indicator("petition", SURVIVAL_SELFEXPRESSION, lambda e: e("Q209", lambda c: 4.0 - c), ("Q209",)),
    Indicator("trust", SURVIVAL_SELFEXPRESSION, lambda e: e("Q57", _is(1)), ("Q57",)),
)
MAP_ITEMS = tuple(dict.fromkeys(q for ind in INDICATORS for q in ind.items))


class MapError(ValueError):
    """Data the map cannot be fitted on or projected from."""


def _values(expect: Expect) -> pd.DataFrame:
    return pd.DataFrame({ind.name: ind.value(expect) for ind in INDICATORS})


def human_indicators(population: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """The ten indicators of real respondents (their answers as one-hot distributions)."""
    missing = [q for q in MAP_ITEMS if q not in population]
    if missing:
        raise MapError(f"the population lacks the map's item(s) {missing}")

    def expect(qid: str, score: Callable[[int], float | None]) -> np.ndarray:
        valid = set(codebook[qid].codes)
        out = np.full(len(population), np.nan)
        for i, a in enumerate(population[qid].to_numpy()):
            if a is not None and not pd.isna(a) and int(a) in valid:
                s = score(int(a))
                out[i] = np.nan if s is None else s
        return out

    return pd.concat([population[[ID, COUNTRY, WEIGHT]].reset_index(drop=True), _values(expect)], axis=1)


def simulated_indicators(results: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """The ten indicators of simulated respondents from result rows (logprob: expected over the
    option probabilities; generate: the sampled answer, invalid ones missing)."""
    people = results.drop_duplicates(ID)[[ID, COUNTRY, WEIGHT]].sort_values(ID).reset_index(drop=True)
    index = pd.Index(people[ID])
    by_q = {q: g for q, g in results.groupby("qid")}
    logprob = "probs" in results and results["probs"].notna().all()

    def expect(qid: str, score: Callable[[int], float | None]) -> np.ndarray:
        out = np.full(len(people), np.nan)
        rows = by_q.get(qid)
        if rows is None:
            return out
        valid = set(codebook[qid].codes)
        pos = index.get_indexer(rows[ID])
        if logprob:
            for i, codes, p in zip(pos, rows["option_codes"], rows["probs"]):
                pairs = [(score(c), w) for c, w in zip(codes, p) if c in valid]
                pairs = [(s, w) for s, w in pairs if s is not None]
                mass = sum(w for _, w in pairs)
                if mass > 0:
                    out[i] = sum(s * w for s, w in pairs) / mass
        else:
            for i, c, ok in zip(pos, rows["sampled_code"], rows["valid"]):
                if ok and not pd.isna(c) and int(c) in valid and score(int(c)) is not None:
                    out[i] = score(int(c))
        return out

    missing = [q for q in MAP_ITEMS if q not in by_q]
    if len(missing) > len(MAP_ITEMS) - MIN_INDICATORS:
        raise MapError(f"the results answer {len(MAP_ITEMS) - len(missing)} of the map's {len(MAP_ITEMS)} "
                       f"questions (missing {missing}): simulate them (questions: [{', '.join(MAP_ITEMS)}])")
    return pd.concat([people, _values(expect)], axis=1)


def varimax(loadings: np.ndarray, iterations: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Kaiser's varimax rotation of a loadings matrix [items, factors] (the SVD iteration)."""
    p, k = loadings.shape
    rotation = np.eye(k)
    last = 0.0
    for _ in range(iterations):
        rotated = loadings @ rotation
        u, s, vt = np.linalg.svd(loadings.T @ (rotated ** 3 - rotated @ np.diag((rotated ** 2).sum(axis=0)) / p))
        rotation = u @ vt
        if s.sum() < last * (1 + tol):
            break
        last = s.sum()
    return loadings @ rotation


@dataclass(frozen=True)
class CulturalMap:
    """The fitted map: standardisation, rotated loadings, score weights (Thomson regression)."""
    mean: np.ndarray
    sd: np.ndarray
    loadings: pd.DataFrame     # indicators × DIMENSIONS
    weights: np.ndarray        # indicators × 2: z @ weights = factor scores
    explained: float           # share of the standardised variance the two components carry

    def scores(self, indicators: pd.DataFrame) -> pd.DataFrame:
        """Per respondent: id, country, weight and the two rescaled map coordinates (respondents
        with fewer than MIN_INDICATORS indicators left out)."""
        x = indicators[[ind.name for ind in INDICATORS]].to_numpy(dtype=np.float64)
        enough = np.isfinite(x).sum(axis=1) >= MIN_INDICATORS
        z = np.nan_to_num((x[enough] - self.mean) / self.sd, nan=0.0)
        s = z @ self.weights
        out = indicators.loc[enough, [ID, COUNTRY, WEIGHT]].reset_index(drop=True)
        for j, dim in enumerate(DIMENSIONS):
            a, b = RESCALE[dim]
            out[dim] = a * s[:, j] + b
        return out


def fit_map(indicators: pd.DataFrame) -> CulturalMap:
    names = [ind.name for ind in INDICATORS]
    x = indicators[names].to_numpy(dtype=np.float64)
    w = indicators[WEIGHT].to_numpy(dtype=np.float64)
    enough = (np.isfinite(x).sum(axis=1) >= MIN_INDICATORS) & (w > 0)
    if enough.sum() < 20:
        raise MapError(f"{int(enough.sum())} respondents answer {MIN_INDICATORS} or more of the ten indicators "
                       "with a positive weight: too few to fit the map")
    x, w = x[enough], w[enough] / w[enough].sum()
    mean = np.array([np.average(col[np.isfinite(col)], weights=w[np.isfinite(col)]) for col in x.T])
    sd = np.sqrt(np.array([np.average((col[np.isfinite(col)] - m) ** 2, weights=w[np.isfinite(col)])
                           for col, m in zip(x.T, mean)]))
    if (sd == 0).any():
        flat = [n for n, s in zip(names, sd) if s == 0]
        raise MapError(f"indicator(s) {flat} do not vary among the respondents")
    z = np.nan_to_num((x - mean) / sd, nan=0.0)
    r = np.cov(z, rowvar=False, aweights=w)
    d = np.sqrt(np.diag(r))
    r = r / np.outer(d, d)
    values, vectors = np.linalg.eigh(r)
    top = np.argsort(values)[::-1][:2]
    rotated = varimax(vectors[:, top] * np.sqrt(values[top]))
    secular = np.array([ind.dimension == TRADITIONAL_SECULAR for ind in INDICATORS])
    # name each rotated factor by the block of five it loads on, orient it so that block is positive
    first = int(np.argmax(np.abs(rotated[secular]).sum(axis=0) - np.abs(rotated[~secular]).sum(axis=0)))
    order = [first, 1 - first]
    rotated = rotated[:, order]
    for j, block in enumerate((secular, ~secular)):
        if rotated[block, j].sum() < 0:
            rotated[:, j] = -rotated[:, j]
    weights = np.linalg.solve(r, rotated) / d[:, None]   # z is rescaled by d in r: scores of z
    return CulturalMap(mean=mean, sd=sd, loadings=pd.DataFrame(rotated, index=names, columns=list(DIMENSIONS)),
                       weights=weights, explained=float(values[top].sum() / len(names)))


def country_positions(scores: pd.DataFrame, source: str) -> pd.DataFrame:
    """Weighted mean coordinates per country: source, country, the two dimensions, respondents."""
    rows = []
    for country, g in scores.groupby(COUNTRY, sort=True):
        w = g[WEIGHT].to_numpy(dtype=np.float64)
        if not w.sum() > 0:
            continue
        rows.append({"source": source, "country": country,
                     **{dim: float(np.average(g[dim], weights=w)) for dim in DIMENSIONS}, "respondents": len(g)})
    return pd.DataFrame(rows, columns=["source", "country", *DIMENSIONS, "respondents"])
