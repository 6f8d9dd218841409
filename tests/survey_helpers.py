"""A survey that is not WVS, written as a user would bring one: text labels, weights, one
country, a regional column, ids numbered per region (so they repeat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N = 300
CODEBOOK = """title: A small regional survey
countries: {NZL: New Zealand}
items:
  - id: trust
    text: "Generally speaking, would you say that most people can be trusted?"
    kind: nominal
    options: [[1, Yes], [2, No]]
  - id: satisfaction
    text: "How satisfied are you with your life?"
    kind: ordinal
    options: [[1, Not at all], [2, Slightly], [3, Moderately], [4, Very], [5, Completely]]
  - id: sex
    opinion: false
    text: "Sex"
    kind: nominal
    options: [[1, Woman], [2, Man]]
  - id: age
    opinion: false
    text: "Age"
    kind: numeric
    range: [18, 99]
  - id: region
    opinion: false
    text: "Region"
    kind: nominal
    options: [[1, North], [2, South], [3, East]]
profile:
  sex:
    codes: {1: "You are a woman.", 2: "You are a man."}
  age: "You are {value} years old."
  country: "You live in {country}."
  region: "You live in the {label} region."
"""


def survey_frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    """Answers as labels (trust, sex, region), codes (satisfaction), a few of each missing;
    respondents numbered from 1 within their region."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["North", "South", "East"], n, p=[0.5, 0.3, 0.2])
    woman = rng.random(n) < 0.5
    # trust depends on region, so a score by region has something to find
    p_yes = np.select([region == "North", region == "South"], [0.7, 0.4], 0.2)
    trust = np.where(rng.random(n) < p_yes, "Yes", "No").astype(object)
    trust[rng.random(n) < 0.05] = "Don't know"
    frame = pd.DataFrame({
        "rid": pd.Series(region).groupby(region).cumcount().to_numpy() + 1,
        "wt": rng.uniform(0.5, 2.0, n).round(3),
        "sex": np.where(woman, "Woman", "Man"),
        "age": rng.integers(18, 90, n),
        "region": region,
        "trust": trust,
        "satisfaction": rng.integers(1, 6, n),
    })
    frame["age"] = frame["age"].astype("Int64")
    frame.loc[rng.random(n) < 0.05, "age"] = pd.NA
    return frame


SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "surveys"
"""The README's walkthrough uses these copies: regional.csv is survey_frame(), regional.yaml
CODEBOOK under a comment."""


def write_survey(directory: Path) -> tuple[Path, Path]:
    """The shipped survey CSV and its codebook YAML, copied into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data, codebook = directory / "regional.csv", directory / "regional.yaml"
    data.write_bytes((SHIPPED / "regional.csv").read_bytes())
    codebook.write_bytes((SHIPPED / "regional.yaml").read_bytes())
    return data, codebook


def uniform_results(people: pd.DataFrame, codebook, qids, *, run_id: str, config_hash: str) -> pd.DataFrame:
    """Result rows of the uniform method (no model) for ``people``: a stand-in run's rows."""
    from raysim.methods.simulator import Setup, Simulator
    from raysim.methods.spec import get_method

    return Simulator(get_method("uniform"), None, Setup(codebook, tuple(qids)))(people, run_id, config_hash)
