"""Plots of a layer sweep (the PSII paper's Figure 5): per attribute, KL and normalised entropy
of the simulated answers against the injection layer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import write_atomic


def plot_layer_sweep(table: pd.DataFrame, out: Path, *, base_layers: dict[str, int],
                     best: dict[str, int]) -> list[Path]:
    """One PNG per attribute in ``out``; ``table`` is the sweep's (layer 0: no vector)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = table[table["layer"] == 0].iloc[0]
    paths = []
    for attribute, rows in table[table["layer"] != 0].groupby("attribute", sort=False):
        rows = rows.sort_values("layer")
        fig, (ax_kl, ax_h) = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
        for ax, column, label in ((ax_kl, "kl", "KL(human ‖ simulated)"),
                                  (ax_h, "entropy_sim", "normalised entropy (simulated)")):
            ax.plot(rows["layer"], rows[column], marker="o", ms=3, label=f"{attribute} alone")
            ax.axhline(reference[column], color="grey", ls="--", lw=1, label="no vector")
            ax.axvline(base_layers[attribute], color="tab:orange", ls=":", lw=1.2, label="untuned layer")
            ax.axvline(best[attribute], color="tab:green", ls="-", lw=1, alpha=0.6, label="best layer")
            ax.set_xlabel("injection layer")
            ax.set_ylabel(label)
        ax_h.axhline(reference["entropy_human"], color="black", ls="-.", lw=1, label="human")
        ax_h.legend(fontsize=7, loc="best")
        fig.suptitle(f"Layer sweep: {attribute} ({int(reference['respondents'])} respondents)")
        fig.tight_layout()
        path = out / f"{attribute}.png"
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
        paths.append(path)
    return paths
