"""The sections of the HTML report, in page order. Each takes the directory's
:class:`~raysim.report.contents.Contents` and returns its HTML, or None where the directory has
nothing for it; a new section is one function in ``SECTIONS``. Every figure comes with a short
note on how to read it.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import yaml

from ..metrics.scores import COMPARISONS, OVERALL, POOLED, UNIFORM, group_column
from ..runs.metadata import read_run_json
from ..runs.rundir import SEARCH_TRIALS, config_hash, load_run_config
from ..survey.population import codebook_of
from . import figures
from .contents import Contents, fit_record

HEADLINE = "kl"


def image(data: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _number(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def table(frame: pd.DataFrame, table_id: str, numeric: Iterable[str] = ()) -> str:
    """A sortable table (click a heading); numeric cells carry their exact value in data-value."""
    numeric = set(numeric)
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record):
            if column in numeric:
                exact = "" if pd.isna(value) else repr(float(value))
                cells.append(f'<td class="num" data-value="{exact}">{_number(value)}</td>')
            else:
                cells.append(f"<td>{'' if value is None else escape(str(value))}</td>")   # (not 'None')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


# ------------------------------------------------------------------ sections

def about(c: Contents) -> str:
    """What produced the directory: its run.json, and each run's config and hash."""
    parts = [f"<p>{escape(c.kind.capitalize())} directory <code>{escape(str(c.directory))}</code>.</p>"]
    records = [(c.directory.name, read_run_json(c.directory))]
    records += [(name, read_run_json(run)) for name, run in c.runs.items() if run != c.directory]
    facts = []
    for name, record in records:
        if record is None:
            continue
        git = record.get("git") or {}
        facts.append({
            "of": name, "raysim": record.get("raysim"), "git commit": (git.get("commit", "")[:12] +
                                                                       (" (uncommitted changes)" if git.get("dirty") else "")),
            "command": record.get("command"), "started": record.get("started"), "ended": record.get("ended"),
            "seconds": record.get("seconds"), "rows": record.get("rows"), "rows/s": record.get("rows_per_s"),
            "status": record.get("status"), "log": record.get("log")})
    if facts:
        parts.append(table(pd.DataFrame(facts), "provenance"))
        packages = next(r for _, r in records if r is not None).get("packages", {})
        parts.append("<p>Packages: " + escape(", ".join(f"{k} {v}" for k, v in sorted(packages.items()))) + "</p>")
    else:
        parts.append(note("No run.json here: this directory was written before raysim recorded what produced it."))
    for name, run in c.runs.items():
        config = load_run_config(run)
        model = config.get("model", {})
        summary = (f"{name}: model {model.get('name_or_path', model) if isinstance(model, dict) else model}, "
                   f"{config.get('answer')} mode, population {config.get('population_source', config.get('population'))}, "
                   f"{len(config.get('questions') or [])} questions, seed {config.get('seed')}, "
                   f"config hash {config_hash(config)}")
        parts.append(f"<details><summary>{escape(summary)}</summary><pre>"
                     f"{escape(yaml.safe_dump(config, sort_keys=True))}</pre></details>")
    return "".join(parts)


def headline(c: Contents) -> str | None:
    """Each method's Overall score beside answering uniformly and the noise floor, in words and as
    a chart."""
    if c.scores is None:
        return None
    lines, charts = [], []
    for metric in (HEADLINE, "w1"):
        overall = overall_rows(c.scores, c.baseline, metric)
        if overall.empty:
            continue
        charts.append(image(figures.comparison(overall, metric.upper()), f"Overall {metric} per method"))
        if metric == HEADLINE:
            lines = [f"<li>{escape(s)}</li>" for s in headline_sentences(overall, metric)]
    if not charts:
        return None
    return ("<ul class='headline'>" + "".join(lines) + "</ul>" + "".join(charts) +
            note("Each bar is a method's score over all questions (Overall; pooled over the groups), with its 95% "
                 "bootstrap interval over respondents. Lower is better. The green dashed line is the human noise "
                 "floor: what a perfect simulator would score with this many respondents. The red dotted line is "
                 "answering every question uniformly, which needs no model: a method right of it does worse than "
                 "knowing nothing."))


def overall_rows(scores: pd.DataFrame, baseline: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """Each method's Overall row of ``metric`` (pooled over the groups where there are several),
    and the uniform yardstick's as method ``figures.UNIFORM_ROW``."""
    frames = [scores] + ([baseline.assign(method=figures.UNIFORM_ROW)] if baseline is not None else [])
    both = pd.concat(frames, ignore_index=True)
    group = group_column(both)
    chosen = both[(both["metric"] == metric) & (both["category"] == OVERALL)]
    pooled = chosen[chosen[group] == POOLED]
    return (pooled if len(pooled) else chosen.drop_duplicates("method")).reset_index(drop=True)


def headline_sentences(overall: pd.DataFrame, metric: str) -> list[str]:
    """'PE: KL 2.93, 12.2× worse than answering uniformly (0.24); 146.5× the human noise floor (0.02).'"""
    uniform = overall[overall["method"] == figures.UNIFORM_ROW]["value"]
    u = float(uniform.iloc[0]) if len(uniform) else math.nan
    out = []
    for r in overall[overall["method"] != figures.UNIFORM_ROW].itertuples():
        s = f"{r.method}: {metric.upper()} {r.value:.3g}"
        if u > 0:
            s += (f", {r.value / u:.1f}× worse than answering uniformly ({u:.3g})" if r.value >= u else
                  f", {u / r.value:.1f}× better than answering uniformly ({u:.3g})" if r.value > 0 else "")
        if r.floor > 0:
            s += f"; {r.value / r.floor:.1f}× the human noise floor ({r.floor:.3g})"
        out.append(s)
    return out


def scores(c: Contents) -> str | None:
    if c.scores is None:
        return None
    both = pd.concat([c.scores] + ([c.baseline] if c.baseline is not None else []), ignore_index=True)
    group = group_column(both)
    shown = both[both["metric"].isin(COMPARISONS)]
    shown = shown[["method", group, "category", "metric", "value", "ci_low", "ci_high", "floor", "floor_ratio",
                   "n_questions", "n_respondents"]].rename(columns={"floor_ratio": "×floor"})
    return ('<div class="scroll">' + table(shown, "scores", numeric=("value", "ci_low", "ci_high", "floor", "×floor")) + "</div>" +
            note(f"Every method's scores per {group} (ALL: the mean over them) and question category, with the 95% "
                 "bootstrap interval, the human noise floor and the value as a multiple of it (×floor: 1 is as good "
                 f"as the sample size allows). '{UNIFORM}' is the yardstick. Click a heading to sort."))


def questions(c: Contents) -> str | None:
    """Per question, the human answer shares beside each method's, searchable by item text."""
    dists = c.distributions()
    if not dists:
        return None
    first = next(iter(c.runs.values()))
    codebook = codebook_of(load_run_config(first)["population"])
    both = pd.concat(dists.values(), ignore_index=True)
    group = group_column(both)
    groups = set(both[group])
    shown = POOLED if POOLED in groups else sorted(groups)[0]
    both = both[both[group] == shown]
    cards = []
    for qid in [q for q in codebook.items if q in set(both["qid"])]:
        item = codebook[qid]
        rows = both[both["qid"] == qid]
        codes = list(dict.fromkeys(rows["code"]))
        human = rows.drop_duplicates("code").set_index("code")["human"].reindex(codes).to_numpy()
        simulated = {m: g.set_index("code")["simulated"].reindex(codes).to_numpy() for m, g in rows.groupby("method", sort=False)}
        labels = [item.labels.get(int(code), str(code)) for code in codes]
        text = f"{qid} {item.text}"
        cards.append(f'<figure class="question" data-search="{escape(text.lower())}">'
                     f"{image(figures.distribution(labels, human, simulated), qid)}"
                     f"<figcaption><b>{escape(qid)}</b> {escape(item.text)}</figcaption></figure>")
    return (f'<input id="question-search" type="search" placeholder="Search the questions by id or text">'
            f'<p id="question-count">{len(cards)} questions</p><div class="grid">{"".join(cards)}</div>' +
            note(f"Respondents: {shown}. Black bars: the real respondents' answer shares (weighted); coloured bars: "
                 "each method's simulated shares for the same people. Where the bars agree the method reproduces "
                 "the population's answers; a method that puts its mass on one option is overconfident."))


def search(c: Contents) -> str | None:
    """A Tune search: its trials (and best so far), the held-out comparison, the best preset."""
    d = c.directory
    parts = []
    if (d / SEARCH_TRIALS).is_file():
        trials = pd.read_csv(d / SEARCH_TRIALS)
        if "objective" in trials:
            parts.append(image(figures.trials(trials, "objective"), "trials"))
            parts.append(note("Each dot is one trial's objective on the validation respondents, in the order "
                              "trials finished; the red line is the best so far. A line that flattens early "
                              "means more trials would not have helped much."))
        parts.append(table(trials, "trials", numeric=[c for c in trials.columns if trials[c].dtype.kind == "f"]))
    for heldout_csv in (d / "heldout.csv", d / "layer_sweep" / "heldout.csv"):
        if heldout_csv.is_file():
            heldout = pd.read_csv(heldout_csv)
            parts.append(f"<h3>Held-out respondents ({escape(heldout_csv.parent.name)})</h3>")
            parts.append(table(heldout, f"heldout-{heldout_csv.parent.name}",
                               numeric=[c for c in heldout.columns if heldout[c].dtype.kind == "f"]))
            parts.append(note("The tuned preset and the untuned one scored on respondents the search never saw: "
                              "the honest test of whether tuning helped."))
    best = d / "best_preset.yaml"
    if best.is_file():
        parts.append(f"<details><summary>best preset</summary><pre>{escape(best.read_text())}</pre></details>")
    return "".join(parts) or None


def fit(c: Contents) -> str | None:
    """A fit's parameters and result; a mixture's objective per iteration and group."""
    record = fit_record(c.directory)
    if record is None:
        return None
    result = record.get("result", {}) or {}
    parts = [f"<p>Fitter <b>{escape(str(record.get('fitter')))}</b>.</p>"]
    curves = {g: [h["objective"] for h in v.get("objective", [])] for g, v in (result.get("groups") or {}).items()
              if isinstance(v, dict) and v.get("objective")}
    if curves:
        parts.append(image(figures.history(curves, "objective"), "mixture history"))
        parts.append(note("The mixture's objective (distance of its answer distribution to the real one) after each "
                          "iteration, per group: it should fall and level off; a group that rises was fitted to "
                          "noise."))
    brief = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    parts.append(f"<details><summary>parameters and result</summary><pre>"
                 f"{escape(yaml.safe_dump({'params': record.get('params'), 'result': brief}, sort_keys=True))}"
                 f"</pre></details>")
    return "".join(parts)


# Figures other jobs leave in a directory, with how to read them (matched by file name).
PICTURES: tuple[tuple[Callable[[Path], bool], str], ...] = (
    (lambda p: p.name == "map.png", "The Inglehart–Welzel cultural map: each country's position on traditional vs "
     "secular values (vertical) and survival vs self-expression values (horizontal), fitted on the real answers; "
     "arrows run from the humans to a method's simulated respondents. Short arrows: the method keeps the cultural "
     "differences; arrows that all point to one place: it answers alike for every country."),
    (lambda p: p.name == "persona_curve.png", "The persona-count curve: how the error of a country's simulated "
     "distribution falls as more personas are drawn. Where it flattens, more personas no longer help."),
    (lambda p: p.parent.name == "layer_sweep", "The layer sweep: one attribute's vector injected alone at each layer; "
     "the KL to the uninjected model shows where injection moves answers, the entropy whether it collapses them."),
    (lambda p: p.name.startswith("collapse") or p.parent.name == "layers", "The diversity-collapse analysis: how "
     "spread out the respondents' hidden states are per layer. Points that bunch together mean the model treats "
     "different people alike."),
)


def pictures(c: Contents) -> str | None:
    found = []
    for path in sorted(c.directory.rglob("*.png")):
        if any(part.startswith(".") for part in path.relative_to(c.directory).parts):
            continue
        explain = next((text for match, text in PICTURES if match(path)), None)
        if explain is None:
            continue
        found.append(f"<figure>{image(path.read_bytes(), path.name)}<figcaption>"
                     f"{escape(str(path.relative_to(c.directory)))}</figcaption></figure>{note(explain)}")
    return "".join(found) or None


SECTIONS: tuple[tuple[str, Callable[[Contents], str | None]], ...] = (
    ("About this report", about),
    ("Headline", headline),
    ("Scores", scores),
    ("Questions: human vs simulated answers", questions),
    ("Search", search),
    ("Fit", fit),
    ("Figures", pictures),
)

