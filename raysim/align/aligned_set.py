"""An aligned persona set: a pool population weighted to stand for a target population over some
attributes (``raysim personas align``), written as a canonical population whose ``weight``
column carries the alignment, so any run can simulate it (``population: {path: SET/population}``).

    SET/population/     the pool's personas with aligned weights (or ``size`` of them resampled)
    SET/alignment.yaml  method, attributes, effective sample size, per-attribute TV distance to
                        the target before and after
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..atomic import publish_dir, staging_dir, write_text_atomic
from ..survey.codebook import Codebook
from ..survey.columns import ID, WEIGHT
from ..survey.population import write_population
from .importance import AlignError, density_ratio, effective_sample_size, rake, resample, trim
from .transport import ground_cost, subgroup_weights

METHODS = ("ipf", "classifier", "ot")
POPULATION_DIR, REPORT_FILE = "population", "alignment.yaml"


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
    """Pool rows with a null in an attribute (weight 0)."""
    extra: dict[str, Any] = field(default_factory=dict)


def _shares(values: pd.Series, w: np.ndarray) -> pd.Series:
    s = pd.Series(w, index=values.index).groupby(values.to_numpy()).sum()
    return s / s.sum()


def tv_distance(pool: pd.Series, w: np.ndarray, target: pd.Series, tw: np.ndarray) -> float:
    """Total variation between the weighted distributions of one attribute's values."""
    a, b = _shares(pool, w), _shares(target, tw)
    return float(0.5 * a.sub(b, fill_value=0).abs().sum())


def align(pool: pd.DataFrame, target: pd.DataFrame, by: list[str], codebook: Codebook, *, method: str = "ipf",
          cap: float | None = None, reg: float = 0.01, stay: float = 0.1, seed: int = 0) -> Alignment:
    """Weights of ``pool``'s rows that make it match ``target`` over ``by`` (module docstring)."""
    if method not in METHODS:
        raise AlignError(f"alignment method {method!r} is not one of {list(METHODS)}")
    if not by:
        raise AlignError("--by names no attribute")
    for name, frame in (("pool", pool), ("target", target)):
        absent = [a for a in by if a not in frame.columns]
        if absent:
            raise AlignError(f"{absent[0]}: not an attribute of the {name}")
    numeric = [a for a in by if a in codebook and codebook[a].kind == "numeric"]
    categorical = [a for a in by if a not in numeric]
    usable = pool[by].notna().all(axis=1).to_numpy()
    if not usable.any():
        raise AlignError(f"every pool row has a null in one of {by}")
    target = target[target[by].notna().all(axis=1)]
    if target.empty:
        raise AlignError(f"every target row has a null in one of {by}")
    base = np.where(usable, pool[WEIGHT].to_numpy(dtype=np.float64), 0.0)
    tw = target[WEIGHT].to_numpy(dtype=np.float64)
    p = pool[usable]
    if method == "ipf":
        marginals = {a: _shares(target[a], tw).to_dict() for a in by}
        w = rake(p, marginals, base[usable])
    elif method == "classifier":
        w = density_ratio(p, target, categorical, numeric, target_weights=tw, seed=seed) * base[usable]
    else:
        w = _transport(p, target, categorical, numeric, base[usable], tw, reg=reg, stay=stay)
    if cap is not None:
        w = trim(w, cap)
    weights = np.zeros(len(pool))
    weights[usable] = w / w.sum()
    return Alignment(weights=weights, method=method, by=list(by), ess=effective_sample_size(weights),
                     tv_before={a: tv_distance(p[a], base[usable], target[a], tw) for a in by},
                     tv_after={a: tv_distance(p[a], w, target[a], tw) for a in by},
                     left_out=int((~usable).sum()), extra={"cap": cap} if cap is not None else {})


def _transport(p: pd.DataFrame, target: pd.DataFrame, categorical: list[str], numeric: list[str], base: np.ndarray,
               tw: np.ndarray, *, reg: float, stay: float) -> np.ndarray:
    """OT between attribute cells (personas alike in every attribute are interchangeable, so the
    cost matrix is cells × cells, not people × people); a cell's weight is shared by its personas
    in proportion to their own weights."""
    by = [*categorical, *numeric]
    cells = p[by].assign(_w=base).groupby(by, dropna=False, sort=True)["_w"].sum().reset_index()
    tcells = target[by].assign(_w=tw).groupby(by, dropna=False, sort=True)["_w"].sum().reset_index()
    cell_w = subgroup_weights(ground_cost(cells, tcells, categorical, numeric), cells["_w"].to_numpy(),
                              tcells["_w"].to_numpy(), reg=reg, stay=stay)
    cell_of = p[by].merge(cells[by].assign(_cell=np.arange(len(cells))), on=by, how="left")["_cell"].to_numpy()
    within = base / np.bincount(cell_of, weights=base, minlength=len(cells))[cell_of]
    return cell_w[cell_of] * within


def write_aligned_set(pool: pd.DataFrame, alignment: Alignment, codebook: Codebook, out: str | Path, *,
                      size: int | None = None, seed: int = 0, about: dict[str, Any] | None = None) -> Path:
    """SET/population (weights with mean 1, or ``size`` personas resampled with weight 1, given new
    ids) and SET/alignment.yaml."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new directory for the aligned set")
    kept = alignment.weights > 0
    if size is None:
        frame = pool[kept].copy()
        frame[WEIGHT] = alignment.weights[kept] * kept.sum()
    else:
        if size < 1:
            raise AlignError(f"--size must be positive, got {size}")
        frame = pool.iloc[resample(alignment.weights, size, seed)].copy()
        frame[ID] = np.arange(1, size + 1)
        frame[WEIGHT] = 1.0
    staging = staging_dir(out)   # built aside, published by one rename: a failure leaves nothing
    try:
        write_population(frame.reset_index(drop=True), staging / POPULATION_DIR, codebook)
        report = {"method": alignment.method, "by": alignment.by, **(about or {}),
                  "pool_rows": int(len(pool)), "left_out_nulls": alignment.left_out, "personas": int(len(frame)),
                  "effective_sample_size": round(alignment.ess, 3), **alignment.extra,
                  "tv_distance": {a: {"before": round(alignment.tv_before[a], 6),
                                      "after": round(alignment.tv_after[a], 6)} for a in alignment.by}}
        write_text_atomic(staging / REPORT_FILE, yaml.safe_dump(report, sort_keys=False))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish_dir(staging, out)
    return out
