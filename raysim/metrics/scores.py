"""Score simulated answers against the real respondents (docs/design.md, "Scores").

``score(results, population, codebook)`` returns, per method, group of respondents (country by
default) and category, every metric with a bootstrap interval over respondents and the human
noise floor.

How the numbers are made:

- Respondents: those present both in the results (any row of that method) and in the
  population, matched on (country, respondent_id). Human p and simulated q of an item are
  both computed over this matched set, so a subsample run is compared with the same
  people's real answers.
- Another sample's humans (``humans``: an aligned persona set's target): p from the humans in
  the group of the same name, bootstrapped apart from the simulated respondents.
- Human p: ``weight``-weighted counts of the substantive answers (nulls, missing codes and
  extra codes such as 0 "off-scale" excluded), in scale order (``Item.scale_positions``).
- Simulated q: mode "probs" = weighted mean of each respondent's ``probs`` (mass on
  non-substantive codes dropped, the rest renormalised); mode "sampled" = weighted counts
  of ``valid`` sampled codes that are substantive. q is weighted with the population's
  ``weight``, the same weights as p: then q estimates the same weighted population as p,
  and a simulator that reproduced every respondent's answer would score exactly p.
- Per item: the metrics of ``distributions``; MAE, W1 and the variances are NaN on
  nominal items. An item is scored in a group when both p and q have mass.
- Groups (``by``): each country; the whole sample as one group ("ALL"); or each value of an
  item of the population (named by its option label, or its code where the item has none),
  respondents with a null in that item being in no group (counted in ``Scores.ungrouped``).
- Aggregation: mean over the scored items of a category; "Overall" = mean over all scored
  items; group "ALL" = mean of the per-group figures (each group once). Named item sets
  (``item_sets``: e.g. the items a mixture was fitted to and the others) are extra
  "categories" aggregated the same way.
- Bootstrap: B multinomial resamples of the matched respondents within each group
  (seeded by (seed, group name), so a group's figures do not depend on which others are
  scored, and methods with the same respondents share resamples). Each resample re-weights
  the per-respondent one-hot (human) and probability (simulated) arrays, p and q are
  recomputed and aggregated as above (for ALL: the per-replicate mean over groups).
  The interval is the replicates' central ``level`` range re-centred on the sample value,
  value + (quantile − mean of the replicates), its low end clipped at 0: a divergence of
  resampled distributions is biased upward by about the noise floor, so the raw percentile
  interval of a near-floor figure would lie wholly above the figure itself.
- Noise floor: metric(p̂*, p̂) between a resample's human distribution and the real
  sample's, averaged over the replicates and aggregated the same way: what a perfect
  simulator would score at this sample size. ``floor_ratio`` = value / floor. Figures of
  one distribution (entropies, variances) have no floor (NaN).

Only ordinal and nominal items are scored (numeric and country-coded items have no
substantive option list).
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ..survey.codebook import MISSING_CODES, Codebook
from ..survey.population import COUNTRY, ID, WEIGHT
from . import distributions as D

MODES = ("probs", "sampled")
BY = ("country", "sample")
COMPARISONS = ("kl", "js", "mae", "w1", "ed")
SINGLES = ("entropy_sim", "entropy_human", "variance_sim", "variance_human")
METRICS = COMPARISONS + SINGLES
ORDINAL_ONLY = frozenset({"mae", "w1", "variance_sim", "variance_human"})
OVERALL, POOLED = "Overall", "ALL"
TABLE_COLUMNS = ("method", "country", "category", "metric", "value", "ci_low", "ci_high",
                 "floor", "floor_ratio", "n_questions", "n_respondents")
QUESTION_COLUMNS = ("method", "country", "qid", "metric", "value", "floor")
DISTRIBUTION_COLUMNS = ("method", "country", "qid", "code", "human", "simulated")
UNIFORM = "answering uniformly"
"""The yardstick every score comes with: the comparison metrics of each item's uniform
distribution over its options (no model), ``Scores.baseline``."""
# Both tables name their group column "country" when scored by country or sample (scripts read
# scores.csv's country column), else after the item grouped by; an item can't take these names.
_TABLE_NAMES = frozenset(TABLE_COLUMNS + QUESTION_COLUMNS + DISTRIBUTION_COLUMNS) - {COUNTRY}
_LISTED = 40   # a bad ``by`` lists up to this many choices; past it, the demographic items
BATCH_ROWS = 1 << 18   # result rows read at a time
_RESULT_COLUMNS = ("method", "config_hash", "respondent_id", "country", "qid",
                   "option_codes", "probs", "sampled_code", "valid")

# Per-item functions of (human p, simulated q) on [..., K] arrays.
_ITEM_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "kl": D.kl, "js": D.js, "mae": D.mae, "w1": D.w1, "ed": D.ed,
    "entropy_sim": lambda p, q: D.norm_entropy(q),
    "entropy_human": lambda p, q: D.norm_entropy(p),
    "variance_sim": lambda p, q: D.norm_variance(q),
    "variance_human": lambda p, q: D.norm_variance(p),
}


class ScoreError(ValueError):
    """Results or population that cannot be scored (names the row and code at fault)."""


@dataclass(frozen=True)
class Scores:
    table: pd.DataFrame
    """Long table, columns ``TABLE_COLUMNS``; grouped by an item, "country" is named after the
    item (``group_column``)."""
    per_question: pd.DataFrame
    """Point value and floor per (method, group, qid, metric), columns ``QUESTION_COLUMNS``,
    the group column named as in ``table``."""
    mode: str
    n_boot: int
    seed: int
    level: float
    unmatched_rows: dict[str, int] = field(default_factory=dict)
    """Per method, result rows whose respondent is not in the population (not scored)."""
    ungrouped: dict[str, int] = field(default_factory=dict)
    """Per method, matched respondents with a null in the item grouped by (in no group)."""
    weightless: tuple[str, ...] = ()
    """Groups left out because their respondents' weights sum to zero (nothing to estimate)."""
    humanless: tuple[str, ...] = ()
    """Groups left out because no human of ``score``'s ``humans`` is in them."""
    baseline: pd.DataFrame | None = None
    """The yardstick: ``UNIFORM``'s figures for the comparison metrics, columns ``TABLE_COLUMNS``
    (method ``UNIFORM``), over the first method's respondents and groups, with the same
    bootstrap replicates and noise floor (its ``floor_ratio`` says how far uniform answers are
    from the floor)."""
    distributions: pd.DataFrame | None = None
    """The sample's human and simulated answer shares per (method, group, qid, option code),
    columns ``DISTRIBUTION_COLUMNS`` (group ALL: every scored group's respondents together),
    the group column named as in ``table``; items scored in the group only."""


# ---------------------------------------------------------------- item layout

@dataclass(frozen=True)
class _Layout:
    """Scored items side by side: item j's options occupy columns offsets[j] .. +K_j in
    scale order, so per-respondent answers form one [n, C] matrix and a resample is a
    single matrix product."""

    qids: tuple[str, ...]
    k: np.ndarray
    offsets: np.ndarray
    ordinal: np.ndarray
    groups: tuple[str, ...]
    membership: np.ndarray  # [n_items, n_groups] float: Overall first, then categories
    codes: np.ndarray       # [C] the option code of each column
    keys: np.ndarray        # sorted (item, code) keys ...
    key_cols: np.ndarray    # ... -> column, or -1 for a known non-substantive code
    k_groups: tuple[tuple[int, np.ndarray, np.ndarray], ...]
    """(K, item indices, [n_items_K, K] column indices) per distinct option count."""

    @classmethod
    def build(cls, codebook: Codebook, qids: list[str],
              item_sets: Mapping[str, Iterable[str]] | None = None) -> "_Layout":
        items = [codebook[q] for q in qids]
        items = [it for it in items if it.has_options]
        if not items:
            raise ScoreError(f"no ordinal or nominal item of codebook {codebook.name!r} in the results: "
                             "nothing to score")
        k = np.array([len(it.options) for it in items])
        offsets = np.concatenate([[0], np.cumsum(k)[:-1]])
        cats = [c for c in codebook.categories if any(it.category == c for it in items)]
        # item sets (e.g. the items a method was fitted to) are aggregated like categories
        sets = {name: {codebook[q].id for q in members} for name, members in (item_sets or {}).items()}
        sets = {name: ids for name, ids in sets.items() if any(it.id in ids for it in items)}
        groups = (OVERALL, *cats, *sets)
        membership = np.array([[1.0] + [float(it.category == c) for c in cats] +
                               [float(it.id in ids) for ids in sets.values()] for it in items])
        keys, cols, codes = [], [], np.zeros(int(k.sum()), dtype=np.int64)
        for j, it in enumerate(items):
            pos = it.scale_positions()
            for code, at in pos.items():
                codes[offsets[j] + at] = code
            other = set(MISSING_CODES) | {c for c, _ in it.extra_codes}
            for code in [*pos, *other]:
                keys.append(_key(j, code))
                cols.append(offsets[j] + pos[code] if code in pos else -1)
        order = np.argsort(keys)
        k_groups = tuple((int(kk), np.flatnonzero(k == kk), offsets[k == kk][:, None] + np.arange(kk))
                         for kk in np.unique(k))
        return cls(qids=tuple(it.id for it in items), k=k, offsets=offsets,
                   ordinal=np.array([it.ordinal for it in items]), groups=groups,
                   membership=membership, codes=codes, keys=np.asarray(keys, dtype=np.int64)[order],
                   key_cols=np.asarray(cols, dtype=np.int64)[order], k_groups=k_groups)

    @property
    def n_columns(self) -> int:
        return int(self.k.sum())

    def columns(self, item: np.ndarray, code: np.ndarray) -> np.ndarray:
        """Column of each (item, code); -1 for a missing or extra code, -2 for a code the
        item does not have."""
        keys = _key(item, code)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.key_cols[at], -2)


def _key(item, code):
    return np.asarray(item, dtype=np.int64) * (1 << 32) + (np.asarray(code, dtype=np.int64) + (1 << 31))


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True)
class _Population:
    frame: pd.DataFrame        # sorted by (country, respondent_id), index 0..N-1
    countries: np.ndarray      # country code per row (index into names)
    names: np.ndarray          # country names
    index: pd.MultiIndex       # (country code, respondent_id) -> row


def _prepare_population(population: pd.DataFrame, layout: _Layout, by: str) -> _Population:
    missing = [c for c in (ID, COUNTRY, WEIGHT, *layout.qids) if c not in population.columns]
    if missing:
        raise ScoreError(f"population lacks column(s) {missing}")
    grouping = [] if by in BY or by in layout.qids else [by]
    df = population[[ID, COUNTRY, WEIGHT, *layout.qids, *grouping]]
    df = df.sort_values([COUNTRY, ID], kind="stable").reset_index(drop=True)
    w = df[WEIGHT].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~(np.isfinite(w) & (w >= 0)))
    if bad.size:
        r = df.iloc[bad[0]]
        raise ScoreError(f"population respondent {r[ID]} ({r[COUNTRY]}): weight {r[WEIGHT]!r} "
                         "is not a finite number ≥ 0")
    codes, names = pd.factorize(df[COUNTRY], sort=True)
    index = pd.MultiIndex.from_arrays([codes, df[ID].to_numpy(dtype=np.int64)])
    if not index.is_unique:
        dup = df[index.duplicated()].iloc[0]
        raise ScoreError(f"population: respondent {dup[ID]} appears twice in country {dup[COUNTRY]}")
    return _Population(df, codes, np.asarray(names), index)


def _human_onehot(pop: _Population, rows: np.ndarray, layout: _Layout) -> np.ndarray:
    """[n, C] one-hot of each respondent's substantive answers (zero rows where none)."""
    answers = pop.frame.loc[rows, list(layout.qids)].to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(answers)
    r, j = np.nonzero(present)
    cols = layout.columns(j, answers[r, j].astype(np.int64))
    if (cols == -2).any():
        i = np.flatnonzero(cols == -2)[0]
        row = pop.frame.loc[rows[r[i]]]
        raise ScoreError(f"population respondent {row[ID]} ({row[COUNTRY]}): code {int(answers[r[i], j[i]])} "
                         f"is not an option of {layout.qids[j[i]]}")
    out = np.zeros((len(rows), layout.n_columns))
    keep = cols >= 0
    out[r[keep], cols[keep]] = 1.0
    return out


def _as_table(results: pd.DataFrame | pa.Table) -> pa.Table:
    names = results.column_names if isinstance(results, pa.Table) else list(results.columns)
    missing = [c for c in _RESULT_COLUMNS if c not in names]
    if missing:
        raise ScoreError(f"results lack column(s) {missing}")
    if isinstance(results, pa.Table):
        return results.select(list(_RESULT_COLUMNS))
    return pa.Table.from_pandas(results[list(_RESULT_COLUMNS)], preserve_index=False)


def _dictionary(col: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """(per-row index, distinct values) of a string column."""
    enc = pc.dictionary_encode(col).combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False), enc.dictionary.to_pylist()


@dataclass(frozen=True)
class _Results:
    """Result rows read batch by batch, only the columns asked for: a table in memory, or a
    Parquet dataset (a run's results directory) scanned, so 25 M rows never sit in memory at
    once. ``transform`` maps each batch's rows (row-local post-processing) before scoring."""
    table: pa.Table | None = None
    dataset: pads.Dataset | None = None
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    @classmethod
    def of(cls, results: "pd.DataFrame | pa.Table | pads.Dataset",
           transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> "_Results":
        if isinstance(results, pads.Dataset):
            missing = [c for c in _RESULT_COLUMNS if c not in results.schema.names]
            if missing:
                raise ScoreError(f"results lack column(s) {missing}")
            return cls(dataset=results, transform=transform)
        return cls(table=_as_table(results), transform=transform)

    def batches(self, columns: list[str], method: str | None = None) -> Iterator[pa.Table]:
        """Batches of ``columns`` (of ``method``'s rows); transformed when they hold ``probs``."""
        transform = self.transform if "probs" in columns else None
        read = list(_RESULT_COLUMNS) if transform else columns
        if self.table is not None:
            t = self.table if method is None else self.table.filter(pc.equal(self.table["method"], method))
            parts = t.select(read).to_batches(max_chunksize=BATCH_ROWS)
        else:
            where = None if method is None else pc.field("method") == method
            parts = self.dataset.to_batches(columns=read, filter=where, batch_size=BATCH_ROWS)
        for batch in parts:
            t = pa.Table.from_batches([batch])
            if transform is not None:
                t = pa.Table.from_pandas(transform(t.to_pandas()), preserve_index=False)
            yield t.select(columns)

    def methods(self) -> dict[str, list[str]]:
        """Each method (in order of first appearance) and its config hashes."""
        out: dict[str, dict[str, None]] = {}
        for t in self.batches(["method", "config_hash"]):
            pairs = t.group_by(["method", "config_hash"], use_threads=False).aggregate([])
            for m, h in zip(pairs["method"].to_pylist(), pairs["config_hash"].to_pylist()):
                out.setdefault(m, {})[h] = None
        return {m: list(h) for m, h in out.items()}

    def qids(self) -> list[str]:
        return list(dict.fromkeys(q for t in self.batches(["qid"]) for q in pc.unique(t["qid"]).to_pylist()))


@dataclass(frozen=True)
class _Answers:
    """One method's simulated answers: each matched respondent's row of the [respondent, C]
    matrix (raw, normalised per item when a group is scored)."""
    pop_rows: np.ndarray   # population row of each matched respondent, sorted
    dense: np.ndarray      # [len(pop_rows), C]


def _locate(t: pa.Table, pop: _Population, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Population row (-1: not in the population) and item index (-1: not scored) of each
    result row."""
    qidx, qnames = _dictionary(t["qid"])
    item_of = {q: j for j, q in enumerate(layout.qids)}
    item = np.array([item_of.get(q, -1) for q in qnames], dtype=np.int64)[qidx]
    cidx, cnames = _dictionary(t["country"])
    pop_code = {c: i for i, c in enumerate(pop.names)}
    country = np.array([pop_code.get(c, -1) for c in cnames], dtype=np.int64)[cidx]
    row = pop.index.get_indexer(pd.MultiIndex.from_arrays([country, t["respondent_id"].to_numpy()]))
    return row, item


def _simulated(res: _Results, pop: _Population, layout: _Layout, mode: str, method: str) -> tuple[_Answers, int]:
    """One method's answers, read in two passes over its rows (which respondents, then their
    answers), and the number of rows whose respondent is not in the population. A respondent
    answering an item twice is an error."""
    keys = ["country", "respondent_id", "qid"]
    matched, unmatched = [], 0
    for t in res.batches(keys, method):
        row, _ = _locate(t, pop, layout)
        matched.append(np.unique(row[row >= 0]))
        unmatched += int((row < 0).sum())
    pop_rows = np.unique(np.concatenate(matched)) if matched else np.zeros(0, dtype=np.int64)
    dense = np.zeros((len(pop_rows), layout.n_columns))
    seen = np.zeros((len(pop_rows), len(layout.qids)), dtype=bool)
    used = 0
    for t in res.batches(list(_RESULT_COLUMNS), method):
        row, item = _locate(t, pop, layout)
        both = (row >= 0) & (item >= 0)
        at = np.searchsorted(pop_rows, row[both])
        flat = at * len(layout.qids) + item[both]
        uniq, counts = np.unique(flat, return_counts=True)
        twice = np.concatenate([uniq[counts > 1], uniq[seen.ravel()[uniq]]])
        if twice.size:
            dup = int(twice.min())
            resp = pop.frame.loc[pop_rows[dup // len(layout.qids)]]
            raise ScoreError(f"results of method {method!r}: respondent {resp[ID]} ({resp[COUNTRY]}) "
                             f"answers {layout.qids[dup % len(layout.qids)]} more than once")
        seen.ravel()[flat] = True
        used += _fill(t, row, item, at_rows=pop_rows, dense=dense, layout=layout, mode=mode, method=method)
    if used == 0:
        wanted = "non-null probs" if mode == "probs" else "a valid sampled_code"
        raise ScoreError(f"method {method!r}: no result row of a population respondent has {wanted} "
                         f"for an ordinal or nominal item (mode {mode!r})")
    return _Answers(pop_rows, dense), unmatched


def _fill(t: pa.Table, row: np.ndarray, item: np.ndarray, *, at_rows: np.ndarray, dense: np.ndarray,
          layout: _Layout, mode: str, method: str) -> int:
    """Write one batch's usable answers into ``dense``; the number of rows used."""
    use = (row >= 0) & (item >= 0)
    if mode == "probs":
        use &= t["probs"].is_valid().to_numpy(zero_copy_only=False)
    else:
        use &= (t["valid"].to_numpy(zero_copy_only=False).astype(bool)
                & t["sampled_code"].is_valid().to_numpy(zero_copy_only=False))
    sel = np.flatnonzero(use)
    if sel.size == 0:
        return 0
    sub = t.take(pa.array(sel))

    def where(i: int) -> str:
        return (f"results of method {method!r}, row of respondent {sub['respondent_id'][i]} "
                f"({sub['country'][i]}), {sub['qid'][i]}")

    if mode == "probs":
        n_codes = pc.list_value_length(sub["option_codes"]).to_numpy(zero_copy_only=False)
        n_probs = pc.list_value_length(sub["probs"]).to_numpy(zero_copy_only=False)
        if (n_codes != n_probs).any():
            i = np.flatnonzero(n_codes != n_probs)[0]
            raise ScoreError(f"{where(i)}: {n_codes[i]} option_codes but {n_probs[i]} probs")
        parent = np.repeat(np.arange(len(sel)), n_codes)
        codes = pc.list_flatten(sub["option_codes"]).to_numpy(zero_copy_only=False)
        vals = pc.list_flatten(sub["probs"]).to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        parent = np.arange(len(sel))
        codes = sub["sampled_code"].to_numpy(zero_copy_only=False)
        vals = np.ones(len(sel))
    cols = layout.columns(item[sel][parent], codes)
    if (cols == -2).any():
        i = np.flatnonzero(cols == -2)[0]
        raise ScoreError(f"{where(parent[i])}: code {int(codes[i])} is not an option of the item")
    if not (np.isfinite(vals) & (vals >= 0)).all():
        i = np.flatnonzero(~(np.isfinite(vals) & (vals >= 0)))[0]
        raise ScoreError(f"{where(parent[i])}: probability {vals[i]!r} is not a finite number ≥ 0")
    keep = cols >= 0
    parent, cols, vals = parent[keep], cols[keep], vals[keep]
    if mode == "probs":
        _check_complete(parent, cols, item[sel], layout, len(sel), where)
    dense[np.searchsorted(at_rows, row[sel][parent]), cols] = vals
    return int(sel.size)


def _check_complete(parent, cols, item, layout: _Layout, n_rows: int, where) -> None:
    """Each probs row must cover every substantive option exactly once; otherwise q would
    silently lack an option."""
    pos = cols - layout.offsets[item[parent]]
    count = np.bincount(parent, minlength=n_rows)
    mask = np.bincount(parent, weights=np.ldexp(1.0, pos), minlength=n_rows)
    k = layout.k[item]
    bad = np.flatnonzero((count != k) | (mask != np.ldexp(1.0, k) - 1))
    if bad.size:
        i = bad[0]
        raise ScoreError(f"{where(i)}: option_codes must list each of the item's {k[i]} substantive options once")


def _sim_matrix(ans: _Answers, rows: np.ndarray, layout: _Layout) -> np.ndarray:
    """[n, C] per-respondent distributions over each item's substantive options (``rows``: matched
    population rows)."""
    return _normalise_items(ans.dense[np.searchsorted(ans.pop_rows, rows)], layout)


def _normalise_items(x: np.ndarray, layout: _Layout) -> np.ndarray:
    """Divide each item's block of columns by its sum; zero-mass blocks become NaN."""
    sums = np.add.reduceat(x, layout.offsets, axis=-1)
    sums = np.repeat(sums, layout.k, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, x / sums, np.nan)


# ---------------------------------------------------------------- per group

@dataclass(frozen=True)
class _GroupScores:
    n: int
    values: dict[str, np.ndarray]   # metric -> [B+1, n_items]: row 0 = the sample itself
    floors: dict[str, np.ndarray]   # comparison metric -> [B, n_items]
    uniform: dict[str, np.ndarray]  # comparison metric -> [B+1, n_items]: against the uniform distribution
    human_mass: np.ndarray          # [C] the sample's weighted human answers (before normalising)
    sim_mass: np.ndarray            # [C] the same of the simulated ones


def _per_item(fn, p: np.ndarray, q: np.ndarray, layout: _Layout, ordinal_only: bool) -> np.ndarray:
    """fn over each item's block; NaN where p or q has no mass (or a nominal item for an
    ordinal-only metric)."""
    n_rep = max(p.shape[0], q.shape[0])
    out = np.full((n_rep, len(layout.qids)), np.nan)
    for k, items, cols in layout.k_groups:
        pk, qk = p[:, cols], q[:, cols]
        ok = np.isfinite(pk).all(-1) & np.isfinite(qk).all(-1)
        if ordinal_only:
            ok &= layout.ordinal[items]
        if not ok.any():
            continue
        # Uniform stand-ins keep the batched call free of NaN; their results are masked.
        v = fn(np.where(ok[..., None], pk, 1.0 / k), np.where(ok[..., None], qk, 1.0 / k))
        out[:, items] = np.where(ok, v, np.nan)
    return out


def _resampled(weights: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """[B+1, n] weights: row 0 the sample itself, then multinomial resamples of its rows."""
    n = len(weights)
    return np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)]) * weights


def _score_group(human: np.ndarray, sim: np.ndarray, weights: np.ndarray, layout: _Layout,
                 rng: np.random.Generator, n_boot: int, human_weights: np.ndarray | None = None) -> _GroupScores:
    """``human_weights`` None: ``human`` and ``sim`` are the same respondents, resampled together;
    else the humans are another sample (``humans`` of ``score``), resampled on their own."""
    n = len(weights)
    w = _resampled(weights, rng, n_boot)
    wh = w if human_weights is None else _resampled(human_weights, rng, n_boot)
    # Columns of never-answered items are all NaN in sim; nan_to_num keeps them out of the product.
    human_mass, sim_mass = wh @ human, w @ np.nan_to_num(sim)
    p, q = _normalise_items(human_mass, layout), _normalise_items(sim_mass, layout)
    scored = np.isfinite(p[0]).reshape(1, -1) & np.isfinite(q[0]).reshape(1, -1)
    p = np.where(scored, p, np.nan)  # an item unscored in the sample stays out of every replicate
    values = {m: _per_item(_ITEM_FUNCS[m], p, q, layout, m in ORDINAL_ONLY) for m in METRICS}
    floors = {m: _per_item(_ITEM_FUNCS[m], p[1:], p[:1], layout, m in ORDINAL_ONLY) for m in COMPARISONS}
    uniform = np.repeat(1.0 / layout.k, layout.k)[None]
    baseline = {m: _per_item(_ITEM_FUNCS[m], p, uniform, layout, m in ORDINAL_ONLY) for m in COMPARISONS}
    return _GroupScores(n, values, floors, baseline, human_mass[0], sim_mass[0])


def _group_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _groups(pop: _Population, rows: np.ndarray, by: str,
            codebook: Codebook) -> tuple[list[tuple[str, np.ndarray]], int]:
    """The matched respondents ``rows`` as (name, sorted rows) per group, and how many are in
    no group (a null in the item grouped by)."""
    if by == "sample":
        return [(POOLED, rows)], 0
    if by == COUNTRY:
        codes = pop.countries[rows]
        return [(str(pop.names[code]), rows[codes == code]) for code in np.unique(codes)], 0
    values = pop.frame.loc[rows, by].to_numpy(dtype=np.float64, na_value=np.nan)
    known = ~np.isnan(values)
    item = codebook[by]
    labels = {**dict(item.extra_codes), **item.labels}
    return ([(labels.get(int(v), str(int(v))), rows[values == v]) for v in np.unique(values[known])],
            int((~known).sum()))


# ---------------------------------------------------------------- aggregation

def _quiet(fn, *args, **kw):
    """numpy's nan-reductions warn on all-NaN slices, which here just mean 'not scored'."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kw)


def _group_mean(v: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """[R, n_items] -> [R, n_groups] means over each group's finite items."""
    ok = np.isfinite(v)
    total = np.where(ok, v, 0.0) @ membership
    count = ok.astype(np.float64) @ membership
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


@dataclass(frozen=True)
class _Figure:
    """One metric for one group of respondents (or ALL): per category value, replicates, floor,
    counts."""
    value: np.ndarray        # [G]
    reps: np.ndarray         # [B, G]
    floor: np.ndarray        # [G] (NaN for single-distribution metrics)
    scored: np.ndarray       # [n_items] bool: items with a finite value


def _figures(cs: _GroupScores, layout: _Layout, uniform: bool = False) -> dict[str, _Figure]:
    """Per metric, the group's figure; ``uniform``: the uniform yardstick's (comparisons only)."""
    out = {}
    for m in COMPARISONS if uniform else METRICS:
        agg = _group_mean((cs.uniform if uniform else cs.values)[m], layout.membership)
        if m in cs.floors:
            floor = _quiet(np.nanmean, _group_mean(cs.floors[m], layout.membership), axis=0)
        else:
            floor = np.full(len(layout.groups), np.nan)
        out[m] = _Figure(agg[0], agg[1:], floor, np.isfinite((cs.uniform if uniform else cs.values)[m][0]))
    return out


def _pool(figs: list[_Figure]) -> _Figure:
    """ALL: each group counted once."""
    mean = lambda xs: _quiet(np.nanmean, np.stack(xs), axis=0)  # noqa: E731
    return _Figure(mean([f.value for f in figs]), mean([f.reps for f in figs]),
                   mean([f.floor for f in figs]), np.logical_or.reduce([f.scored for f in figs]))


def _interval(value: np.ndarray, reps: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Re-centred percentile interval (see the module docstring); every metric is ≥ 0."""
    alpha = (1 - level) / 2
    lo, hi = _quiet(np.nanquantile, reps, [alpha, 1 - alpha], axis=0) - _quiet(np.nanmean, reps, axis=0)
    return np.maximum(value + lo, 0.0), value + hi


def _rows(method: str, group: str, n_resp: int, figs: dict[str, _Figure], layout: _Layout,
          level: float) -> list[dict]:
    rows = []
    for m, f in figs.items():
        lo, hi = _interval(f.value, f.reps, level)
        n_q = f.scored.astype(np.float64) @ layout.membership
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = f.value / f.floor
        for g, name in enumerate(layout.groups):
            if n_q[g] == 0:
                continue
            rows.append({"method": method, "country": group, "category": name, "metric": m,
                         "value": f.value[g], "ci_low": lo[g], "ci_high": hi[g], "floor": f.floor[g],
                         "floor_ratio": ratio[g], "n_questions": int(n_q[g]), "n_respondents": n_resp})
    return rows


def _distribution_rows(method: str, group: str, human_mass: np.ndarray, sim_mass: np.ndarray,
                       layout: _Layout) -> pd.DataFrame:
    p, q = _normalise_items(human_mass, layout), _normalise_items(sim_mass, layout)
    ok = np.isfinite(p) & np.isfinite(q)
    return pd.DataFrame({"method": method, "country": group, "qid": np.repeat(layout.qids, layout.k)[ok],
                         "code": layout.codes[ok], "human": p[ok], "simulated": q[ok]})


def _question_rows(method: str, group: str, cs: _GroupScores, layout: _Layout) -> pd.DataFrame:
    frames = []
    for m in METRICS:
        v = cs.values[m][0]
        fl = _quiet(np.nanmean, cs.floors[m], axis=0) if m in cs.floors else np.full(len(v), np.nan)
        ok = np.isfinite(v)
        frames.append(pd.DataFrame({"method": method, "country": group,
                                    "qid": np.asarray(layout.qids)[ok], "metric": m,
                                    "value": v[ok], "floor": fl[ok]}))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- entry points

def check_by(by: str, codebook: Codebook, columns: Iterable[str] | None = None, *, name: str = "by") -> None:
    """``by`` must be country, sample, or an item of ``codebook`` that is a population column
    (``columns``; None: every item is, as in a canonical population) and whose id is no other
    score-table column; else a one-line ScoreError listing the choices."""
    present = set(codebook.items) if columns is None else set(columns)
    items = [q for q in codebook.items if q in present and q not in _TABLE_NAMES]
    if by in BY or by in items:
        return
    listed = items if len(items) <= _LISTED else [q for q in items if not codebook[q].is_opinion]
    more = f" or any other of its {len(items)} items (raysim codebook list)" if len(listed) < len(items) else ""
    raise ScoreError(f"{name} must be one of {', '.join(BY)} or an item of codebook {codebook.name!r} in the "
                     f"population ({', '.join(listed)}{more}), got {by!r}")


def group_column(table: pd.DataFrame) -> str:
    """The group column of a score, per-question or distributions table: ``country`` (by country or sample) or
    the item its respondents were grouped by."""
    found = [c for c in table.columns if c not in _TABLE_NAMES]
    if len(found) != 1:
        raise ScoreError(f"not a score table: expected one group column beside {sorted(_TABLE_NAMES)}, got {found}")
    return found[0]


def score(results: pd.DataFrame | pa.Table | pads.Dataset, population: pd.DataFrame, codebook: Codebook, *,
          mode: str = "probs", n_boot: int = 200, seed: int = 0, level: float = 0.95,
          by: str = "country", item_sets: Mapping[str, Iterable[str]] | None = None,
          humans: pd.DataFrame | None = None,
          transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Scores:
    """Score every method in ``results`` against ``population`` (see the module docstring).

    ``results`` follows the result-row contract: pandas, an Arrow table, or an Arrow dataset (a
    run's results directory, ``raysim.runs.results.results_dataset``), which is scanned batch by
    batch, never read whole; ``transform`` maps each batch's rows first (row-local
    post-processing). ``population`` is the canonical population frame (``read_population``). ``by="sample"`` scores all matched
    respondents as one group (country "ALL"): a sample drawn across countries, too few per
    country to score each (the PSII paper's 100 respondents). ``by`` an item id (e.g. Q260):
    one group per answer to it, and the group column is named after the item. ``item_sets``:
    name → question ids, each aggregated as one more category (a set with no scored item is
    left out; an id the codebook does not know is an error). ``humans``: the people the
    population's respondents stand for (an aligned persona set's target, raysim.align), in the
    same codebook: each group's human p comes from the humans in the group of the same name,
    resampled apart from the simulated respondents (a group no human is in is not scored,
    listed in ``Scores.humanless``)."""
    if mode not in MODES:
        raise ScoreError(f"mode {mode!r} is not one of {MODES}")
    check_by(by, codebook, population.columns)
    if n_boot < 1 or not 0 < level < 1:
        raise ScoreError(f"need n_boot ≥ 1 and 0 < level < 1 (got n_boot={n_boot}, level={level})")
    res = _Results.of(results, transform)
    qnames = res.qids()
    order = {q: i for i, q in enumerate(codebook.items)}
    unknown = sorted({str(q) for ids in (item_sets or {}).values() for q in ids if q not in codebook})
    if unknown:
        raise ScoreError(f"item sets name questions the codebook {codebook.name!r} does not have: {unknown[:5]}")
    layout = _Layout.build(codebook, sorted((codebook[q].id for q in qnames), key=order.__getitem__), item_sets)
    pop = _prepare_population(population, layout, by)
    weights = pop.frame[WEIGHT].to_numpy(dtype=np.float64)
    people = pop if humans is None else _prepare_population(humans, layout, by)
    human_groups = None if humans is None else \
        dict(_groups(people, np.arange(len(people.frame)), by, codebook)[0])
    humanless: dict[str, None] = {}

    table_rows: list[dict] = []
    baseline_rows: list[dict] = []   # the first method's respondents'
    questions: list[pd.DataFrame] = []
    shares: list[pd.DataFrame] = []
    unmatched: dict[str, int] = {}
    ungrouped: dict[str, int] = {}
    weightless: dict[str, None] = {}
    for method, hashes in res.methods().items():
        if len(hashes) > 1:
            raise ScoreError(f"method {method!r} has results from {len(hashes)} configs {hashes}: "
                             "score one run at a time")
        ans, unmatched[method] = _simulated(res, pop, layout, mode, method)
        groups, ungrouped[method] = _groups(pop, ans.pop_rows, by, codebook)
        if not groups:
            raise ScoreError(f"method {method!r}: every matched respondent has a null in {by}: no group to score")
        per_group: list[dict[str, _Figure]] = []
        per_group_uniform: list[dict[str, _Figure]] = []
        first = not table_rows
        n_total = 0
        masses = np.zeros((2, layout.n_columns))
        for name, rows in groups:
            if not weights[rows].sum() > 0:
                weightless[str(name)] = None
                continue
            hrows, hweights = rows, None
            if human_groups is not None:
                if name not in human_groups:
                    humanless[str(name)] = None
                    continue
                hrows = human_groups[name]
                hweights = people.frame[WEIGHT].to_numpy(dtype=np.float64)[hrows]
            cs = _score_group(_human_onehot(people, hrows, layout), _sim_matrix(ans, rows, layout),
                              weights[rows], layout, _group_rng(seed, name), n_boot, hweights)
            figs = _figures(cs, layout)
            per_group.append(figs)
            n_total += cs.n
            table_rows += _rows(method, name, cs.n, figs, layout, level)
            if first:
                per_group_uniform.append(_figures(cs, layout, uniform=True))
                baseline_rows += _rows(UNIFORM, name, cs.n, per_group_uniform[-1], layout, level)
            questions.append(_question_rows(method, name, cs, layout))
            shares.append(_distribution_rows(method, name, cs.human_mass, cs.sim_mass, layout))
            masses += (cs.human_mass, cs.sim_mass)
        if not per_group:
            if humanless:
                raise ScoreError(f"method {method!r}: no human is in any group of its respondents "
                                 f"(groups {list(humanless)}): nothing to score")
            raise ScoreError(f"method {method!r}: the weights of every group's respondents sum to zero "
                             f"(groups {list(weightless)}): nothing to score")
        if by != "sample":
            pooled = {m: _pool([f[m] for f in per_group]) for m in METRICS}
            table_rows += _rows(method, POOLED, n_total, pooled, layout, level)
            if first:
                pooled = {m: _pool([f[m] for f in per_group_uniform]) for m in COMPARISONS}
                baseline_rows += _rows(UNIFORM, POOLED, n_total, pooled, layout, level)
            shares.append(_distribution_rows(method, POOLED, masses[0], masses[1], layout))

    rename = {} if by in BY else {COUNTRY: by}
    table = pd.DataFrame(table_rows, columns=list(TABLE_COLUMNS)).rename(columns=rename)
    per_question = pd.concat(questions, ignore_index=True)[list(QUESTION_COLUMNS)].rename(columns=rename)
    distributions = pd.concat(shares, ignore_index=True)[list(DISTRIBUTION_COLUMNS)].rename(columns=rename)
    baseline = pd.DataFrame(baseline_rows, columns=list(TABLE_COLUMNS)).rename(columns=rename)
    return Scores(table, per_question, mode, n_boot, seed, level, unmatched, ungrouped, tuple(weightless),
                  tuple(humanless), baseline, distributions)


def to_markdown(scores: Scores | pd.DataFrame, metrics: tuple[str, ...] = ("kl", "js", "w1", "mae", "ed")) -> str:
    """The Overall and per-category rows of every method and group (country, or the item's
    answers) as one Markdown table; a cell reads ``value [ci_low, ci_high] ×floor_ratio``."""
    table = scores.table if isinstance(scores, Scores) else scores
    group = group_column(table)
    wide = table[table["metric"].isin(metrics)].set_index(["method", group, "category", "metric"])
    head = ["method", group, "category", "questions", "respondents", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (method, name, category), block in wide.groupby(level=[0, 1, 2], sort=False):
        block = block.droplevel([0, 1, 2])
        cells = [method, name, category, str(int(block["n_questions"].max())),
                 str(int(block["n_respondents"].iloc[0]))]
        for m in metrics:
            cells.append(_cell(block.loc[m]) if m in block.index else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(r: pd.Series) -> str:
    s = f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    if not math.isnan(r["floor_ratio"]):
        s += f" ×{r['floor_ratio']:.1f}"
    return s
