"""What a search or a sweep leaves in its directory: the held-out comparison, the preset file,
the summary."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..atomic import write_atomic
from ..identity.injection import PsiiPreset
from ..metrics.scores import OVERALL, POOLED, group_column
from .actors import answer_on_pool
from .data import Prepared
from .objective import evaluate

HELDOUT = "heldout.csv"
SUMMARY = "summary.md"
BOOT = 200


@dataclass(frozen=True)
class Outcome:
    summary: Path
    actors: list[dict]
    """Each shared actor's ``ScoringActor.stats()``: its load time and the runs it served."""


def heldout_table(actors: list, prepared: Prepared, presets: dict[str, PsiiPreset], out: Path) -> pd.DataFrame:
    """Each preset's scores on the held-out respondents (never seen by the search), with
    bootstrap intervals and the human noise floor; written as ``out``/heldout.csv."""
    config, rows = prepared.config, []
    for name, preset in presets.items():
        answered = answer_on_pool(actors, prepared.heldout, preset, f"{prepared.search_id}-heldout-{name}",
                                  config.run.actors.batch_size)
        ev = evaluate(answered.rows, prepared.heldout, prepared.codebook, config.objective,
                      answer=config.run.answer, n_boot=BOOT, seed=config.split.seed)
        t = ev.scores.table
        overall = t[(t[group_column(t)] == POOLED) & (t["category"] == OVERALL) & t["metric"].isin(["kl", "ed"])]
        for _, r in overall.iterrows():
            rows.append({"preset": name, "metric": r["metric"], "value": r["value"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "floor": r["floor"], "respondents": ev.respondents})
        rows.append({"preset": name, "metric": "objective", "value": ev.objective, "respondents": ev.respondents})
    table = pd.DataFrame(rows)
    write_atomic(out / HELDOUT, lambda tmp: table.to_csv(tmp, index=False))
    return table


def _figures(heldout: pd.DataFrame, preset: str) -> dict[str, float]:
    mine = heldout[heldout["preset"] == preset]
    return {str(m): round(float(v), 6) for m, v in zip(mine["metric"], mine["value"])}


def write_preset(path: Path, preset: PsiiPreset, prepared: Prepared, *, source: str,
                 validation: dict[str, float], heldout: pd.DataFrame) -> None:
    """A model-preset YAML (its ``psii`` block is what run configs read as ``preset:``), with
    where it came from and how it scored."""
    config = prepared.config
    doc = {
        "psii": preset.to_dict(),
        "tuned": {
            "from": f"{config.run.preset_name()} ({source})",
            "model": config.run.model.name_or_path,
            "method": config.run.spec.name,
            "config_digest": config.digest(),
            "date": datetime.date.today().isoformat(),
            "validation": {"respondents": len(prepared.validation), **validation},
            "heldout": {"respondents": len(prepared.heldout), "tuned": _figures(heldout, "tuned"),
                        "untuned": _figures(heldout, "untuned")},
        },
    }
    header = (f"# PSII preset written by raysim ({source}); use it in a run config as preset: {path.name}\n")
    write_atomic(path, lambda tmp: tmp.write_text(header + yaml.safe_dump(doc, sort_keys=False)))


def write_summary(out: Path, prepared: Prepared, heldout: pd.DataFrame, *, title: str, lines: list[str]) -> Path:
    config = prepared.config
    table = ["| preset | metric | value | 95% interval | noise floor |", "|---|---|---:|---|---:|"]
    for _, r in heldout.iterrows():
        interval = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if pd.notna(r.get("ci_low")) else ""
        floor = f"{r['floor']:.4f}" if pd.notna(r.get("floor")) else ""
        table.append(f"| {r['preset']} | {r['metric']} | {r['value']:.4f} | {interval} | {floor} |")
    text = "\n".join([
        f"# {title}: {config.run.spec.name} on {config.run.model.name_or_path}", "",
        f"objective: {config.objective.kl:g} × KL + {config.objective.ed:g} × ED, by {config.objective.by}; "
        f"{len(prepared.validation)} validation and {len(prepared.heldout)} held-out respondents × "
        f"{len(prepared.qids)} questions ({config.run.answer})", "",
        *[f"- {line}" for line in lines], "",
        f"## Held-out respondents (untuned: {config.run.preset_name()})", "", *table, ""])
    path = out / SUMMARY
    write_atomic(path, lambda tmp: tmp.write_text(text))
    return path
