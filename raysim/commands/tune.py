"""``raysim tune``: Ray Tune searches (raysim.tune) from the command line."""

from __future__ import annotations

import argparse

from .help import finish


def main(argv: list[str] | None = None) -> int:
    """``raysim tune``: search PSII's parameters with Ray Tune on shared model actors, or run the
    layer sweep; locally or under ``ray job submit`` (jobs/tune.py). The config is checked before
    Ray starts."""
    p = finish(argparse.ArgumentParser(prog="raysim tune", description=main.__doc__),
               "raysim tune --config configs/tune/psii_cardata.yaml -o runs/tune\n"
               "raysim tune --config configs/tune/psii_cardata.yaml -o runs/tune --layer-sweep")
    p.add_argument("--config", required=True, help="tune config YAML (configs/tune/*.yaml)")
    p.add_argument("-o", "--out", required=True,
                   help="search directory: DIR/best_preset.yaml, trials.csv, heldout.csv, summary.md; "
                        "rerunning into it resumes the search")
    p.add_argument("--layer-sweep", action="store_true",
                   help="instead of a search: each attribute alone at every layer (DIR/layer_sweep/)")
    args = p.parse_args(argv)
    from ..pipeline.session import ray_session
    from ..tune.config import load_tune
    from ..tune.data import prepare

    from ..logs import print_log_line
    from ..runs.metadata import recording

    prepared = prepare(load_tune(args.config), args.out)   # bad input fails here (raysim.cli reports it)
    with recording(args.out, "layer sweep" if args.layer_sweep else "search") as facts, ray_session():
        if args.layer_sweep:
            from ..tune.sweep import run_sweep

            outcome = run_sweep(prepared)
        else:
            from ..tune.search import run_search

            outcome = run_search(prepared)
            trials = prepared.config.search.num_samples
            # what the trials answered (a resumed search counts its earlier trials too)
            facts.update(trials=trials, rows=trials * len(prepared.validation) * len(prepared.qids))
    print(outcome.summary.read_text())
    print_log_line()
    return 0
