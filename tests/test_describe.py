"""``raysim data describe``: respondents, countries and missing answers of a population."""

import time

import numpy as np
import pandas as pd
import pytest

from raysim.survey.codebook import load_codebook
from raysim.survey.describe import describe_population
from raysim.survey.population import PopulationError, write_population


def population(n: int, seed: int = 3, filled: int | None = None) -> pd.DataFrame:
    """Countries with unequal sizes; the first ``filled`` items answered with item-specific
    missing rates, the rest absent (all null)."""
    cb = load_codebook("wvs7")
    rng = np.random.default_rng(seed)
    data = {"respondent_id": np.arange(n), "country": rng.choice(["USA", "DEU", "KEN"], n, p=[0.5, 0.3, 0.2]),
            "weight": np.ones(n)}
    for i, q in enumerate(list(cb.items)[:filled]):
        values = pd.array(rng.integers(1, 3, n), dtype="Int32")
        values[rng.random(n) < (i % 7) / 10] = pd.NA
        data[q] = values
    return pd.DataFrame(data)


@pytest.fixture
def small(tmp_path):
    df = population(500, filled=40)
    cb = load_codebook("wvs7")
    # two shards, so counts must add up across batches and files
    path = write_population([df.iloc[:200], df.iloc[200:]], tmp_path / "pop", cb)
    return df, path


def test_counts_match_the_data(small):
    df, path = small
    s = describe_population(path)
    cb = load_codebook("wvs7")
    assert s.respondents == 500 and s.codebook == "wvs7"
    assert s.countries == df["country"].value_counts().to_dict()
    assert list(s.countries) == list(df["country"].value_counts().index)  # most first
    full = df.reindex(columns=list(cb.items))
    assert s.missing == pytest.approx(full.isna().mean().to_dict())
    assert list(s.missing) == list(cb.items)
    assert s.overall_missing == pytest.approx(full.isna().to_numpy().mean())


def test_format_lists_countries_and_worst_items(small):
    df, path = small
    s = describe_population(path)
    lines = s.format(worst=5).splitlines()
    assert "respondents: 500" in lines and "countries: 3" in lines
    i = lines.index("countries: 3")
    assert [line.split()[0] for line in lines[i + 1:i + 4]] == list(s.countries)
    worst = lines[lines.index("items with most missing answers:") + 1:]
    assert len(worst) == 5
    assert all(line.split()[1] == "100.0%" for line in worst)  # absent items are missing for all
    assert f"items with no answers at all: {len(s.missing) - 40}" in lines


def test_file_and_shards_describe_alike(tmp_path):
    df = population(300, filled=10)
    cb = load_codebook("wvs7")
    one = describe_population(write_population(df, tmp_path / "one.parquet", cb))
    many = describe_population(write_population([df.iloc[i:i + 50] for i in range(0, 300, 50)], tmp_path / "many", cb))
    assert (one.respondents, one.countries, one.missing) == (many.respondents, many.countries, many.missing)


def test_full_size_population_describes_in_seconds(tmp_path):
    df = population(97_220, filled=60)
    path = write_population(df, tmp_path / "wvs7", load_codebook("wvs7"))
    start = time.perf_counter()
    s = describe_population(path)
    elapsed = time.perf_counter() - start
    assert s.respondents == 97_220 and sum(s.countries.values()) == 97_220
    assert elapsed < 10, f"describe took {elapsed:.1f} s"


def test_not_a_population_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PopulationError, match="no population Parquet"):
        describe_population(tmp_path / "empty")
