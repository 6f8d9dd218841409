"""The canonical population contract and its atomic writers."""

import pandas as pd
import pyarrow.parquet as pq
import pytest

from raysim.survey.codebook import load_codebook
from raysim.survey.population import (
    PopulationError, codebook_of, iter_batches, read_population, schema, write_population,
)


@pytest.fixture
def frame():
    cb = load_codebook("wvs7")
    q = cb.opinion_ids[0]
    return cb, q, pd.DataFrame({"respondent_id": [1, 2, 3], "country": ["USA", "USA", "NOR"],
                                "weight": [1.0, 0.5, 2.0], q: pd.array([1, None, 2], dtype="Int32")})


def test_schema_names_base_columns_and_every_item():
    cb = load_codebook("wvs7")
    sch = schema(cb)
    assert sch.names[:3] == ["respondent_id", "country", "weight"]
    assert sch.names[3:] == list(cb.items)
    assert sch.metadata[b"raysim.codebook"] == b"wvs7"


def test_sharded_roundtrip_keeps_nulls_and_fills_absent_items(tmp_path, frame):
    cb, q, df = frame
    out = write_population([df.iloc[:2], df.iloc[2:]], tmp_path / "pop", cb)
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    back = read_population(out)
    assert back["respondent_id"].tolist() == [1, 2, 3]
    assert back[q].isna().tolist() == [False, True, False]
    other = next(i for i in cb.items if i != q)
    assert back[other].isna().all()
    assert codebook_of(out).name == "wvs7"
    assert sum(len(b) for b in iter_batches(out, batch_size=2)) == 3


def test_existing_output_is_kept_unless_overwrite(tmp_path, frame):
    cb, q, df = frame
    out = write_population(df, tmp_path / "pop", cb)
    with pytest.raises(PopulationError, match="exists"):
        write_population(df.iloc[:1], out, cb)
    assert len(read_population(out)) == 3
    write_population(df.iloc[:1], out, cb, overwrite=True)
    assert len(read_population(out)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["pop"]  # no temporary leftovers


def test_failed_write_leaves_previous_population_intact(tmp_path, frame):
    cb, q, df = frame
    out = write_population(df, tmp_path / "pop", cb)

    def frames():
        yield df
        raise RuntimeError("generator died mid-stream")

    with pytest.raises(RuntimeError):
        write_population(frames(), out, cb, overwrite=True)
    assert len(read_population(out)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["pop"]


def test_single_file_output_and_errors(tmp_path, frame):
    cb, q, df = frame
    f = write_population(df, tmp_path / "pop.parquet", cb)
    assert pq.read_metadata(f).num_rows == 3
    with pytest.raises(PopulationError, match="lacks column"):
        write_population(df.drop(columns=["weight"]), tmp_path / "x.parquet", cb)
    with pytest.raises(PopulationError, match="no column"):
        read_population(f, columns=["Q99999"])
    with pytest.raises(PopulationError, match="no population Parquet"):
        read_population(tmp_path / "missing")
    (tmp_path / "foreign.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(PopulationError, match="not a Parquet file"):
        codebook_of(tmp_path / "foreign.parquet")
