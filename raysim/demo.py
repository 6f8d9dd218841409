"""The end-to-end demo on the embedded defaults: populations → result rows → scores → report.

PE (the persona profile in the prompt) answered by the embedded default model in logprob mode, on
the synthetic WVS-7 population and on the real carData respondents, each scored beside its
yardsticks (answering uniformly, which needs no model, and the human noise floor) and written up
as an HTML report. Each run goes through the Ray pipeline (raysim.pipeline.simulate) on a local
Ray instance, exactly as `raysim simulate` runs a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engine.loading import EMBEDDED_NAME
from .logs import LOGS_DIR, log_in_use
from .pipeline.config import Actors, RunConfig, RespondentSample
from .pipeline.session import ray_session
from .pipeline.simulate import run
from .report.html import make_report
from .report.scorecard import score_run
from .report.sections import HEADLINE, headline_sentences, overall_rows
from .survey.sources import PopulationSource
from .survey.sources.cardata_source import CarDataSource
from .survey.sources.path_source import PathSource
from .survey.sources.synthetic_source import SyntheticSource

METHOD = "pe"
LABEL = f"PE on {EMBEDDED_NAME}, logprob mode"
REPORT = "report.html"


@dataclass(frozen=True)
class DemoPopulation:
    name: str
    source: PopulationSource
    per_country: int
    questions: int                  # 0: the whole questionnaire
    countries: tuple[str, ...] = ()  # () = all
    batch_size: int = 2


def run_demo(out: Path, n: int = 2000, seed: int = 0, n_boot: int = 100,
             per_country: int | None = None, questions: int | None = None) -> None:
    """``per_country`` / ``questions`` override the demo's sample sizes (tests use tiny ones)."""
    # Sizes that keep the demo to a few minutes on 2 CPU cores.
    populations = [
        DemoPopulation(f"synthetic-{n}", SyntheticSource(n, seed),
                       per_country=per_country or 3, questions=questions or 24,
                       countries=("DEU", "JPN", "NGA", "USA")),
        DemoPopulation("cardata", CarDataSource(), per_country=per_country or 10, questions=0, batch_size=5),
    ]
    summary: list[str] = []
    with ray_session():
        for pop in populations:
            path = out / "populations" / pop.name   # written once
            if not path.exists():
                pop.source.write(path)
            config = RunConfig(population=PathSource(str(path)), method=METHOD,
                               sampling=RespondentSample(per_country=pop.per_country, countries=pop.countries, seed=seed),
                               questions=pop.questions, actors=Actors(number=2, batch_size=pop.batch_size))
            run_dir = out / f"{pop.name}-{METHOD}"
            run(config, run_dir)
            card = score_run(run_dir, n_boot=n_boot, seed=seed)
            report = make_report(run_dir, run_dir / REPORT, score=lambda r: score_run(r, n_boot=n_boot, seed=seed))
            overall = overall_rows(card.scores.table, card.scores.baseline, HEADLINE)
            people = int(overall["n_respondents"].max())
            summary.append(f"{pop.name}, {LABEL}, {people} respondents × {int(overall['n_questions'].max())} questions:")
            summary += [f"  {line.split(': ', 1)[1]}" for line in headline_sentences(overall, HEADLINE)]
            if log := log_in_use():   # (named as the report is: under the -o given)
                summary.append(f"  Ray's and the libraries' logs: {run_dir / LOGS_DIR / log.name}")
            summary.append(f"  report: {report}")
    print("\n" + "\n".join(summary))
