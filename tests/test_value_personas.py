"""Value personas and the comparison prompts (issue 18, items 1–3): what each prompt holds, that
the asked item's indicator is left out, descriptor files checked, and answers from the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from raysim.engine.base import ScoreResult
from raysim.methods.kinds.base import Setup
from raysim.methods.kinds.value_persona import GUIDANCE, load_descriptors, shipped_descriptors
from raysim.methods.simulator import Simulator
from raysim.methods.spec import MethodError, get_method, parse_method
from raysim.metrics.iw_map import MAP_ITEMS
from raysim.survey.codebook import load_codebook
from raysim.survey.synthetic import synth_frames

CB = load_codebook("wvs7")


class Recorder:
    """A stand-in engine: records the requests, answers uniformly."""
    name, fingerprint, n_layers, hidden_size = "recorder", "0", 2, 4

    def __init__(self):
        self.requests = []

    def score(self, requests, temperature=1.0):
        self.requests += requests
        return [ScoreResult(codes=tuple(o.code for o in r.options), probs=np.full(len(r.options), 1 / len(r.options)),
                            logliks=np.zeros(len(r.options))) for r in requests]


@pytest.fixture(scope="module")
def people():
    return next(iter(synth_frames(200, 5, codebook=CB))).head(3).reset_index(drop=True)


def systems(method: str, people, qids=("Q1", "Q164", "Q15")):
    engine = Recorder()
    sim = Simulator(get_method(method), engine, Setup(CB, tuple(qids)))
    sim.kind.answer(people.to_dict("records"))
    return {(r.qid, i // len(qids)): r.prefix[0]["content"] for i, r in enumerate(engine.requests)}


def test_the_shipped_descriptors_cover_every_option_of_the_value_items():
    descriptors = load_descriptors("shipped")
    for qid in MAP_ITEMS:
        assert set(descriptors[qid]) >= set(CB[qid].codes), qid
        assert all(t.startswith("You") for t in descriptors[qid].values())


def test_a_value_persona_holds_the_country_and_one_descriptor_per_answer_but_not_the_asked_indicator(people):
    descriptors = load_descriptors("shipped")
    prompts = systems("value_persona", people)
    row = people.iloc[0]
    full = prompts[("Q1", 0)]
    assert full.startswith(GUIDANCE["social_science"])
    assert "You live in " in full
    for qid in MAP_ITEMS:
        answer = row[qid]
        if not pd.isna(answer) and int(answer) in descriptors[qid]:
            assert descriptors[qid][int(answer)] in full, qid
    asked_god = prompts[("Q164", 0)]
    assert descriptors["Q164"][int(row["Q164"])] not in asked_god
    asked_faith = prompts[("Q15", 0)]   # Q15 is one of the autonomy index's four child qualities
    for qid in ("Q8", "Q14", "Q15", "Q17"):
        assert descriptors[qid][int(row[qid])] not in asked_faith
    assert descriptors["Q184"][int(row["Q184"])] in asked_faith
    assert prompts[("Q1", 0)] != prompts[("Q1", 1)]       # another respondent, another persona


def test_the_comparison_prompts(people):
    generic = systems("vp_generic_roleplay", people)
    assert len(set(generic.values())) == 1 and "You live in" not in next(iter(generic.values()))
    country = systems("vp_country_roleplay", people)
    assert all("typical person living in" in s for s in country.values())
    raw = systems("vp_few_shot_raw", people)[("Q1", 0)]
    assert "Q: How important is God in your life?" in raw and "\nA: " in raw
    socio = systems("vp_sociodemographic", people)[("Q1", 0)]
    assert socio.startswith(GUIDANCE["social_science"]) and "You live in" not in socio.split("\n\n")[0]


def test_descriptor_files_are_checked(tmp_path):
    doc = yaml.safe_load(shipped_descriptors().read_text())
    del doc["items"]["Q57"]
    bad = tmp_path / "d.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(MethodError, match=r"no descriptors for item\(s\) \['Q57'\]"):
        parse_method({"name": "x", "kind": "value_persona", "descriptors": str(bad)}, "x.yaml")
    with pytest.raises(MethodError, match="prompt 'free' is not one of"):
        parse_method({"name": "x", "kind": "value_persona", "prompt": "free"}, "x.yaml")
    with pytest.raises(MethodError, match="written in English"):
        parse_method({"name": "x", "kind": "value_persona", "language": "es"}, "x.yaml")


@pytest.mark.usefixtures("one_thread")
def test_value_personas_answer_on_the_embedded_model(people):
    from raysim.engine.hf import HFEngine
    from raysim.engine.loading import ModelSpec, load_model

    sim = Simulator(get_method("value_persona"), HFEngine(load_model(ModelSpec())), Setup(CB, ("Q1", "Q164")))
    rows = sim(people, "run", "hash")
    assert len(rows) == 6
    for p in rows["probs"]:
        assert abs(sum(p) - 1) < 1e-5 and min(p) >= 0


# ---- raysim personas descriptors ----------------------------------------------------------------

class Writer:
    """A stand-in generator: garbage on the first attempt for Q164, a valid JSON object otherwise;
    Q57 option 2 never valid (it falls back to the shipped descriptor)."""
    name = "writer"

    def __init__(self):
        self.calls = 0

    def generate(self, requests, sampling):
        from raysim.engine.base import GenerationResult

        self.calls += 1
        out = []
        for r in requests:
            text = r.question[-1]["content"] if isinstance(r.question, tuple) else r.question
            answer = text.split("The person's answer: ")[1].split("\n")[0]
            if (r.qid == "Q164" and self.calls == 1) or (r.qid == "Q57" and answer.startswith("Need")):
                reply = "Sure! Here it is: You are a person."      # no JSON object
            else:
                reply = f'Here: {{"descriptor": "You answered {answer} when asked, which is what you think."}} ok'
            out.append(GenerationResult(text=reply, code=None, valid=False, n_tokens=10))
        return out


def test_generated_descriptors_are_parsed_checked_retried_and_written(tmp_path):
    from raysim.methods.descriptors_gen import (DescriptorError, generate_descriptors, parse_descriptor,
                                                write_descriptors)

    assert parse_descriptor('{"descriptor": "You go to church every week, which says little else."}')
    assert parse_descriptor('{"descriptor": "They go to church."}') is None            # not second person
    assert parse_descriptor('{"descriptor": "You go. You stay home and read."}') is None   # two sentences
    assert parse_descriptor("You go to church") is None                                 # no JSON
    made = generate_descriptors(Writer(), CB, "no_hedge", max_retries=2)
    assert made.fallback == ["Q57:2"]
    assert made.descriptors["Q164"][10] == "You answered Very important when asked, which is what you think."
    path = write_descriptors(made, CB, tmp_path / "d.yaml", variant="no_hedge", generator="writer")
    loaded = load_descriptors(str(path))
    assert loaded["Q57"][2] == load_descriptors("shipped")["Q57"][2]
    assert loaded["Q8"][1].startswith("You answered Important")
    with pytest.raises(DescriptorError, match="Q57 option 2: no valid descriptor after 3 attempts"):
        generate_descriptors(Writer(), CB, "no_hedge", max_retries=2, strict=True)
