"""Profile text: one grammatical second-person sentence per present demographic item."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import Codebook, Item, load_codebook, parse_codebook
from raysim.survey.countries import country_name
from raysim.survey.profile import render_profile
from raysim.survey.profile_templates import ProfileTemplateError, load_templates, parse_templates

# The WVS-7 demographic items and codes the full codebook uses (master questionnaire).
WVS_DEMOGRAPHICS: dict[str, dict] = {
    "H_SETTLEMENT": {"options": ["Capital city", "Regional center", "District center",
                                 "Another city, town", "Village"]},
    "H_URBRURAL": {"options": ["Urban", "Rural"]},
    "Q260": {"options": ["Male", "Female"]},
    "Q262": {"kind": "numeric", "range": [15, 103]},
    "Q263": {"options": ["Born in this country", "Immigrant"]},
    "Q269": {"options": ["Citizen", "Not a citizen"]},
    "Q270": {"kind": "numeric", "range": [1, 63]},
    "Q271": {"options": ["No", "Yes, own parent(s)", "Yes, parent(s) in law",
                         "Yes, both own parent(s) and parent(s) in law"]},
    "Q272": {"kind": "coded"},
    "Q273": {"options": ["Married", "Living together as married", "Divorced", "Separated",
                         "Widowed", "Single"]},
    "Q274": {"kind": "numeric", "range": [0, 24]},
    "Q275": {"options": ["Early childhood education / no education", "Primary", "Lower secondary",
                         "Upper secondary", "Post-secondary non-tertiary", "Short-cycle tertiary",
                         "Bachelor or equivalent", "Master or equivalent", "Doctoral or equivalent"],
             "first": 0},
    "Q279": {"options": ["Full time employee", "Part time employee", "Self employed",
                         "Retired/pensioned", "Housewife not otherwise employed", "Student",
                         "Unemployed", "Other"]},
    "Q281": {"options": ["Never had a job", "Professional and technical", "Higher administrative",
                         "Clerical", "Sales", "Service", "Skilled worker", "Semi-skilled worker",
                         "Unskilled worker", "Farm worker", "Farm owner, farm manager"], "first": 0},
    "Q284": {"options": ["Government or public institution", "Private business or industry",
                         "Private non-profit organization"]},
    "Q285": {"options": ["Yes", "No"]},
    "Q286": {"options": ["Saved money", "Just got by", "Spent some savings and borrowed money",
                         "Spent savings and borrowed money"]},
    "Q287": {"options": ["Upper class", "Upper middle class", "Lower middle class",
                         "Working class", "Lower class"]},
    "Q288": {"options": [f"Step {i}" for i in range(1, 11)], "kind": "ordinal"},
    "Q289": {"options": ["Do not belong to a denomination", "Roman Catholic", "Protestant",
                         "Orthodox", "Jew", "Muslim", "Hindu", "Buddhist", "Other Christian",
                         "Other"], "first": 0},
    "Q290": {"kind": "coded"},
}


def _wvs_codebook(overrides: dict[str, dict] | None = None) -> Codebook:
    items = []
    for qid, spec in {**WVS_DEMOGRAPHICS, **(overrides or {})}.items():
        raw = {"id": qid, "opinion": False, "section": "Demographics", "text": qid,
               "kind": spec.get("kind", "nominal")}
        if "options" in spec:
            raw["options"] = [[spec.get("first", 1) + i, lab] for i, lab in enumerate(spec["options"])]
        if "range" in spec:
            raw["range"] = spec["range"]
        items.append(raw)
    return parse_codebook({"title": "WVS-7 demographics", "items": items, "profile": "wvs"}, "wvs_demo")


WVS = _wvs_codebook()
TEMPLATES = load_templates("en")


def sentences(text: str) -> list[str]:
    return re.split(r"(?<=\.) (?=[A-Z])", text) if text else []


def assert_grammatical(text: str) -> None:
    assert text == text.strip() and "  " not in text
    assert not re.search(r"[{}]|\bNone\b|\bnan\b|<NA>", text), text
    for s in sentences(text):
        assert s[0].isupper() and s.endswith(".") and s.count(".") == 1, s


def sample_values(item: Item) -> list[int]:
    """Every valid code of a categorical item; the ends and a few inner values of a numeric one."""
    if item.kind == "numeric":
        lo, hi = item.range
        return sorted({lo, lo + 1, lo + 2, (lo + hi) // 2, hi})
    if item.kind == "coded":
        return [1, 2, 57]
    return [c for c, _ in item.options] + [c for c, _ in item.extra_codes]


def check_every_code_renders(codebook: Codebook) -> int:
    """Render each templated item's every code alone; returns how many items were checked."""
    checked = 0
    for qid in codebook.demographic_ids:
        if qid not in TEMPLATES.items:
            continue
        item = codebook[qid]
        labels = {qid: {c: f"Label {c}" for c in sample_values(item)}}
        seen = set()
        for code in sample_values(item):
            text = render_profile({qid: code}, codebook, value_labels=labels)
            assert_grammatical(text)
            assert len(sentences(text)) == 1, (qid, code, text)
            seen.add(text)
        assert len(seen) == len(sample_values(item)), f"{qid}: two codes render the same sentence"
        checked += 1
    return checked


def test_every_code_of_the_wvs_demographics_renders():
    assert check_every_code_renders(WVS) == len(WVS_DEMOGRAPHICS)


def test_every_code_of_the_shipped_wvs7_codebook_renders():
    cb = load_codebook("wvs7")
    assert check_every_code_renders(cb) == len([q for q in cb.demographic_ids if q in TEMPLATES.items])
    assert "Q260" in cb and "Q260" in TEMPLATES.items  # the check above is not vacuous


def test_every_code_of_the_cardata_codebook_renders():
    assert check_every_code_renders(load_codebook("cardata")) == 4


def test_every_template_key_is_an_item_of_a_shipped_codebook():
    shipped = set(load_codebook("wvs7").items) | set(load_codebook("cardata").items)
    assert sorted(set(TEMPLATES.items) - shipped) == []


def test_full_profile_has_one_sentence_per_present_item_plus_country():
    row = {"country": "USA", "H_SETTLEMENT": 4, "H_URBRURAL": 1, "Q260": 2, "Q262": 47, "Q263": 1,
           "Q269": 1, "Q270": 4, "Q271": 1, "Q272": 5, "Q273": 1, "Q274": 2, "Q275": 6, "Q279": 1,
           "Q281": 1, "Q284": 2, "Q285": 1, "Q286": 1, "Q287": 2, "Q288": 7, "Q289": 2, "Q290": 9}
    text = render_profile(row, WVS, value_labels={"Q290": {9: "White"}, "Q272": {5: "English"}})
    assert_grammatical(text)
    assert len(sentences(text)) == len(row)
    assert sentences(text)[0] == "You are a woman."
    assert f"You live in {country_name('USA')}." in text
    assert "You were born in the United States." in text
    assert "You are Protestant." in text
    assert "Your ethnic group is White." in text and "English" in text


@pytest.mark.parametrize("qid, value, expected", [
    ("Q274", 0, "You have no children."),
    ("Q274", 1, "You have 1 child."),
    ("Q274", 3, "You have 3 children."),
    ("Q270", 1, "You live alone."),
    ("Q270", 2, "You live with one other person."),
    ("Q270", 5, "There are 5 people in your household, including you."),
    ("Q262", 33, "You are 33 years old."),
])
def test_counts_are_pluralised(qid, value, expected):
    assert render_profile({qid: value}, WVS) == expected


@pytest.mark.parametrize("missing", [None, pd.NA, float("nan"), -1, -2, -5])
def test_missing_items_are_omitted(missing):
    row = {"country": "AUS", "Q260": 1, "Q262": 30, "Q273": missing, "Q289": missing, "Q274": 0}
    text = render_profile(row, WVS)
    assert_grammatical(text)
    assert len(sentences(text)) == 4
    assert "married" not in text.lower() and "denomination" not in text


def test_absent_country_uses_a_neutral_phrase():
    text = render_profile({"Q263": 2, "Q269": 2}, WVS)
    assert_grammatical(text)
    assert len(sentences(text)) == 2
    assert not any(s.startswith("You live in") for s in sentences(text))


def test_coded_items_need_a_label_for_their_code():
    assert render_profile({"Q290": 4}, WVS) == ""
    assert render_profile({"Q290": 4}, WVS, value_labels={"Q290": {5: "Maori"}}) == ""
    assert render_profile({"Q290": 4}, WVS, value_labels={"Q290": {4: "Maori"}}) == \
        "Your ethnic group is Maori."


@pytest.mark.parametrize("codebook, row, needle", [
    ("cardata", {"Q260": 3}, "item Q260: code 3"),
    ("cardata", {"RELIGION": 0}, "item RELIGION: code 0"),
    ("cardata", {"Q262": 7}, "item Q262: code 7"),
    ("wvs", {"Q289": 10}, "item Q289: code 10"),
])
def test_unknown_codes_are_errors(codebook, row, needle):
    cb = WVS if codebook == "wvs" else load_codebook(codebook)
    with pytest.raises(ValueError, match=needle):
        render_profile(row, cb)


def test_a_code_the_codebook_knows_but_the_templates_do_not_is_an_error():
    cb = parse_codebook({"profile": "wvs", "items": [{"id": "Q289", "opinion": False, "section": "Demographics",
                                    "text": "Religious denomination", "kind": "nominal",
                                    "options": [[0, "None"], [10, "Jedi"]]}]}, "odd")
    assert render_profile({"Q289": 0}, cb)
    with pytest.raises(ValueError, match=r"item Q289: code 10 has no profile phrase"):
        render_profile({"Q289": 10}, cb)


@pytest.mark.parametrize("value", [2.5, "2", True])
def test_non_integer_values_are_errors(value):
    with pytest.raises(ValueError, match="item Q260: value"):
        render_profile({"Q260": value}, WVS)


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="no profile templates for language 'xx'"):
        render_profile({"Q260": 1}, WVS, language="xx")


def test_cardata_profiles_tell_different_respondents_apart():
    df = load_cardata()
    demo = ["country", "Q260", "Q262", "RELIGION", "DEGREE"]
    distinct = df.drop_duplicates(demo)
    texts = [render_profile(row, load_codebook("cardata")) for _, row in distinct.iterrows()]
    for t in texts[:50]:
        assert_grammatical(t)
        assert len(sentences(t)) == 5
    assert len(set(texts)) == len(distinct)


def test_population_rows_with_nulls_render():
    df = load_cardata()
    df["DEGREE"] = df["DEGREE"].astype("Int32")
    df.loc[df["country"] == "USA", "DEGREE"] = pd.NA
    usa = df[df["country"] == "USA"].iloc[0]
    text = render_profile(usa, load_codebook("cardata"))
    assert_grammatical(text)
    assert len(sentences(text)) == 4 and "degree" not in text


def _doc(**changes) -> dict:
    doc = {"language": "t", "country": "You live in {country}.", "country_fallback": "your country",
           "order": ["Q1", "country"], "items": {"Q1": {"codes": {1: "You are one."}}}}
    doc.update(changes)
    return doc


@pytest.mark.parametrize("changes, needle", [
    ({"items": {"Q1": {"codes": {1: "You are {age}."}}}}, r"unknown placeholder\(s\) \['age'\]"),
    ({"items": {"Q1": {"codes": {1: "You are one"}}}}, "must end with a period"),
    ({"items": {"Q1": {"number": {0: "You have none."}}}}, "needs an 'other' template"),
    ({"items": {"Q1": {"codes": {"one": "You are one."}}}}, "keys must be integer codes"),
    ({"items": {"Q1": {"codes": {1: "A."}, "label": "B {label}."}}}, "exactly one of"),
    ({"order": ["country"]}, r"missing \['Q1'\]"),
])
def test_malformed_templates_are_rejected(changes, needle):
    assert parse_templates(_doc(), "t").items["Q1"].codes == {1: "You are one."}
    with pytest.raises(ProfileTemplateError, match=needle):
        parse_templates(_doc(**changes), "t")
