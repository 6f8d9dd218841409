"""The Inglehart–Welzel map as a picture: each country's human position, and an arrow from it
to where each method puts the same country."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import write_atomic
from ..metrics.iw_map import SURVIVAL_SELFEXPRESSION, TRADITIONAL_SECULAR

HUMAN = "human"


def plot_map(positions: pd.DataFrame, path: Path) -> Path:
    """``positions``: map.csv's rows (source ``human`` and one source per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    human = positions[positions["source"] == HUMAN].set_index("country")
    methods = [s for s in dict.fromkeys(positions["source"]) if s != HUMAN]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.scatter(human[SURVIVAL_SELFEXPRESSION], human[TRADITIONAL_SECULAR], color="black", s=28, zorder=3,
               label="human")
    for country, row in human.iterrows():
        ax.annotate(country, (row[SURVIVAL_SELFEXPRESSION], row[TRADITIONAL_SECULAR]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, method in enumerate(methods):
        colour = colours[i % len(colours)]
        sim = positions[positions["source"] == method].set_index("country")
        ax.scatter(sim[SURVIVAL_SELFEXPRESSION], sim[TRADITIONAL_SECULAR], color=colour, s=22, marker="s",
                   label=method, zorder=3)
        for country, row in sim.iterrows():
            if country in human.index:
                start = human.loc[country]
                ax.annotate("", xy=(row[SURVIVAL_SELFEXPRESSION], row[TRADITIONAL_SECULAR]),
                            xytext=(start[SURVIVAL_SELFEXPRESSION], start[TRADITIONAL_SECULAR]),
                            arrowprops={"arrowstyle": "->", "color": colour, "lw": 0.9, "alpha": 0.8})
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("survival  ←  →  self-expression values")
    ax.set_ylabel("traditional  ←  →  secular-rational values")
    ax.set_title("Inglehart–Welzel map: human (●) and simulated (■) country positions")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
