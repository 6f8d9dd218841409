"""What a search or a layer sweep runs on: its directory, the population, and two disjoint
respondent samples (validation for the search, held-out for the reported scores). No Ray."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..atomic import write_atomic
from ..runs.rundir import SEARCH_CONFIG as CONFIG_FILE
from ..identity.injection import PsiiPreset
from ..survey.codebook import Codebook, load_codebook
from ..survey.population import COUNTRY, ID, read_population
from ..survey.sampling import sample_n
from .config import TuneConfig, TuneError



@dataclass(frozen=True)
class Prepared:
    config: TuneConfig
    out: Path
    codebook: Codebook
    qids: list[str]
    base: PsiiPreset
    validation: pd.DataFrame
    """In a seeded random order: a trial's rungs are fixed chunks of it, each a random part."""
    heldout: pd.DataFrame

    @property
    def search_id(self) -> str:
        return f"tune-{self.config.digest()}"


def claim_dir(config: TuneConfig, out: Path) -> None:
    """A search directory belongs to one config: a rerun with it resumes, another is refused
    (its trials would mix with the old ones)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_FILE
    record = {"digest": config.digest(), "config": config.raw}
    if path.exists():
        old = yaml.safe_load(path.read_text()) or {}
        if old.get("digest") != config.digest():
            raise TuneError(f"{out} holds a search of another config (digest {old.get('digest')}, this one "
                            f"{config.digest()}): use a new directory")
        return
    write_atomic(path, lambda tmp: tmp.write_text(yaml.safe_dump(record, sort_keys=False)))


def prepare(config: TuneConfig, out: str | Path) -> Prepared:
    """Claim ``out``, write a generated population into it once, draw the two samples and read
    their rows (only the columns the method and the scores need)."""
    out = Path(out).resolve()
    claim_dir(config, out)
    run = config.run
    population = run.population.ensure(out)
    codebook = load_codebook(run.codebook_name())
    qids = config.qids()
    people = read_population(population, columns=[ID, COUNTRY])
    split = config.split
    wanted = split.validation + split.heldout
    if wanted > len(people):
        raise TuneError(f"split: {split.validation} validation + {split.heldout} held-out respondents, "
                        f"but the population has {len(people)}")
    # sample_n returns (country, id) order: shuffled (seeded) before the split, so that both
    # samples, and each rung's chunk of the validation sample, are random draws across countries.
    drawn = np.random.default_rng(split.seed).permutation(sample_n(people, wanted, split.seed)[ID].to_numpy())
    needed = list(dict.fromkeys(run.spec.columns(codebook) + qids))
    rows = read_population(population, columns=needed, ids=drawn).set_index(ID, drop=False)
    return Prepared(config, out, codebook, qids, config.base_preset(),
                    rows.loc[drawn[:split.validation]].reset_index(drop=True),
                    rows.loc[np.sort(drawn[split.validation:])].reset_index(drop=True))
