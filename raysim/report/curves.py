"""The persona-count curve as a picture: error against personas per country, with the spread
over repeated draws."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import write_atomic


def plot_persona_curve(summary: pd.DataFrame, metric: str, path: Path) -> Path:
    """``summary``: persona_curve_summary.csv's rows (method, n_personas, mean, p10, p90)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, g in summary.groupby("method", sort=False):
        g = g.sort_values("n_personas")
        line, = ax.plot(g["n_personas"], g["mean"], marker="o", ms=3, label=method)
        ax.fill_between(g["n_personas"], g["p10"], g["p90"], color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("personas per country")
    ax.set_ylabel(f"{metric} (country distribution vs human)")
    ax.set_title("Persona-count curve: mean over draws, 10th–90th percentile band")
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
