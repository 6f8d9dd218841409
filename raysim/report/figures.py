"""The HTML report's pictures, drawn with matplotlib and returned as PNG bytes (the report inlines
them, so the file stands alone)."""

from __future__ import annotations

import io
import textwrap
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

HUMAN_COLOUR = "#222222"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, dpi: int = 90) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")   # legends placed outside stay in
    plt.close(fig)
    return buf.getvalue()


def distribution(labels: Sequence[str], human: np.ndarray, simulated: Mapping[str, np.ndarray]) -> bytes:
    """One question: the human shares per option beside each method's, as grouped bars."""
    plt = _pyplot()
    k = len(labels)
    width = 0.8 / (1 + len(simulated))
    fig, ax = plt.subplots(figsize=(3.6, 2.1))
    x = np.arange(k)
    ax.bar(x, human, width, color=HUMAN_COLOUR, label="human")
    for j, (name, shares) in enumerate(simulated.items(), start=1):
        ax.bar(x + j * width, shares, width, label=name)
    ax.set_xticks(x + width * len(simulated) / 2)
    ax.set_xticklabels([textwrap.shorten(str(s), 12, placeholder="…") for s in labels], fontsize=6,
                       rotation=30 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.tick_params(axis="y", labelsize=6)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=5, frameon=False, loc="upper right")
    fig.tight_layout(pad=0.3)
    return png(fig)


def comparison(overall: pd.DataFrame, metric: str) -> bytes:
    """Each method's Overall value with its interval, the uniform baseline and the noise floor as
    lines (``overall``: method, value, ci_low, ci_high, floor; a row named by ``UNIFORM_ROW``
    for the baseline, if computed)."""
    plt = _pyplot()
    methods = overall[overall["method"] != UNIFORM_ROW]
    fig, ax = plt.subplots(figsize=(5.2, 0.9 + 0.35 * len(methods)))
    y = np.arange(len(methods))
    err = np.vstack([methods["value"] - methods["ci_low"], methods["ci_high"] - methods["value"]])
    ax.barh(y, methods["value"], xerr=np.clip(err, 0, None), color="#4c78a8", capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels(methods["method"], fontsize=7)
    ax.invert_yaxis()
    floor = methods["floor"].dropna()
    if len(floor):
        ax.axvline(float(floor.mean()), color="#54a24b", ls="--", lw=1, label="human noise floor")
    uniform = overall[overall["method"] == UNIFORM_ROW]
    if len(uniform):
        ax.axvline(float(uniform["value"].iloc[0]), color="#e45756", ls=":", lw=1.2, label="answering uniformly")
    ax.set_xlabel(f"{metric}, Overall (lower is better)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    if len(floor) or len(uniform):
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return png(fig)


def trials(table: pd.DataFrame, objective: str) -> bytes:
    """A search's trials in the order they finished, and the best so far."""
    plt = _pyplot()
    values = table[objective].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    ax.plot(np.arange(1, len(values) + 1), values, "o", ms=3, color="#4c78a8", label="trial")
    ax.plot(np.arange(1, len(values) + 1), np.fmin.accumulate(values), color="#e45756", label="best so far")
    ax.set_xlabel("trial", fontsize=8)
    ax.set_ylabel(objective, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return png(fig)


def history(curves: Mapping[str, Sequence[float]], ylabel: str) -> bytes:
    """A fit's objective per iteration, one line per group."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, marker="o", ms=3, label=name)
    ax.set_xlabel("iteration", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if len(curves) <= 12:
        ax.legend(fontsize=6, frameon=False, ncol=2)
    fig.tight_layout()
    return png(fig)


UNIFORM_ROW = "uniform (no model)"
