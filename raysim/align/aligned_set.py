"""An aligned persona set: a pool population weighted to stand for a target over some attributes
(``raysim personas align``, the ``aligned`` population source), written as a canonical population
whose ``weight`` column carries the alignment, so any run can simulate it.

    SET/population/        the personas, in the TARGET's codebook (the pool's columns that codebook
                           also has); weights with mean 1 per country, or ``size`` resampled ones
    SET/humans/            the target's people (absent for a marginals-only target): a simulation of
                           the set is scored against them (``humans_of``), not against the personas
    SET/personas.parquet   each persona's (country, respondent_id) and the pool respondent it is
    SET/alignment.yaml     method, attributes, per country the effective sample size and each
                           attribute's TV distance to the target before and after (and of the
                           resampled personas themselves, with ``size``)

The target is people (a population frame: ipf, classifier, ot) or marginals only (per country,
attribute → code → share: ipf). ``per_country``: the whole pool is aligned to each country of the
target in turn and the set holds one copy per country, relabelled to it (a country simulated from
its demographics alone); otherwise the pool is aligned to the target as a whole and keeps its
countries. Method ``none`` keeps the pool's weights: the unaligned baseline, written alike.

Numeric attributes (age) are raked and TV-compared over bands: the target's deciles, or for
marginals the ``"lo-hi"`` ranges their keys give.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import yaml

from ..atomic import publish_dir, staging_dir, write_atomic, write_text_atomic
from ..survey.codebook import Codebook
from ..survey.columns import BASE_COLUMNS, COUNTRY, ID, PERSONA, WEIGHT
from ..survey.population import write_population
from ..yamlfile import load_yaml
from .importance import AlignError, density_ratio, effective_sample_size, rake, resample, trim
from .transport import ground_cost, subgroup_weights

METHODS = ("ipf", "classifier", "ot", "none")
POPULATION_DIR, HUMANS_DIR, PERSONAS_FILE, REPORT_FILE = "population", "humans", "personas.parquet", "alignment.yaml"
BANDS = 10
WHOLE = "ALL"
"""The report's key for a set aligned to the target as a whole."""

Marginals = Mapping[str, Mapping[Any, float]]
"""Attribute → value → share (a numeric attribute's values are ``"lo-hi"`` ranges)."""


@dataclass
class Alignment:
    weights: np.ndarray
    """Per pool row, summing to 1 (0 for rows with a null in an attribute)."""
    method: str
    by: list[str]
    ess: float
    tv_before: dict[str, float]
    tv_after: dict[str, float]
    left_out: int = 0
    """Pool rows with a null in an attribute, or a numeric value outside every band (weight 0)."""
    cap: float | None = None
    tv: Callable[[np.ndarray], dict[str, float]] | None = field(default=None, repr=False, compare=False)
    """Per-attribute TV distance to the target of any weights of the pool's rows (a resampled set's counts)."""


# ---------------------------------------------------------------- target shares

def _weighted_shares(values: pd.Series, w: np.ndarray) -> pd.Series:
    s = pd.Series(w, index=values.index).groupby(values.to_numpy()).sum()
    return s / s.sum()


def _tv(a: pd.Series, b: pd.Series) -> float:
    return float(0.5 * a.sub(b, fill_value=0).abs().sum())


def _floats(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*$")


def _ranges(attr: str, keys) -> list[tuple[float, float, str]]:
    out = []
    for k in keys:
        m = _RANGE.match(str(k))
        if m is None:
            try:
                lo = hi = float(k)
            except ValueError:
                raise AlignError(f"{attr}: a numeric attribute's marginal key must be a number or a "
                                 f"'lo-hi' range, got {k!r}") from None
        else:
            lo, hi = float(m.group(1)), float(m.group(2))
        out.append((lo, hi, str(k)))
    return out


def _matched(pool: pd.DataFrame, target: pd.DataFrame | Marginals, by: list[str], numeric: list[str],
             tw: np.ndarray | None) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """The pool's ``by`` columns with numeric ones banded, and the target's shares of each
    attribute over the same values."""
    pool_b, shares = pool[by].copy(), {}
    for a in by:
        if isinstance(target, pd.DataFrame):
            t = target[a]
            if a in numeric:
                tv = _floats(t)
                edges = np.unique(np.quantile(tv, np.linspace(0, 1, BANDS + 1))[1:-1])
                x = _floats(pool[a])
                pool_b[a] = pd.Series(np.where(np.isnan(x), np.nan, np.searchsorted(edges, x, side="right")),
                                      index=pool.index)
                t = pd.Series(np.searchsorted(edges, tv, side="right"), index=target.index)
            shares[a] = _weighted_shares(t, tw)
        else:
            given = pd.Series(dict(target[a]), dtype=np.float64)
            if a in numeric:
                x = _floats(pool[a])
                band = pd.Series(np.nan, index=pool.index, dtype=object)
                for lo, hi, label in _ranges(a, given.index):
                    band[(x >= lo) & (x <= hi)] = label
                pool_b[a] = band
                given.index = [str(k) for k in given.index]
            shares[a] = given / given.sum()
    return pool_b, shares


# ---------------------------------------------------------------- alignment

def align(pool: pd.DataFrame, target: pd.DataFrame | Marginals, by: list[str], codebook: Codebook, *,
          method: str = "ipf", cap: float | None = None, reg: float = 0.01, stay: float = 0.1,
          cost_weights: Mapping[str, float] | None = None, seed: int = 0) -> Alignment:
    """Weights of ``pool``'s rows that make it match ``target`` (people, or marginals) over ``by``;
    ``cost_weights``: OT's per-attribute weights in the ground cost (default 1 each)."""
    if method not in METHODS:
        raise AlignError(f"alignment method {method!r} is not one of {list(METHODS)}")
    if not by:
        raise AlignError("--by names no attribute")
    people = isinstance(target, pd.DataFrame)
    if not people and method not in ("ipf", "none"):
        raise AlignError(f"method {method} needs the target's people; a marginals-only target is raked (ipf)")
    absent = [a for a in by if a not in pool.columns]
    if absent:
        raise AlignError(f"{absent[0]}: not an attribute of the pool")
    absent = [a for a in by if a not in (target.columns if people else target)]
    if absent:
        raise AlignError(f"{absent[0]}: not an attribute of the target")
    numeric = [a for a in by if a in codebook and codebook[a].kind == "numeric"]
    categorical = [a for a in by if a not in numeric]
    tw = None
    if people:
        target = target[target[by].notna().all(axis=1)]
        if target.empty:
            raise AlignError(f"every target row has a null in one of {by}")
        tw = target[WEIGHT].to_numpy(dtype=np.float64)
    pool_b, shares = _matched(pool, target, by, numeric, tw)
    usable = pool_b.notna().all(axis=1).to_numpy()
    if not usable.any():
        raise AlignError(f"every pool row has a null in one of {by}")
    base = np.where(usable, pool[WEIGHT].to_numpy(dtype=np.float64), 0.0)[usable]
    p, pb = pool[usable], pool_b[usable]
    if method == "none":
        w = base / base.sum()
    elif method == "ipf":
        w = rake(pb, {a: shares[a].to_dict() for a in by}, base)
    elif method == "classifier":
        w = density_ratio(p, target, categorical, numeric, target_weights=tw, seed=seed) * base
    else:
        unknown = sorted(set(cost_weights or {}) - set(by))
        if unknown:
            raise AlignError(f"cost weights name {unknown}, which are not among the attributes {by}")
        w = _transport(p, target, categorical, numeric, base, tw, reg=reg, stay=stay, weights=cost_weights)
    if cap is not None:
        w = trim(w, cap)
    weights = np.zeros(len(pool))
    weights[usable] = w / w.sum()

    def tv(of_rows: np.ndarray) -> dict[str, float]:
        return {a: _tv(_weighted_shares(pb[a], of_rows[usable]), shares[a]) for a in by}

    return Alignment(weights=weights, method=method, by=list(by), ess=effective_sample_size(weights),
                     tv_before={a: _tv(_weighted_shares(pb[a], base), shares[a]) for a in by},
                     tv_after=tv(weights), left_out=int((~usable).sum()), cap=cap, tv=tv)


def _transport(p: pd.DataFrame, target: pd.DataFrame, categorical: list[str], numeric: list[str], base: np.ndarray,
               tw: np.ndarray, *, reg: float, stay: float, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """OT between attribute cells (personas alike in every attribute are interchangeable, so the
    cost matrix is cells × cells, not people × people); a cell's weight is shared by its personas
    in proportion to their own weights."""
    by = [*categorical, *numeric]
    cells = p[by].assign(_w=base).groupby(by, dropna=False, sort=True)["_w"].sum().reset_index()
    tcells = target[by].assign(_w=tw).groupby(by, dropna=False, sort=True)["_w"].sum().reset_index()
    cell_w = subgroup_weights(ground_cost(cells, tcells, categorical, numeric, weights), cells["_w"].to_numpy(),
                              tcells["_w"].to_numpy(), reg=reg, stay=stay)
    cell_of = p[by].merge(cells[by].assign(_cell=np.arange(len(cells))), on=by, how="left")["_cell"].to_numpy()
    within = base / np.bincount(cell_of, weights=base, minlength=len(cells))[cell_of]
    return cell_w[cell_of] * within


def align_parts(pool: pd.DataFrame, target: pd.DataFrame | Mapping[str, Marginals], by: list[str], codebook: Codebook,
                *, per_country: bool, **options: Any) -> dict[str, Alignment]:
    """One alignment per country of the target (``per_country``; a marginals target is always
    per country: its keys are countries), or one (``WHOLE``) to the target as a whole."""
    if isinstance(target, pd.DataFrame) and not per_country:
        return {WHOLE: align(pool, target, by, codebook, **options)}
    parts = target.items() if not isinstance(target, pd.DataFrame) else target.groupby(COUNTRY, sort=True)
    out = {}
    for country, part in parts:
        try:
            out[str(country)] = align(pool, part, by, codebook, **options)
        except AlignError as e:
            raise AlignError(f"target country {country}: {e}") from None
    return out


# ---------------------------------------------------------------- marginals file

def load_marginals(path: str | Path, codebook: Codebook) -> dict[str, dict[str, dict[Any, float]]]:
    """A marginals-only target: ``marginals: {COUNTRY: {ATTR: {code or "lo-hi": share}}}``, every
    attribute an item of ``codebook`` and every code one of its options."""
    raw = load_yaml(path)
    where = str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("marginals"), dict) or not raw["marginals"]:
        raise AlignError(f"{where}: a marginals file holds 'marginals: {{COUNTRY: {{ATTRIBUTE: {{CODE: SHARE}}}}}}'")
    out = {}
    for country, attrs in raw["marginals"].items():
        if not isinstance(attrs, dict) or not attrs:
            raise AlignError(f"{where}: marginals.{country} must map attributes to shares")
        out[str(country)] = {}
        for attr, shares in attrs.items():
            at = f"{where}: marginals.{country}.{attr}"
            if attr not in codebook:
                raise AlignError(f"{at}: not an item of codebook {codebook.name!r}")
            if not isinstance(shares, dict) or not shares or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in shares.values()) \
                    or not sum(shares.values()) > 0:
                raise AlignError(f"{at}: shares must map values to numbers ≥ 0 with a positive sum")
            if codebook[attr].kind != "numeric":
                bad = [k for k in shares if not isinstance(k, int) or not codebook[attr].valid_code(k)]
                if bad:
                    raise AlignError(f"{at}: {bad[0]!r} is not a code of the item")
            out[str(country)][str(attr)] = dict(shares)
    return out


# ---------------------------------------------------------------- the set on disk

def _personas(pool: pd.DataFrame, alignment: Alignment, country: str, size: int | None,
              seed: int) -> tuple[pd.DataFrame, dict[str, float] | None]:
    """The part's personas, and the TV distances of a resampled set's own attributes."""
    kept = np.flatnonzero(alignment.weights > 0)
    tv = None
    if size is None:
        frame = pool.iloc[kept].copy()
        frame[WEIGHT] = alignment.weights[kept] * len(kept)
    else:
        # sorted by the attributes: each attribute cell gets its aligned share of the draws
        by_cells = np.lexsort([_floats(pool[a]) if a in pool else np.zeros(len(pool)) for a in reversed(alignment.by)])
        rows = resample(alignment.weights, size, seed, order=by_cells)
        frame = pool.iloc[rows].copy()
        frame[WEIGHT] = 1.0
        tv = alignment.tv(np.bincount(rows, minlength=len(pool)) / size)
    frame["pool_country"], frame["pool_respondent_id"] = frame[COUNTRY].to_numpy(), frame[ID].to_numpy()
    if country != WHOLE:
        frame[COUNTRY] = country
    return frame.reset_index(drop=True), tv


def _in_codebook(frame: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """The personas in the set's codebook: the items it has, each value checked to be its code
    (and their narrative, if they have one)."""
    items = [q for q in codebook.items if q in frame.columns]
    for q in items:
        values = _floats(frame[q])
        known = values[~np.isnan(values)]
        bad = [v for v in np.unique(known) if v != int(v) or not codebook[q].valid_code(int(v))]
        if bad:
            raise AlignError(f"{q}: the pool holds {bad[0]:g}, not a code of {q} in codebook {codebook.name!r}")
    return frame[[*BASE_COLUMNS, *([PERSONA] if PERSONA in frame.columns else []), *items]]


def write_aligned_set(pool: pd.DataFrame, parts: Mapping[str, Alignment], codebook: Codebook, out: str | Path, *,
                      size: int | None = None, seed: int = 0, humans: pd.DataFrame | None = None,
                      about: dict[str, Any] | None = None) -> Path:
    """Write the set (module docstring); ``codebook`` is the target's, ``humans`` its people."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new directory for the aligned set")
    if size is not None and size < 1:
        raise AlignError(f"--size must be positive, got {size}")
    made = [_personas(pool, a, country, size, seed) for country, a in parts.items()]
    frames = [f for f, _ in made]
    personas = pd.concat(frames, ignore_index=True)
    if len(parts) > 1 or size is not None:   # a pool respondent may now be several personas: ids unique per row
        personas[ID] = np.arange(1, len(personas) + 1)
    first = next(iter(parts.values()))
    report = {"method": first.method, "by": first.by, **(about or {}), "codebook": codebook.name,
              "pool_rows": int(len(pool)), "personas": int(len(personas)), "cap": first.cap,
              "humans": HUMANS_DIR if humans is not None else None,
              "parts": {c: {"personas": int(len(f)), "left_out": a.left_out,
                            "effective_sample_size": round(a.ess, 3),
                            "tv_distance": {x: {"before": round(a.tv_before[x], 6), "after": round(a.tv_after[x], 6),
                                                **({"resampled": round(tv[x], 6)} if tv else {})} for x in a.by}}
                        for (c, a), (f, tv) in zip(parts.items(), made)}}
    staging = staging_dir(out)   # built aside, published by one rename: a failure leaves nothing
    try:
        write_population(_in_codebook(personas, codebook), staging / POPULATION_DIR, codebook)
        if humans is not None:
            write_population(humans, staging / HUMANS_DIR, codebook)
        link = personas[[COUNTRY, ID, "pool_country", "pool_respondent_id"]]
        write_atomic(staging / PERSONAS_FILE, lambda p: link.to_parquet(p, index=False))
        write_text_atomic(staging / REPORT_FILE, yaml.safe_dump(report, sort_keys=False))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish_dir(staging, out)
    return out


def humans_of(population: str | Path) -> Path | None:
    """The people a population's respondents stand for, when it is an aligned set's personas
    (their scores compare them with the target's people); None for any other population."""
    population = Path(population)
    report = population.parent / REPORT_FILE
    if population.name != POPULATION_DIR or not report.is_file():
        return None
    humans = (load_yaml(report) or {}).get("humans")
    if humans is None:
        raise AlignError(f"{population.parent}: an aligned set made from marginals alone has no people "
                         "to score its simulation against")
    return population.parent / humans
