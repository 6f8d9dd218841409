"""The layer sweep (the PSII paper's Figure 5): each attribute's vector injected alone (no other
attribute, no language vector) at every layer, on the validation respondents; KL and
normalised entropy per layer against a reference with no vector at all. Each attribute's best
layer (lowest objective) goes into a preset, scored on the held-out respondents beside the
untuned one. Runs on the same shared model actors as a search: every (attribute, layer) is
submitted at once and the pool works through them.

Written into DIR/layer_sweep/: sweep.csv, <attribute>.png, best_preset.yaml, heldout.csv,
summary.md.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..atomic import write_atomic
from ..identity.injection import PsiiPreset
from ..pipeline.progress import log
from ..report.sweep import plot_layer_sweep
from .actors import check_cpus, pool_work, shared_pool, submit
from .data import Prepared
from .objective import evaluate
from .output import Outcome, heldout_table, write_preset, write_summary

SWEEP_DIR = "layer_sweep"
REFERENCE = 0   # the "layer" of the reference row: no vector injected


def sweep_presets(base: PsiiPreset, attributes: tuple[str, ...], swept: tuple[str, ...], layers: tuple[int, ...],
                  sigma: float) -> dict[tuple[str, int], PsiiPreset]:
    """(attribute, layer) → the preset injecting that attribute alone at that layer; ("", 0) →
    the reference injecting nothing."""
    off = {a: 0.0 for a in attributes}
    alone = base.with_(sigma=sigma, language_scale=0.0, attribute_scales=off)
    presets = {("", REFERENCE): alone}
    for a in swept:
        for layer in layers:
            presets[(a, layer)] = alone.with_(attribute_scales={**off, a: base.scale_of(a)},
                                              attribute_layers={**base.attribute_layers, a: layer})
    return presets


def run_sweep(prepared: Prepared, *, emit: Callable[[str], None] = log) -> Outcome:
    """The sweep into ``prepared.out``/layer_sweep, on actors loaded for it and freed afterwards."""
    run = prepared.config.run
    check_cpus(run.actors, 0, 0.0)
    with shared_pool(pool_work(run, prepared.qids, prepared.codebook.name, prepared.search_id),
                     run.actors) as (actors, loads):
        return _sweep(prepared, actors, loads, emit)


def _sweep(prepared: Prepared, actors: list, loads: list[float], emit: Callable[[str], None]) -> Outcome:
    import ray

    config = prepared.config
    run, out = config.run, prepared.out / SWEEP_DIR
    out.mkdir(exist_ok=True)
    swept, layers = config.sweep_attributes(), config.sweep_layers()
    presets = sweep_presets(prepared.base, config.attributes(), swept, layers, config.sweep.sigma)
    emit(f"{len(actors)} model actors loaded in {', '.join(f'{t:.1f}' for t in loads)} s; sweeping {list(swept)} "
         f"over {len(layers)} layers: {len(presets)} presets × {len(prepared.validation)} respondents")
    refs = {key: submit(actors, prepared.validation, preset, f"sweep-{key[0]}-{key[1]}", run.actors.batch_size, i)
            for i, (key, preset) in enumerate(presets.items())}
    rows = []
    step = max(1, len(refs) // 10)
    for i, ((attribute, layer), mine) in enumerate(refs.items(), 1):
        answered = pd.concat(ray.get(mine), ignore_index=True)
        if i % step == 0 or i == len(refs):
            emit(f"presets scored: {i}/{len(refs)}")
        ev = evaluate(answered, prepared.validation, prepared.codebook, config.objective, answer=run.answer)
        rows.append({"attribute": attribute, "layer": layer, **ev.metrics(),
                     "entropy_sim": ev.overall("entropy_sim"), "entropy_human": ev.overall("entropy_human")})
    table = pd.DataFrame(rows)
    write_atomic(out / "sweep.csv", lambda tmp: table.to_csv(tmp, index=False))
    swept_rows = table[table["layer"] != REFERENCE]
    best = {a: int(g.loc[g["objective"].idxmin(), "layer"]) for a, g in swept_rows.groupby("attribute", sort=False)}
    base = prepared.base
    plots = plot_layer_sweep(table, out, base_layers={a: base.layer_of(a) for a in swept}, best=best)
    tuned = base.with_(attribute_layers={**base.attribute_layers, **best})
    emit(f"best layers {best} (untuned: {({a: base.layer_of(a) for a in swept})}); scoring held-out respondents")
    heldout = heldout_table(actors, prepared, {"untuned": base, "tuned": tuned}, out)
    reference = table[table["layer"] == REFERENCE].iloc[0]
    write_preset(out / "best_preset.yaml", tuned, prepared, source="layer sweep",
                 validation={"best_layers": best}, heldout=heldout)
    summary = write_summary(out, prepared, heldout, title="Layer sweep", lines=[
        f"swept: {list(swept)} at layers {layers[0]}..{layers[-1]} ({len(layers)}), sigma {config.sweep.sigma:g}, "
        f"one attribute alone, no language vector; table: sweep.csv",
        f"reference (no vector): kl {reference['kl']:.4f}, normalised entropy {reference['entropy_sim']:.4f} "
        f"(human {reference['entropy_human']:.4f})",
        f"best layers (lowest objective): {best}", f"plots: {', '.join(p.name for p in plots)}",
        "preset: best_preset.yaml (untuned preset with these per-attribute layers)"])
    return Outcome(summary, ray.get([a.stats.remote() for a in actors]))
