"""Batteries found in the codebook, and the question turns built from them."""

from raysim.methods.prompts import answer_options, persona_prefix, question_turn
from raysim.survey.batteries import battery_items
from raysim.survey.codebook import load_codebook, parse_codebook


def test_wvs7_batteries_split_whole_sentences():
    cb = load_codebook("wvs7")
    b = battery_items(cb)
    assert b["Q1"].subitem == "Family" and b["Q2"].stem == b["Q1"].stem
    assert b["Q1"].stem.endswith("?")
    assert len({b[f"Q{n}"].stem for n in range(64, 90)}) == 1       # the confidence battery
    assert "Q57" not in b and "Q56" not in b                         # stand-alone questions
    for qid, item in b.items():
        assert cb[qid].text.startswith(item.stem) and item.subitem
        assert cb[qid].text.endswith(item.subitem)


def test_battery_needs_same_options_and_a_sentence_boundary():
    stem = "Please tell me how much you trust people from various groups and whether you would say "
    cb = parse_codebook({"sections": {"S": ["Q1", "Q9"]}, "categories": {"C": {"t": ["Q1", "Q9"]}},
                         "items": [
        {"id": "Q1", "text": "How much do you trust each of the following groups of people? Your family",
         "kind": "ordinal", "options": [[1, "A lot"], [2, "Not at all"]]},
        {"id": "Q2", "text": "How much do you trust each of the following groups of people? Neighbours",
         "kind": "ordinal", "options": [[1, "A lot"], [2, "Not at all"]]},
        {"id": "Q3", "text": "How much do you trust each of the following groups of people? Strangers",
         "kind": "ordinal", "options": [[1, "Yes"], [2, "No"]]},            # other options: not in it
        {"id": "Q4", "text": stem + "you trust them completely", "kind": "nominal",
         "options": [[1, "Yes"], [2, "No"]]},
        {"id": "Q5", "text": stem + "you trust them somewhat", "kind": "nominal",
         "options": [[1, "Yes"], [2, "No"]]},                               # no boundary in common part
    ]}, "t")
    b = battery_items(cb)
    assert set(b) == {"Q1", "Q2"}
    assert b["Q2"].subitem == "Neighbours"


def test_question_turn_layouts():
    cb = load_codebook("wvs7")
    b = battery_items(cb)
    alone = question_turn(cb["Q57"])
    assert alone.startswith(cb["Q57"].text) and "1. Most people can be trusted" in alone
    grid = question_turn(cb["Q1"], b["Q1"])
    assert grid.startswith(b["Q1"].stem) and grid.endswith("\n\nFamily")
    assert grid.index("1. Very important") < grid.index("Family")
    # battery items begin identically, so the engine's trie shares that opening
    assert question_turn(cb["Q2"], b["Q2"]).startswith(grid[: -len("Family")])
    scale = question_turn(cb["Q106"])
    assert "\n2\n3\n" in scale and "10. There should be greater incentives" in scale
    assert [o.text for o in answer_options(cb["Q106"])] == [str(c) for c in range(1, 11)]
    assert "You are a woman." in persona_prefix("You are a woman.")[0]["content"]
