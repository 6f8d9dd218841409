"""Diversity-collapse analysis (the PSII paper's Figure 1, on any model).

For N agents, the hidden state of the final prompt token (PE system turn with the profile plus
one fixed question turn, chat template with the generation prompt) at every layer, (a) without
injection (baseline) and (b) under the agent's PSII plan. Per layer: the k-NN radius (mean
distance to the k-th nearest neighbour) of each set and their ratio, and a 2-D kernel-PCA of
both sets together. A persona prompt alone tends to collapse agents onto a few points in the
upper layers; PSII should spread them from its injection layers on.

The table has one row per layer 0..n_layers (the library's indexing; layer ℓ = output of decoder
block ℓ−1). Layer 0 is the final token's embedding, the same token for every agent, so both radii
are 0 there and the ratio is undefined (NaN); it is kept as a check that all prompts end alike.
Baseline and PSII states are computed in identically shaped batches, so before the first
injection layer they are bitwise equal and so are their radii.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist, squareform
from sklearn.decomposition import KernelPCA

from ..engine.base import LM
from ..methods.prompts import persona_prefix, request
from ..atomic import write_atomic
from ..survey.batteries import battery_items
from ..survey.codebook import Codebook
from ..survey.population import ID, records
from ..survey.profile import render_profile
from .injection import PsiiPreset, check_setup, psii_plan, respondent_seed
from .library import VectorLibrary

CHUNK = 16
"""Prompts per forward pass."""
COLUMNS = ["layer", "injected", "knn_radius_baseline", "knn_radius_psii", "ratio"]
SETS = (("baseline", "tab:blue"), ("PSII", "tab:orange"))
MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*", "<", ">", "h")


@dataclass(frozen=True)
class CollapseStates:
    baseline: np.ndarray
    """[agents, layers, hidden] final-token states without injection."""
    psii: np.ndarray
    """The same under each agent's PSII plan."""
    layers: list[int]
    injected: list[int]
    """Layers where some agent's plan adds a vector (the final block too, with a language vector)."""
    respondent_ids: np.ndarray
    qid: str


# --------------------------------------------------------------------------- states


def final_token_states(engine: LM, library: VectorLibrary, preset: PsiiPreset, respondents: pd.DataFrame,
                       codebook: Codebook, qid: str, seed: int = 0, sigma: float | None = None,
                       language: str | None = None, chunk: int = CHUNK) -> CollapseStates:
    """Final-prompt-token states at every layer, baseline and PSII (σ: the preset's unless given;
    each agent's noise seeded by (seed, respondent id))."""
    preset = preset.for_codebook(codebook)
    check_setup(engine, library, preset)
    item = codebook[qid]
    if not item.has_options:
        raise ValueError(f"question {qid} has no listed options ({item.kind}): pick a multiple-choice item")
    battery = battery_items(codebook).get(qid)
    ids, plans, rids = [], [], []
    for row in records(respondents):
        req = request(persona_prefix(render_profile(row, codebook)), item, battery=battery)
        ids.append(engine.encode(engine.chat(req.prefix + req.question, add_generation_prompt=True)))
        plans.append(psii_plan(library, row, preset, respondent_seed(seed, row[ID]), language=language, sigma=sigma))
        rids.append(int(row[ID]))
    if not ids:
        raise ValueError("no agents")
    layers = list(range(engine.n_layers + 1))
    spans = [(len(x) - 1, len(x)) for x in ids]
    baseline, psii = [], []
    for s in range(0, len(ids), chunk):
        # The same chunks for both, so the two forwards differ only by the injection.
        part = slice(s, s + chunk)
        baseline.append(engine.hidden_means_ids(ids[part], spans[part], layers))
        psii.append(engine.hidden_means_ids(ids[part], spans[part], layers, plans[part]))
    injected = {t.layer for p in plans for t in p.terms}
    if any(p.final_vector is not None for p in plans):
        injected.add(engine.n_layers)
    return CollapseStates(np.concatenate(baseline), np.concatenate(psii), layers, sorted(injected),
                          np.array(rids, dtype=np.int64), qid)


# --------------------------------------------------------------------------- radius


def knn_radius(X: np.ndarray, k: int) -> float:
    """Mean over points of the distance to their k-th nearest neighbour (the point itself
    excluded; duplicates count as neighbours at distance 0)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"points must be a 2-D array [n, dim], got shape {X.shape}")
    if k < 1 or k >= len(X):
        raise ValueError(f"k must be in 1..{len(X) - 1} for {len(X)} points, got {k}")
    # Column 0 of the k+1 nearest is a zero distance (the point itself, or a duplicate of it,
    # which is the same value): column k is the k-th neighbour's distance either way. A KD-tree
    # computes distances from differences, so identical points are exactly 0 apart (sklearn's
    # brute force expands |x−y|² and leaves rounding residue).
    dist, _ = cKDTree(X).query(X, k=k + 1)
    return float(dist[:, k].mean())


def radius_table(states: CollapseStates, k: int) -> pd.DataFrame:
    """Per layer: whether it is injected, both k-NN radii and psii / baseline (NaN where the
    baseline radius is 0)."""
    rows = []
    for j, layer in enumerate(states.layers):
        base, psii = knn_radius(states.baseline[:, j], k), knn_radius(states.psii[:, j], k)
        rows.append((layer, layer in states.injected, base, psii, psii / base if base > 0 else math.nan))
    return pd.DataFrame(rows, columns=COLUMNS)


def table_markdown(table: pd.DataFrame, header: str) -> str:
    lines = [header, "", "| layer | injected | k-NN radius baseline | k-NN radius PSII | PSII / baseline |",
             "|---:|:---:|---:|---:|---:|"]
    for r in table.itertuples(index=False):
        ratio = "–" if math.isnan(r.ratio) else f"{r.ratio:.3f}"
        lines.append(f"| {r.layer} | {'yes' if r.injected else ''} | {r.knn_radius_baseline:.4g} | "
                     f"{r.knn_radius_psii:.4g} | {ratio} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- kernel PCA


def kernel_pca_2d(baseline: np.ndarray, psii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D RBF kernel-PCA fitted on both sets together; gamma by the median heuristic,
    gamma = 1 / (2·m²) with m² the median squared pairwise distance (1 where all points coincide)."""
    X = np.concatenate([baseline, psii]).astype(np.float64)
    sq = pdist(X, "sqeuclidean")
    m2 = float(np.median(sq)) if len(sq) else 0.0
    gamma = 1.0 / (2.0 * m2) if m2 > 0 else 1.0
    # The RBF kernel from exact pairwise distances (sklearn's own expands |x−y|², whose rounding
    # would scatter coinciding points; the plot's autoscaling would then magnify that residue).
    kernel = np.exp(-gamma * squareform(sq))
    Y = KernelPCA(n_components=2, kernel="precomputed", eigen_solver="dense").fit_transform(kernel)
    return Y[: len(baseline)], Y[len(baseline):]


def _scatter(ax, states: CollapseStates, j: int, groups: Sequence[tuple[str, np.ndarray]] | None, title: str) -> None:
    projected = kernel_pca_2d(states.baseline[:, j], states.psii[:, j])
    for (name, color), Y in zip(SETS, projected):
        for g, (label, where) in enumerate(groups or [("", np.ones(len(Y), dtype=bool))]):
            ax.scatter(Y[where, 0], Y[where, 1], s=14, alpha=0.7, c=color, marker=MARKERS[g % len(MARKERS)],
                       linewidths=0, label=name + (f", {label}" if label else ""))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def attribute_groups(respondents: pd.DataFrame, codebook: Codebook, attribute: str | None
                     ) -> list[tuple[str, np.ndarray]] | None:
    """(label, mask) per value of ``attribute`` among the agents (missing values grouped as
    "no answer"); None without the attribute."""
    if not attribute or attribute not in respondents.columns:
        return None
    values = respondents[attribute]
    labels = codebook[attribute].labels if attribute in codebook else {}
    groups = [(f"{attribute}={labels.get(int(v), int(v))}", (values == v).fillna(False).to_numpy(dtype=bool))
              for v in sorted(values.dropna().unique())]
    if values.isna().any():
        groups.append((f"{attribute}: no answer", values.isna().to_numpy(dtype=bool)))
    return groups


def _title(table: pd.DataFrame, j: int) -> str:
    r = table.iloc[j]
    ratio = "" if math.isnan(r["ratio"]) else f", radius ×{r['ratio']:.2f}"
    return f"layer {int(r['layer'])}" + (" (injected)" if r["injected"] else "") + ratio


def grid_layers(n_layers: int, injected: Sequence[int], every: int = 4) -> list[int]:
    """Every ``every``-th layer from 1, the last layer and the injected layers."""
    return sorted(set(range(1, n_layers + 1, max(1, every))) | {n_layers} | set(injected))


def write_plots(states: CollapseStates, table: pd.DataFrame, out: Path,
                groups: Sequence[tuple[str, np.ndarray]] | None, every: int = 4, suptitle: str = "") -> list[Path]:
    """``collapse_grid.png`` (selected layers) and ``layers/layer_NN.png`` (every layer), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "layers").mkdir(exist_ok=True)
    written = []
    chosen = grid_layers(states.layers[-1], states.injected, every)
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows + 0.6), squeeze=False)
    for ax, layer in zip(axes.flat, chosen):
        j = states.layers.index(layer)
        _scatter(ax, states, j, groups, _title(table, j))
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path = out / "collapse_grid.png"
    write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    written.append(path)
    for j, layer in enumerate(states.layers):
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        _scatter(ax, states, j, groups, _title(table, j))
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        path = out / "layers" / f"layer_{layer:02d}.png"
        write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=100))
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- runner


def run_collapse(engine: LM, library: VectorLibrary, preset: PsiiPreset, respondents: pd.DataFrame,
                 codebook: Codebook, out: str | Path, *, qid: str | None = None, k: int = 5, seed: int = 0,
                 sigma: float | None = None, language: str | None = None, color_by: str | None = "Q260",
                 every: int = 4) -> pd.DataFrame:
    """States, radius table and plots for ``respondents``, written into ``out``
    (``collapse.csv``, ``collapse.md``, the PNGs); returns the table. ``qid`` defaults to the
    codebook's first question (Q1 in WVS-7)."""
    qid = qid or codebook.question_ids[0]
    if not 1 <= k < len(respondents):
        raise ValueError(f"k must be in 1..{len(respondents) - 1} for {len(respondents)} agents, got {k}")
    states = final_token_states(engine, library, preset, respondents, codebook, qid, seed, sigma, language)
    table = radius_table(states, k)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = preset.sigma if sigma is None else sigma
    what = (f"{engine.name}, {len(respondents)} agents, question {qid}, k = {k}, σ = {s:g}, "
            f"seed {seed}")
    header = (f"# Diversity collapse: {what}\n\nFinal-prompt-token k-NN radius per layer (layer ℓ = output "
              f"of decoder block ℓ−1), baseline (PE prompt only) vs PSII (injected at layers "
              f"{', '.join(map(str, states.injected)) or 'none'}).")
    write_atomic(out / "collapse.csv", lambda p: table.to_csv(p, index=False))
    write_atomic(out / "collapse.md", lambda p: p.write_text(table_markdown(table, header)))
    write_plots(states, table, out, attribute_groups(respondents, codebook, color_by), every,
                suptitle=f"Kernel PCA of final-token states: {what}")
    return table
