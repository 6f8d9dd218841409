"""Official WVS-7 files (CSV, .sav, .dta, zip) into the canonical population, and back out."""

import json
import zipfile

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from raysim.survey.codebook import Codebook, load_codebook
from raysim.survey.importer import REPORT_FILE, VALUE_LABELS_FILE, import_wvs7
from raysim.survey.loaders import WVS7ImportError
from raysim.survey.respondent_ids import SOURCE_ID
from raysim.survey.official_layout import (
    EXPORT_MISSING, official_columns, to_official_frame, write_official,
)
from raysim.survey.population import PopulationError, read_population, write_population

N = 240
COUNTRIES = ["DEU", "JPN", "NGA", "USA"]


def random_population(codebook: Codebook, n: int = N, seed: int = 7) -> pd.DataFrame:
    """Valid random codes for every item, about 10% nulls."""
    rng = np.random.default_rng(seed)
    data = {"respondent_id": rng.permutation(np.arange(1, n + 1)) * 1000 + 17,
            "country": rng.choice(COUNTRIES, n), "weight": rng.uniform(0.2, 3.0, n)}
    for q, item in codebook.items.items():
        if item.kind == "numeric":
            codes = rng.integers(item.range[0], item.range[1] + 1, n)
        elif item.kind == "coded":
            codes = rng.choice([0, 1, 2, 5, 840001, 840002], n)
        else:
            codes = rng.choice([c for c, _ in item.options + item.extra_codes], n)
        values = pd.array(codes, dtype="Int32")
        values[rng.random(n) < 0.1] = pd.NA
        data[q] = values
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def cb():
    return load_codebook("wvs7")


@pytest.fixture(scope="module")
def qid(cb):
    """An ordinal opinion item: its codes are a closed set, so 99 is unknown."""
    return next(q for q, it in cb.items.items() if it.is_opinion and it.kind == "ordinal")


@pytest.fixture(scope="module")
def population(cb):
    return random_population(cb)


@pytest.fixture(scope="module")
def expected(population, cb, tmp_path_factory):
    """The original population as it reads back from the canonical contract (the interview ids,
    all unique, are the respondent ids and are kept as source ids)."""
    path = tmp_path_factory.mktemp("expected") / "pop.parquet"
    kept = population.copy()
    kept.insert(3, SOURCE_ID, kept["respondent_id"])
    return read_population(write_population(kept, path, cb))


@pytest.fixture(scope="module")
def official(population, cb):
    return to_official_frame(population, cb)


@pytest.fixture(scope="module")
def files(official, tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    out = {fmt: write_official(official, d / f"WVS_Cross-National_Wave_7_{fmt}_v6_0.{fmt}")
           for fmt in ("csv", "sav", "dta")}
    out["zip"] = d / "WVS_Cross-National_Wave_7_csv_v6_0.zip"
    with zipfile.ZipFile(out["zip"], "w", zipfile.ZIP_DEFLATED) as z:
        z.write(out["csv"], "F00011356/WVS_Cross-National_Wave_7_csv_v6_0.csv")
    return out


def one_line_error(path, out, match, **kw) -> str:
    with pytest.raises(WVS7ImportError, match=match) as e:
        import_wvs7(path, out, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


@pytest.mark.parametrize("fmt", ["csv", "sav", "dta", "zip"])
def test_every_format_imports_to_the_original_population(fmt, files, expected, population, tmp_path):
    report = import_wvs7(files[fmt], tmp_path / "pop", chunk_rows=100)
    back = read_population(tmp_path / "pop")
    pd.testing.assert_frame_equal(back, expected)
    assert report.rows == N and report.anomalies == {} and report.weights
    assert report.countries == population["country"].value_counts().to_dict()
    assert report.format == ("zip:csv" if fmt == "zip" else fmt)
    assert len(list((tmp_path / "pop").glob("part-*.parquet"))) == 3  # one shard per 100 rows
    assert json.loads((tmp_path / "pop" / REPORT_FILE).read_text()) == report.to_json()


def test_csv_header_is_the_official_layout(files, cb):
    header = files["csv"].open().readline().rstrip("\n").split(",")
    assert header == list(official_columns())
    assert len(header) == 611  # the v6.0 release's column count
    assert header[:3] == ["version", "doi", "A_WAVE"] and header.index("Q1") == 40
    assert set(cb.items) <= set(header)


def test_null_answers_become_a_deterministic_mix_of_missing_codes(population, official, cb):
    again = to_official_frame(population, cb)
    pd.testing.assert_frame_equal(official, again)
    seen = set()
    for q in cb.items:
        null = population[q].isna().to_numpy()
        assert (official[q].to_numpy()[~null] == population[q].to_numpy()[~null].astype(int)).all()
        seen |= set(official[q].to_numpy()[null].tolist())
    assert seen == set(EXPORT_MISSING.tolist())


def test_semicolon_csv_is_sniffed(official, expected, tmp_path):
    path = tmp_path / "wvs7.csv"
    official.to_csv(path, sep=";", index=False)
    import_wvs7(path, tmp_path / "pop")
    pd.testing.assert_frame_equal(read_population(tmp_path / "pop"), expected)


def test_missing_weight_column_means_weight_one(official, tmp_path):
    path = tmp_path / "noweight.csv"
    official.drop(columns=["W_WEIGHT"]).to_csv(path, index=False)
    report = import_wvs7(path, tmp_path / "pop")
    assert not report.weights and any("every weight is 1.0" in line for line in report.lines())
    assert (read_population(tmp_path / "pop")["weight"] == 1.0).all()


@pytest.mark.parametrize("fmt,keep", [("csv", 0.97), ("csv", 0.5), ("sav", 0.8), ("dta", 0.8), ("dta", 0.995)])
def test_truncated_file_is_a_one_line_error(fmt, keep, files, tmp_path):
    data = files[fmt].read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[:int(len(data) * keep)])
    one_line_error(cut, tmp_path / "pop", "truncated")
    assert not (tmp_path / "pop").exists()


def test_foreign_csv_names_the_missing_columns(tmp_path):
    path = tmp_path / "iris.csv"
    pd.DataFrame({"sepal_length": [5.1, 4.9], "sepal_width": [3.5, 3.0], "species": ["setosa"] * 2}).to_csv(path, index=False)
    msg = one_line_error(path, tmp_path / "pop", "not a WVS-7 file")
    assert "D_INTERVIEW, B_COUNTRY_ALPHA" in msg and msg.endswith("more")


def test_inverted_release_is_recognised(official, cb, qid, tmp_path):
    path = tmp_path / "inverted.csv"
    official.rename(columns={qid: qid + "P"}).to_csv(path, index=False)
    msg = one_line_error(path, tmp_path / "pop", "Inverted")
    assert f"{qid}P" in msg


@pytest.mark.parametrize("members,found", [(["a.csv", "b.sav"], "found 2"), (["readme.txt"], "found 0")])
def test_zip_must_hold_exactly_one_data_file(members, found, files, tmp_path):
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as z:
        for m in members:
            z.write(files["csv"], m)
    one_line_error(path, tmp_path / "pop", found)


@pytest.mark.parametrize("bad,match", [("abc", "non-numeric value 'abc'"), (2.5, "non-integer value 2.5")])
def test_q_column_with_text_or_fractions_names_column_and_row(bad, match, official, qid, tmp_path):
    frame = official.astype({qid: object})
    frame.loc[6, qid] = bad
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    msg = one_line_error(path, tmp_path / "pop", match)
    assert f"column {qid}" in msg and "row 7" in msg


def test_unknown_codes_are_counted_or_rejected(official, expected, qid, tmp_path):
    frame = official.copy()
    frame.loc[[0, 3], qid] = 99
    frame.loc[5, qid] = -7
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)
    report = import_wvs7(path, tmp_path / "pop")
    assert report.anomalies == {qid: {-7: 1, 99: 2}} and report.anomaly_count == 3
    assert f"  {qid} code 99: 2" in report.lines()
    back = read_population(tmp_path / "pop")
    assert back[qid].isna()[[0, 3, 5]].all()
    pd.testing.assert_frame_equal(back.drop(index=[0, 3, 5]), expected.drop(index=[0, 3, 5]))
    msg = one_line_error(path, tmp_path / "strict", "does not know", strict=True)
    assert f"column {qid} holds code -7" in msg and "row 6" in msg


def test_failed_import_leaves_existing_output_unchanged(files, official, tmp_path):
    out = tmp_path / "pop"
    import_wvs7(files["csv"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = official.copy()
    bad.loc[len(bad) - 1, "W_WEIGHT"] = -1.0   # found in the last chunk, after shards were staged
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    one_line_error(path, out, rf"W_WEIGHT is negative \(-1.0\) at row {len(bad)}", overwrite=True, chunk_rows=50)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "pop"]  # no staging left over
    with pytest.raises(PopulationError, match="exists"):
        import_wvs7(files["csv"], out)


@pytest.mark.parametrize("weight,match", [(-0.5, r"W_WEIGHT is negative \(-0.5\) at row 4"),
                                          (np.nan, "W_WEIGHT is empty at row 4")])
def test_bad_weight_names_the_row(weight, match, official, tmp_path):
    frame = official.copy()
    frame.loc[3, "W_WEIGHT"] = weight
    path = tmp_path / "weights.csv"
    frame.to_csv(path, index=False)
    one_line_error(path, tmp_path / "pop", match)


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_value_labels_of_coded_items_are_kept(fmt, official, population, cb, tmp_path):
    coded = [q for q, it in cb.items.items() if it.kind == "coded"]
    labels = {q: {int(c): f"{q} answer {c}" for c in population[q].dropna().unique()} for q in coded}
    path = write_official(official, tmp_path / f"labelled.{fmt}", codebook=cb, value_labels=labels)
    report = import_wvs7(path, tmp_path / "pop")
    kept = json.loads((tmp_path / "pop" / VALUE_LABELS_FILE).read_text())
    assert report.value_labels == coded
    assert kept == {q: {str(c): lab for c, lab in sorted(v.items())} for q, v in labels.items()}


def test_labels_are_written_to_sav(files, cb, qid):
    _, meta = pyreadstat.read_sav(str(files["sav"]), metadataonly=True)
    assert meta.variable_value_labels[qid][1.0] == cb[qid].labels[1]
    assert meta.column_names_to_labels[qid] == (cb[qid].short or cb[qid].text)[:80]
