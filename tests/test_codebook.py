"""The shipped WVS-7 codebook (package data) and the codebook parser's validation."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

from raysim.survey.codebook import MISSING_CODES, CodebookError, load_codebook, parse_codebook

QUESTION_IDS = [f"Q{i}" for i in range(1, 291)] + ["Q234A"]
OPINION_IDS = [f"Q{i}" for i in range(1, 260)] + ["Q234A"]

# docs/design.md "Data contracts": category -> topic -> inclusive question range.
DESIGN_CATEGORIES = {
    "Personal Beliefs & Life Outlook": {
        "happiness and well-being": (46, 56), "postmaterialist index": (152, 157),
        "religious values": (164, 175), "ethical values and norms": (176, 198)},
    "Social Integration & Perception": {
        "social values": (1, 45), "social capital and trust": (57, 105),
        "migration": (121, 130), "security": (131, 151)},
    "Political Engagement & Institutional Identity": {
        "corruption": (112, 120), "political interest and participation": (199, 234),
        "political culture and regimes": (235, 259)},
    "Economic Development & Progress": {
        "economic values": (106, 111), "science and technology": (158, 163)},
}


@pytest.fixture(scope="module")
def wvs7():
    return load_codebook("wvs7")


def test_every_question_is_shipped(wvs7):
    missing = [q for q in QUESTION_IDS if q not in wvs7]
    assert not missing, f"missing items: {missing}"
    assert {"H_SETTLEMENT", "H_URBRURAL"} <= set(wvs7.items)
    assert len(wvs7) == len(QUESTION_IDS) + 2


def test_opinion_items_have_category_topic_and_options(wvs7):
    assert sorted(wvs7.opinion_ids) == sorted(OPINION_IDS)
    for qid in OPINION_IDS:
        item = wvs7[qid]
        assert item.category and item.topic, qid
        if item.kind == "coded":
            continue  # Q223 (party): country-specific codes, no fixed option list
        assert len(item.options) >= 2, qid
    coded = [q for q in OPINION_IDS if wvs7[q].kind == "coded"]
    assert coded == ["Q223"]
    # The scorable opinion items are the 259 the PSII paper evaluates.
    assert len(OPINION_IDS) - len(coded) == 259


def test_categories_and_topics_follow_design(wvs7):
    assert set(wvs7.categories) == set(DESIGN_CATEGORIES)
    counts = defaultdict(int)
    topics = defaultdict(set)
    for qid in wvs7.opinion_ids:
        item = wvs7[qid]
        counts[item.topic] += 1
        topics[item.category].add(item.topic)
    for category, spec in DESIGN_CATEGORIES.items():
        assert topics[category] == set(spec), category
        for topic, (lo, hi) in spec.items():
            expected = hi - lo + 1 + (topic == "political interest and participation")  # Q234A
            assert counts[topic] == expected, topic
    assert wvs7["Q234A"].topic == "political interest and participation"


def test_demographics_are_not_opinions(wvs7):
    for qid in [f"Q{i}" for i in range(260, 291)] + ["H_SETTLEMENT", "H_URBRURAL"]:
        item = wvs7[qid]
        assert item.category is None and item.topic is None, qid
        assert item.section == "Demographics", qid
    assert {q for q in wvs7.items if wvs7[q].kind == "numeric"} == {"Q261", "Q262", "Q270", "Q274"}
    assert wvs7["Q262"].range == (15, 103) and wvs7["Q274"].range == (0, 24)
    assert {q for q in wvs7.demographic_ids if wvs7[q].kind == "coded"} == {"Q266", "Q267", "Q268", "Q272", "Q290"}
    # Codes the profile templates rely on.
    assert wvs7["Q289"].codes == tuple(range(10)) and wvs7["Q289"].labels[0].startswith("Do not belong")
    assert wvs7["Q275"].codes == tuple(range(9)) and wvs7["Q275"].ordinal
    assert wvs7["Q281"].codes == tuple(range(11))
    assert wvs7["Q279"].codes == tuple(range(1, 9))
    assert wvs7["Q271"].labels[4] == "Yes, both own parent(s) and parent(s) in law"


def test_no_missing_codes_are_options(wvs7):
    for item in wvs7:
        codes = set(item.codes) | {c for c, _ in item.extra_codes}
        assert not codes & set(MISSING_CODES), item.id
        labels = [label for _, label in item.options]
        assert all(label.strip() for label in labels), item.id
        assert len(set(labels)) == len(labels), f"{item.id}: duplicate option labels"


def test_data_file_codes_of_recoded_items(wvs7):
    # Membership: 0 don't belong / 1 inactive / 2 active; immigration effects: 0/1/2.
    for qid in [f"Q{i}" for i in range(94, 106)]:
        assert wvs7[qid].labels == {2: "Active member", 1: "Inactive member", 0: "Don't belong"}, qid
    assert wvs7["Q122"].labels[2] == "Agree" and wvs7["Q122"].labels[0] == "Disagree"
    assert wvs7["Q121"].labels[5] == "Very good" and wvs7["Q121"].labels[1] == "Very bad"
    for qid in ("Q7", "Q18"):
        assert wvs7[qid].codes == (1, 2), qid
    for qid in ("Q48", "Q106", "Q164", "Q182", "Q240", "Q250"):
        assert wvs7[qid].codes == tuple(range(1, 11)), qid


def test_q56_scale_order(wvs7):
    q56 = wvs7["Q56"]
    assert q56.codes == (1, 2, 3)
    assert q56.scale_positions() == {1: 0, 3: 1, 2: 2}
    assert wvs7["Q1"].scale_positions() == {1: 0, 2: 1, 3: 2, 4: 3}
    assert [q for q in wvs7.items if wvs7[q].scale] == ["Q56"]


@pytest.mark.parametrize("qid", ["Q119"] + [f"Q{i}" for i in range(241, 250)])
def test_zero_is_valid_but_not_substantive(wvs7, qid):
    item = wvs7[qid]
    assert item.valid_code(0)
    assert 0 not in item.codes
    assert 0 not in item.scale_positions()
    assert not item.valid_code(11)


def test_pairs_are_symmetric(wvs7):
    paired = {q: wvs7[q].pair for q in wvs7.items if wvs7[q].pair}
    assert paired == {"Q152": "Q153", "Q153": "Q152", "Q154": "Q155", "Q155": "Q154",
                      "Q156": "Q157", "Q157": "Q156"}
    for qid, other in paired.items():
        assert wvs7[other].pair == qid
        assert wvs7[other].options == wvs7[qid].options


def _battery(short: str) -> str:
    return short.split(":")[0] if ":" in short else short


def test_wording_is_self_contained_and_distinct(wvs7):
    texts = [item.text for item in wvs7]
    assert all(t.strip() for t in texts)
    batteries = defaultdict(list)
    for item in wvs7:
        assert item.short, item.id
        if item.is_opinion:
            batteries[(item.section, _battery(item.short))].append(item)
    multi = {k: v for k, v in batteries.items() if len(v) >= 3}
    assert len(multi) >= 20
    for key, members in multi.items():
        member_texts = [m.text for m in members]
        assert len(set(member_texts)) == len(member_texts), f"battery {key}: repeated wording"
        stem = os.path.commonprefix(member_texts)
        # Each battery item repeats the battery's stem before naming its sub-item.
        assert len(stem) >= 30, f"battery {key}: no shared stem in {[m.id for m in members]}"
    assert len(set(texts)) == len(texts), "two items share the same wording"


# --- parser validation -------------------------------------------------------

def _doc(*items):
    return {"sections": {"S": ["Q1", "Q9"]}, "categories": {"C": {"t": ["Q1", "Q9"]}}, "items": list(items)}


def _item(qid="Q1", **kw):
    d = {"id": qid, "text": "Some question?", "kind": "ordinal", "options": [[1, "A"], [2, "B"]]}
    d.update(kw)
    return d


def test_parser_accepts_a_well_formed_document():
    cb = parse_codebook(_doc(_item("Q1", pair="Q2"), _item("Q2", pair="Q1")), "toy")
    assert cb["Q1"].category == "C" and cb["Q2"].pair == "Q1"


@pytest.mark.parametrize("bad_items, message", [
    ([_item("Q3"), _item("Q3")], r"'Q3'.*duplicate id"),
    ([_item("Q4", kind="likert")], r"'Q4'.*kind 'likert'"),
    ([_item("Q5", scale=[1, 3])], r"'Q5'.*not a permutation"),
    ([_item("Q6", options=[["1", "A"], [2, "B"]])], r"'Q6' key 'options'.*not \[integer code, text label\]"),
    ([_item("Q6", options=[[1, 5.5], [2, "B"]])], r"'Q6' key 'options'.*not \[integer code, text label\]"),
    ([_item("Q6", options=[[1, None], [2, "B"]])], r"'Q6' key 'options'.*not \[integer code, text label\]"),
    ([_item("Q7", pair="Q99")], r"'Q7'.*pair 'Q99' is not an item"),
    ([_item("Q8", kind="nominal", options=[[1, "A"]])], r"'Q8'.*at least two options"),
])
def test_parser_rejects_malformed_documents(bad_items, message):
    with pytest.raises(CodebookError, match=message):
        parse_codebook(_doc(*bad_items), "toy")
