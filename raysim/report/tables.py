"""An experiment's scores as the PSII paper's tables, in one Markdown file.

One table per metric (KL: Table 1, ED: Table 2, JS: Table 5, MAE: Table 6, the paper's
layout; Wasserstein-1: Table 7), rows = methods in their groups (baselines, PSII, ablations), columns = the analysis
categories and Overall, pooled over countries (or the groups scored). A cell reads
``value [95% interval] ×k``: k the multiple of the human noise floor, which has its own row
(what a perfect simulator would score with these respondents). ED's table adds both normalised
entropies, MAE's both normalised variances (value personas' paper), so the direction shows.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from ..metrics.scores import OVERALL, POOLED, UNIFORM, group_column

TABLES = (
    ("kl", "Table 1 — KL divergence KL(human ‖ simulated), lower is better"),
    ("ed", "Table 2 — entropy deviation ED = |H(q) − H(p)| / log K, lower is better"),
    ("js", "Table 5 — Jensen–Shannon divergence (bits), lower is better"),
    ("mae", "Table 6 — MAE of the mean option position / scale range (ordinal items), lower is better"),
    ("w1", "Table 7 — Wasserstein-1 of the option positions / scale range (ordinal items), lower is better"),
)
# Tables that add the two sides of what they compare, Overall, so the direction shows.
SIDES = {"ed": (("H(q)/log K, Overall", "entropy_sim"), ("H(p)/log K, Overall", "entropy_human")),
         "mae": (("normalised variance sim., Overall", "variance_sim"),
                 ("normalised variance human, Overall", "variance_human"))}
MAX_GROUP_COLUMNS = 12


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _cell(r: pd.Series | None) -> str:
    if r is None or math.isnan(r["value"]):
        return "–"
    s = f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    if not math.isnan(r["floor_ratio"]):
        s += f" ×{r['floor_ratio']:.1f}"
    return s


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _metric_table(pooled: pd.DataFrame, metric: str, groups: Mapping[str, Sequence[str]],
                  columns: list[str], baseline: pd.DataFrame) -> list[str]:
    at = pooled[pooled["metric"] == metric].set_index(["method", "category"])
    uniform = baseline[baseline["metric"] == metric].set_index("category")
    extra = SIDES.get(metric, ())
    head = ["method", *columns] + [title for title, _ in extra]
    lines = [_row(head), "|" + "---|" * len(head)]
    for group, methods in groups.items():
        if len(groups) > 1:
            lines.append(_row([f"*{group}*"] + [""] * (len(head) - 1)))
        for m in methods:
            cells = [m] + [_cell(at.loc[(m, c)]) if (m, c) in at.index else "–" for c in columns]
            if extra:
                side = pooled[(pooled["method"] == m) & (pooled["category"] == OVERALL)].set_index("metric")["value"]
                cells += [_fmt(side.get(key, math.nan)) for _, key in extra]
            lines.append(_row(cells))
    if len(uniform):
        lines.append(_row([UNIFORM] + [_cell(uniform.loc[c]) if c in uniform.index else "–" for c in columns]
                          + [""] * len(extra)))
    # The floor depends on the respondents only, the same for every method here: take the first's.
    first = at.loc[next(iter(at.index.get_level_values(0)))] if len(at) else pd.DataFrame()
    floors = [_fmt(first.loc[c, "floor"]) if c in first.index else "–" for c in columns]
    lines.append(_row(["human noise floor", *floors] + [""] * len(extra)))
    return lines


def _group_table(scores: pd.DataFrame, methods: Sequence[str], baseline: pd.DataFrame, metric: str = "kl") -> list[str]:
    """Overall ``metric`` per country (or per answer to the item grouped by), if few enough."""
    group = group_column(scores)
    overall = scores[(scores["category"] == OVERALL) & (scores["metric"] == metric) & (scores[group] != POOLED)]
    names = sorted(overall[group].unique())
    if not names or len(names) > MAX_GROUP_COLUMNS:
        return []
    at = overall.set_index(["method", group])
    lines = [f"### Overall {metric.upper()} per {group}", "", _row(["method", *names]),
             "|" + "---|" * (len(names) + 1)]
    for m in methods:
        lines.append(_row([m] + [_cell(at.loc[(m, c)]) if (m, c) in at.index else "–" for c in names]))
    uniform = baseline[(baseline["category"] == OVERALL) & (baseline["metric"] == metric)].set_index(group)
    if len(uniform):
        lines.append(_row([UNIFORM] + [_cell(uniform.loc[c]) if c in uniform.index else "–" for c in names]))
    first = at.loc[methods[0]]
    lines.append(_row(["human noise floor"] + [_fmt(first.loc[c, "floor"]) if c in first.index else "–"
                                              for c in names]))
    return lines + [""]


def experiment_tables(scores: pd.DataFrame, groups: Mapping[str, Sequence[str]], about: Mapping[str, Any],
                      notes: Sequence[str] = (), baseline: pd.DataFrame | None = None) -> str:
    """``scores``: every method's score table (raysim.metrics.scores), ``method`` = method name;
    ``baseline``: the uniform yardstick (``Scores.baseline``), a row of its own in every table."""
    group = group_column(scores)
    baseline = pd.DataFrame(columns=scores.columns) if baseline is None else baseline
    pooled_baseline = baseline[baseline[group] == POOLED]
    pooled = scores[scores[group] == POOLED]
    categories = [c for c in pooled["category"].drop_duplicates() if c != OVERALL]
    columns = categories + [OVERALL]
    methods = [m for ms in groups.values() for m in ms]
    overall = pooled[(pooled["category"] == OVERALL) & (pooled["metric"] == "kl")]
    n_resp = int(overall["n_respondents"].max()) if len(overall) else 0
    n_q = int(overall["n_questions"].max()) if len(overall) else 0
    out = [f"# {about.get('experiment', 'experiment')}", ""]
    out.append(f"Model {about.get('model')}, {about.get('answer')} mode; {n_resp} respondents drawn from "
               f"{about.get('population')}; {about.get('questions')} question(s), {n_q} scored; "
               f"{about.get('boot')} bootstrap replicates over respondents.")
    if about.get("command"):
        out += ["", "Made with:", "", f"    {about['command']}"]
    out += ["", "Cells: value [95% bootstrap interval] ×multiple of the human noise floor (the same metric "
            "between a bootstrap resample of the real respondents and the real sample: what a perfect "
            "simulator scores with this many respondents). " +
            (f"'{UNIFORM}': every option of every question equally likely (no model), the yardstick a "
             "method must beat. " if len(baseline) else "") +
            ("All respondents scored as one sample." if about.get("score_by") == "sample"
             else f"Pooled = mean of the per-{group} figures."), ""]
    out += [f"- {n}" for n in notes] + ([""] if notes else [])
    for metric, title in TABLES:
        out += [f"## {title}", ""] + _metric_table(pooled, metric, groups, columns, pooled_baseline) + [""]
    out += _group_table(scores, methods, baseline)
    return "\n".join(out).rstrip() + "\n"
