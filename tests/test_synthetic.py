"""The WVS-7 country table and the synthetic population generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from raysim.survey.codebook import load_codebook
from raysim.survey.countries import CountryError, country_name, get_country, load_countries
from raysim.survey.population import PopulationError, read_population, to_table
from raysim.survey.synthetic import BLOCK, SyntheticError, allocate, synth_frames, write_synthetic

CB = load_codebook("wvs7")
N_POOLED = 3000


def _frame(n: int, seed: int, **kw) -> pd.DataFrame:
    return pd.concat(list(synth_frames(n, seed, **kw)), ignore_index=True)


@pytest.fixture(scope="module")
def pooled() -> pd.DataFrame:
    return _frame(N_POOLED, 11, chunk_rows=700)


@pytest.fixture(scope="module")
def usa() -> pd.DataFrame:
    return _frame(4000, 5, countries=["USA"])


# --- countries --------------------------------------------------------------------------

def test_country_table_matches_the_release():
    countries = load_countries()
    assert len(countries) == 66
    assert sum(c.n for c in countries.values()) == 97_220
    assert len({c.numeric for c in countries.values()}) == 66
    for c in countries.values():
        assert abs(sum(c.religion.values()) - 1) < 1e-9
        assert 2017 <= c.year <= 2023 and c.languages


def test_country_name_reads_in_a_sentence_and_rejects_unknown_codes():
    assert country_name("USA") == "the United States"
    assert country_name("HKG") == "Hong Kong SAR"
    assert country_name("NOR") == "Norway"  # in the carData fixture, not in WVS-7
    assert get_country("DEU").numeric == 276
    with pytest.raises(CountryError, match="'XYZ'"):
        country_name("XYZ")
    with pytest.raises(CountryError, match="'NOR'"):
        get_country("NOR")


# --- allocation ---------------------------------------------------------------------------

def test_full_size_reproduces_real_country_sizes():
    sizes = allocate(97_220)
    assert sizes == {a: c.n for a, c in load_countries().items()}


@pytest.mark.parametrize("n", [300, 2000, 123_457, 10**6])
def test_allocation_sums_to_n_and_stays_within_a_unit_of_the_quota(n):
    sizes = allocate(n)
    assert sum(sizes.values()) == n
    for a, c in load_countries().items():
        assert abs(sizes[a] - n * c.n / 97_220) < 1


@pytest.mark.parametrize("n", [0, 1, 10, 65, 66, 67, 150])
def test_small_n_covers_as_many_countries_as_it_can(n):
    sizes = allocate(n)
    assert sum(sizes.values()) == n
    assert sum(s > 0 for s in sizes.values()) == min(n, 66)
    assert max(sizes.values(), default=0) <= max(1, -(-n * 4018 // 97_220))  # nobody above its rounded-up quota
    if 0 < n < 66:
        assert sizes["CAN"] == 1 and sizes["NIR"] == 0


def test_subset_allocation_and_bad_arguments():
    assert allocate(100, ["USA", "JPN"]) == {"JPN": 34, "USA": 66}
    with pytest.raises(CountryError):
        allocate(10, ["USA", "XXX"])
    with pytest.raises(SyntheticError):
        allocate(-1)
    with pytest.raises(SyntheticError):
        synth_frames(10, -3)
    with pytest.raises(SyntheticError):
        synth_frames(10, 0, chunk_rows=0)


# --- determinism ----------------------------------------------------------------------------

def test_same_seed_same_rows_whatever_the_chunk_size(pooled):
    # Frames are generated lazily: taking the first chunk only generates what it needs.
    first = next(iter(synth_frames(N_POOLED, 11, chunk_rows=1000)))
    pd.testing.assert_frame_equal(first, pooled.iloc[:1000])


def test_chunks_that_cut_through_blocks_give_the_same_rows():
    n = 2 * BLOCK + 300  # three blocks in one country
    whole = _frame(n, 4, countries=["CAN"], chunk_rows=n)
    chunks = list(synth_frames(n, 4, countries=["CAN"], chunk_rows=333))
    assert [len(c) for c in chunks[:-1]] == [333] * (len(chunks) - 1)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_different_seed_different_rows():
    a = _frame(300, 1, countries=["USA", "JPN"])
    b = _frame(300, 2, countries=["USA", "JPN"])
    assert a.respondent_id.tolist() == b.respondent_id.tolist()
    items = CB.opinion_ids
    assert (a[items].fillna(-9) != b[items].fillna(-9)).to_numpy().mean() > 0.3


# --- the contract ---------------------------------------------------------------------------

def test_frames_follow_the_canonical_schema(pooled):
    table = to_table(pooled, CB)
    assert table.num_rows == N_POOLED
    assert list(pooled.columns) == table.schema.names


def test_ids_and_weights(pooled):
    assert pooled.respondent_id.is_unique
    numeric = pooled.country.map(lambda a: get_country(a).numeric)
    k = pooled.respondent_id - numeric * 10**5
    assert k.min() == 1
    assert (k.groupby(pooled.country).max() == pooled.country.value_counts().sort_index()).all()
    assert (pooled.weight > 0).all()
    means = pooled.groupby("country").weight.mean()
    assert np.allclose(means, 1.0)
    assert pooled.weight.std() > 0.1


def test_every_value_is_valid_for_its_item(pooled):
    for qid, item in CB.items.items():
        values = pooled[qid].dropna().unique()
        bad = [int(v) for v in values if not item.valid_code(int(v))]
        assert not bad, f"{qid}: invalid codes {bad}"
    assert pooled[CB.opinion_ids].notna().to_numpy().mean() > 0.9


def test_demographics_are_coherent(pooled):
    year = pooled.country.map(lambda a: get_country(a).year)
    assert set((year - pooled.Q262 - pooled.Q261).unique()) <= {0, 1}
    assert pooled.Q262.between(18, 90).all()
    partnered = pooled.Q273.isin([1, 2])
    for spouse in ("Q276", "Q280", "Q282"):
        assert (pooled[spouse].notna() == partnered).all(), spouse
    assert (pooled.Q284.isna() == (pooled.Q281 == 0)).all()
    numeric = pooled.country.map(lambda a: get_country(a).numeric)
    native = pooled.Q263 == 1
    assert (pooled.Q266[native] == numeric[native]).all()
    assert (pooled.Q266[~native] != numeric[~native]).all()
    assert (pooled.Q272 // 1000 == numeric).all()
    assert (pooled.Q270 >= 1 + pooled.Q273.isin([1, 2])).all()
    young = pooled[pooled.Q262 < 25]
    assert (young.Q273 == 6).mean() > 0.5 > (pooled[pooled.Q262 > 40].Q273 == 6).mean()


def test_country_marginals_shape_demographics():
    df = _frame(2400, 3, countries=["CAN", "ETH"])
    g = df.groupby("country")
    tertiary = g.Q275.apply(lambda s: (s >= 5).mean())
    assert tertiary["CAN"] > 0.4 > 0.15 > tertiary["ETH"]
    assert g.Q262.median()["CAN"] > g.Q262.median()["ETH"] + 5
    eth_religion = df[df.country == "ETH"].Q289.value_counts(normalize=True)
    assert abs(eth_religion[3] - get_country("ETH").religion[3]) < 0.08


def test_first_and_second_choices_differ(pooled):
    pairs = [(q, it.pair) for q, it in CB.items.items() if it.pair and q < it.pair]
    assert pairs
    for a, b in pairs:
        both = pooled[a].notna() & pooled[b].notna()
        assert both.mean() > 0.8
        assert (pooled.loc[both, a] != pooled.loc[both, b]).all(), (a, b)


# --- identity signal --------------------------------------------------------------------------

def _p_value(answers: pd.Series, groups: pd.Series) -> float | None:
    """Chi-square test of answers x a boolean split (answers given by >= 10 people only)."""
    given = answers.notna().to_numpy()
    codes, row = np.unique(answers.to_numpy()[given].astype(int), return_inverse=True)
    table = np.zeros((codes.size, 2))
    np.add.at(table, (row, groups.to_numpy()[given].astype(int)), 1)
    table = table[table.sum(axis=1) >= 10]
    if table.shape[0] < 2 or (table.sum(axis=0) == 0).any():
        return None
    return chi2_contingency(table)[1]


def _share_significant(df: pd.DataFrame, groups: pd.Series) -> float:
    """Share of opinion items whose answers depend on ``groups`` at p < 0.001."""
    p = [v for v in (_p_value(df[q], groups) for q in CB.opinion_ids) if v is not None]
    assert len(p) > 100
    return float(np.mean(np.array(p) < 1e-3))


def test_answers_depend_on_religion_education_and_age_within_a_country(usa):
    assert _share_significant(usa, usa.Q289 == 0) > 0.25
    assert _share_significant(usa, usa.Q275 >= 5) > 0.25
    assert _share_significant(usa, usa.Q262 >= 50) > 0.25
    # A split unrelated to identity finds (almost) nothing: the test above can fail.
    assert _share_significant(usa, usa.respondent_id % 2 == 0) < 0.02


def test_religious_items_track_religion(usa):
    items = [q for q in CB.opinion_ids if CB[q].topic == "religious values" and CB[q].ordinal]
    assert items
    assert np.median([_p_value(usa[q], usa.Q289 == 0) for q in items]) < 1e-6


# --- missingness -------------------------------------------------------------------------------

def test_missingness_is_realistic(pooled):
    op = CB.opinion_ids
    not_asked = pooled.groupby("country")[op].apply(lambda g: g.isna().all())
    assert 0.01 < not_asked.to_numpy().mean() < 0.06
    asked = ~not_asked.reindex(pooled.country).to_numpy()
    null = pooled[op].isna().to_numpy()
    rate = null[asked].mean()
    assert 0.01 < rate < 0.08
    by_item = pd.Series(np.where(asked, null, np.nan).T.tolist(), index=op).map(np.nanmean)
    sensitive = [q for q in op if CB[q].topic in ("political culture and regimes", "corruption")]
    other = [q for q in op if CB[q].topic in ("social values", "happiness and well-being")]
    assert by_item[sensitive].mean() > 1.5 * by_item[other].mean()
    for q in ("Q260", "Q262", "Q275", "Q289"):
        assert pooled[q].notna().all()


def test_off_scale_extra_codes_are_rare_but_present(pooled):
    items = [q for q in CB.opinion_ids if CB[q].extra_codes]
    assert items
    extra = sum(pooled[q].isin([c for c, _ in CB[q].extra_codes]).sum() for q in items)
    answered = sum(pooled[q].notna().sum() for q in items)
    assert 0 < extra / answered < 0.03


# --- writing --------------------------------------------------------------------------------------

def test_write_synthetic_shards_round_trip(tmp_path):
    seen = []
    out = write_synthetic(500, tmp_path / "pop", seed=9, shard_rows=200, countries=["USA", "DEU"],
                          progress=seen.append)
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert seen == [200, 200, 100]
    back = read_population(out)
    expected = _frame(500, 9, countries=["USA", "DEU"])
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    with pytest.raises(PopulationError, match="exists"):
        write_synthetic(500, out, seed=9)
    single = write_synthetic(50, tmp_path / "pop.parquet", seed=9, countries=["JPN"])
    assert len(read_population(single)) == 50
