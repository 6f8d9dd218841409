"""``raysim identity calibrate`` (the noise calibration, a Ray job) and ``raysim identity
collapse`` (the diversity-collapse analysis, in-process)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.plan import NOISE_SCOPES
from ..identity.noise_calibration import PROBE_SIGMA
from .help import finish
from .model_arguments import add_model_arguments, model_spec


def _add_setup_arguments(p: argparse.ArgumentParser, agents: int) -> None:
    """The arguments the calibration and the collapse analysis share."""
    add_model_arguments(p)
    p.add_argument("--library", default="embedded", help="vector library directory (default: the embedded one)")
    p.add_argument("--preset", default="smollm2-135m",
                   help="model preset name (configs/models) or a YAML file with a psii block")
    p.add_argument("--population", default="synthetic:2000",
                   help="a canonical Parquet population, synthetic:N, or cardata (default synthetic:2000)")
    p.add_argument("--agents", type=int, default=agents, help=f"respondents sampled (default {agents})")
    p.add_argument("--language", default=None, help="add this language vector at the final block (default none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads per model replica (default: torch's)")
    p.add_argument("-o", "--out", required=True, help="output directory")


def calibrate(argv: list[str] | None = None) -> int:
    """``raysim identity calibrate``: the noise calibration on Ray (a local instance, or the
    cluster RAY_ADDRESS names under ``ray job submit``)."""
    p = finish(argparse.ArgumentParser(prog="raysim identity calibrate", description=calibrate.__doc__),
               "raysim identity calibrate --agents 20 --questions 20 -o calibration/")
    _add_setup_arguments(p, agents=20)
    p.add_argument("--questions", type=int, default=20,
                   help="questions spread evenly over the categories (default 20; 0: all)")
    p.add_argument("--probe-sigma", type=float, default=PROBE_SIGMA,
                   help=f"noise σ the answers are probed with (default {PROBE_SIGMA}, the formula's cap)")
    p.add_argument("--noise-scope", default="respondent", choices=list(NOISE_SCOPES))
    p.add_argument("--actors", type=int, default=1, help="model actors (default 1)")
    p.add_argument("--num-cpus", type=float, default=0.5, help="CPUs per actor (default 0.5)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor (1 on a GPU cluster)")
    p.add_argument("--batch-size", type=int, default=4, help="agents per actor task (default 4)")
    a = p.parse_args(argv)
    from ..pipeline.noise_calibration_job import run_calibration

    run_calibration(model_spec(a), a.out, library=a.library, preset=a.preset, population=a.population,
                    agents=a.agents, questions=a.questions, probe_sigma=a.probe_sigma, seed=a.seed,
                    language=a.language, noise_scope=a.noise_scope, actors=a.actors, num_cpus=a.num_cpus,
                    num_gpus=a.num_gpus, batch_size=a.batch_size, threads=a.threads)
    return 0


def collapse(argv: list[str] | None = None) -> int:
    """``raysim identity collapse``: the analysis in-process (N forward passes, no Ray)."""
    p = finish(argparse.ArgumentParser(prog="raysim identity collapse", description=collapse.__doc__),
               "raysim identity collapse --agents 100 --question Q1 -o collapse/")
    _add_setup_arguments(p, agents=100)
    p.add_argument("--k", type=int, default=5, help="k of the k-NN radius (default 5)")
    p.add_argument("--question", default=None, help="the fixed question (default: the codebook's first, Q1)")
    p.add_argument("--sigma", type=float, default=None, help="PSII noise σ (default: the preset's)")
    p.add_argument("--color-by", default="Q260", help="attribute whose values get their own markers (default Q260)")
    p.add_argument("--every", type=int, default=4, help="grid figure: every N-th layer (default 4)")
    a = p.parse_args(argv)
    import torch

    from ..identity.agents import load_agents, load_setup
    from ..identity.collapse import run_collapse

    if a.threads:
        torch.set_num_threads(a.threads)
    engine, library, preset = load_setup(model_spec(a), a.library, a.preset)
    agents, codebook = load_agents(a.population, a.agents, a.seed)
    table = run_collapse(engine, library, preset, agents, codebook, a.out, qid=a.question, k=a.k, seed=a.seed,
                         sigma=a.sigma, language=a.language, color_by=a.color_by, every=a.every)
    print((Path(a.out) / "collapse.md").read_text())
    print(f"wrote {a.out}/collapse.csv, collapse.md, collapse_grid.png, layers/ ({len(table)} layers)")
    return 0
