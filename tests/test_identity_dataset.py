"""Demographic datasets: the packaged default, the schema, hashing, files, and the generator
(scripted fake engine for retries and errors; one small real run on the embedded default)."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from raysim.engine.base import GenerationResult
from raysim.identity.dataset import (ATTRIBUTES, MIN_INSTRUCTIONS, MIN_QUESTIONS, AttributeSet,
                                     DatasetError, DemographicDataset, dataset_hash, load_dataset,
                                     pairs, save_dataset, to_yaml, validate)
from raysim.identity.dataset_gen import GenerationError, generate_dataset, main_dataset, parse_list
from raysim.survey.codebook import load_codebook

CODEBOOK = load_codebook("wvs7")


@pytest.fixture(scope="module")
def default():
    return load_dataset()


def _with(ds: DemographicDataset, attribute: str, **changes) -> DemographicDataset:
    attrs = dict(ds.attributes)
    attrs[attribute] = dataclasses.replace(attrs[attribute], **changes)
    return DemographicDataset(attrs, ds.version)


def _small(n_questions=2, n_instructions=1) -> DemographicDataset:
    """A valid one-attribute dataset (Q285: values 1 Yes, 2 No)."""
    questions = tuple(f"How do you handle money matter number {i}?" for i in range(n_questions))
    instructions = {1: [f"You earn most of the income ({i})." for i in range(n_instructions)],
                    2: [f"Someone else earns most of the income ({i})." for i in range(n_instructions)]}
    return DemographicDataset({"Q285": AttributeSet("Q285", questions, instructions)}, "test")


SMALL = dict(attributes=["Q285"], min_questions=2, min_instructions=1)
REAL_SEED = 7
"""A seed for which the embedded model's run below finishes in few rounds (it is deterministic)."""


# --------------------------------------------------------------------------- the packaged default


def test_default_covers_every_attribute_and_value(default):
    assert list(default.attributes) == list(ATTRIBUTES)
    n_values = 0
    for attr in ATTRIBUTES:
        aset = default[attr]
        assert aset.codes == CODEBOOK[attr].codes, attr
        assert len(aset.questions) >= MIN_QUESTIONS, attr
        assert all(len(t) >= MIN_INSTRUCTIONS for t in aset.instructions.values()), attr
        n_values += len(aset.codes)
    assert n_values == 76
    # Questions are open questions; instructions short (one or two sentences).
    for aset in default.attributes.values():
        assert all(q.endswith("?") for q in aset.questions)
        for texts in aset.instructions.values():
            assert all(len(re.findall(r"[.?!](\s|$)", t)) <= 2 for t in texts), texts


def test_default_keeps_the_exact_size_it_was_written_for(default):
    # The build cost scales with these counts: growing them should be a deliberate change.
    assert {len(a.questions) for a in default.attributes.values()} == {MIN_QUESTIONS}
    assert {len(t) for a in default.attributes.values() for t in a.instructions.values()} == {MIN_INSTRUCTIONS}


def test_default_instructions_differ_across_values_mainly_in_the_value(default):
    # Framing k of every value shares its wording outside the value (a common prefix and
    # suffix), and the framings of one value differ.
    for attr, aset in default.attributes.items():
        for texts in zip(*aset.instructions.values()):
            prefix = os.path.commonprefix(list(texts))
            suffix = os.path.commonprefix([t[::-1] for t in texts])
            assert len(prefix) + len(suffix) >= 0.4 * min(map(len, texts)), (attr, texts)
        for texts in aset.instructions.values():
            assert len({t.split()[0] for t in texts}) == len(texts), (attr, texts)


def test_pairs_iterate_values_then_instructions_then_questions(default):
    got = list(pairs(default, "Q286"))
    aset = default["Q286"]
    assert len(got) == 4 * MIN_INSTRUCTIONS * MIN_QUESTIONS
    assert got[0] == (1, aset.instructions[1][0], aset.questions[0])
    assert got[1] == (1, aset.instructions[1][0], aset.questions[1])
    assert got[MIN_QUESTIONS] == (1, aset.instructions[1][1], aset.questions[0])
    assert [c for c, _, _ in got] == sorted(c for c, _, _ in got)
    with pytest.raises(KeyError, match="Q1"):
        list(pairs(default, "Q1"))


# --------------------------------------------------------------------------- hashing


def test_hash_is_stable_across_processes_and_input_order(default):
    h = dataset_hash(default)
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    reordered = DemographicDataset(dict(reversed(list(default.attributes.items()))), default.version)
    assert dataset_hash(reordered) == h
    code = "from raysim.identity.dataset import load_dataset, dataset_hash; print(dataset_hash(load_dataset()))"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == h


def test_hash_changes_when_a_question_changes(default):
    questions = list(default["Q260"].questions)
    questions[3] = questions[3].replace("sick", "poorly")
    assert dataset_hash(_with(default, "Q260", questions=tuple(questions))) != dataset_hash(default)
    swapped = tuple(reversed(default["Q260"].questions))
    assert dataset_hash(_with(default, "Q260", questions=swapped)) != dataset_hash(default)


# --------------------------------------------------------------------------- schema errors


def test_missing_value_is_named(default):
    instructions = {c: t for c, t in default["Q286"].instructions.items() if c != 4}
    with pytest.raises(DatasetError, match=r"Q286: value 4 \(Spent savings and borrowed money\) has no instructions"):
        validate(_with(default, "Q286", instructions=instructions))


def test_unknown_code_is_named(default):
    instructions = dict(default["Q281"].instructions)
    instructions[11] = ("You work in some other occupation.",) * 1
    with pytest.raises(DatasetError, match=r"Q281: value 11 is not a substantive option"):
        validate(_with(default, "Q281", instructions=instructions))


def test_too_few_questions_and_instructions_are_named(default):
    with pytest.raises(DatasetError, match=r"Q273: 11 questions, at least 12 needed"):
        validate(_with(default, "Q273", questions=default["Q273"].questions[:11]))
    instructions = dict(default["Q260"].instructions)
    instructions[2] = instructions[2][:2]
    with pytest.raises(DatasetError, match=r"Q260: value 2 \(Female\) has 2 instructions, at least 3"):
        validate(_with(default, "Q260", instructions=instructions))


def test_duplicates_and_empty_texts_are_named(default):
    questions = list(default["Q289"].questions)
    questions[5] = "  " + questions[0].upper() + " "
    with pytest.raises(DatasetError, match=r"Q289.questions\[5\]: duplicate"):
        validate(_with(default, "Q289", questions=tuple(questions)))
    instructions = dict(default["Q263"].instructions)
    instructions[2] = (instructions[1][0],) + instructions[2][1:]
    with pytest.raises(DatasetError, match=r"Q263: instruction under values 1 and 2"):
        validate(_with(default, "Q263", instructions=instructions))
    questions[5] = "   "
    with pytest.raises(DatasetError, match=r"Q289.questions\[5\]: empty text"):
        validate(_with(default, "Q289", questions=tuple(questions)))


def test_unknown_and_missing_attributes_are_named(default):
    attrs = dict(default.attributes)
    attrs["Q262"] = dataclasses.replace(attrs.pop("Q288"), attribute="Q262")
    with pytest.raises(DatasetError) as err:
        validate(DemographicDataset(attrs, "1"))
    assert "Q288: missing" in str(err.value)
    assert "Q262: unknown attribute" in str(err.value)


def test_bad_files_are_rejected_with_the_file_named(tmp_path):
    cases = {
        "list.yaml": "- just a list\n",
        "nokeys.yaml": "version: 1\n",
        "badcode.yaml": "version: 1\nattributes:\n  Q285:\n    questions: [a]\n    instructions:\n      yes: [b]\n",
        "notext.yaml": "version: 1\nattributes:\n  Q285:\n    questions: [3]\n    instructions: {1: [b]}\n",
        "syntax.yaml": "version: [1\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(DatasetError, match=re.escape(str(path))):
            load_dataset(path)
    with pytest.raises(DatasetError, match="no dataset file"):
        load_dataset(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- files


def test_save_load_round_trip(default, tmp_path):
    path = save_dataset(default, tmp_path / "sub" / "ds.yaml", header="a header\nsecond line")
    text = path.read_text()
    assert text.startswith("# a header\n# second line\n")
    assert "# Spent savings and borrowed money" in text   # values annotated with their labels
    again = load_dataset(path)
    assert again == default
    assert dataset_hash(again) == dataset_hash(default)
    assert to_yaml(again) == to_yaml(default)
    small = _small()
    assert load_dataset(save_dataset(small, tmp_path / "small.yaml", **SMALL), **SMALL) == small


def test_invalid_dataset_leaves_existing_file_untouched(default, tmp_path):
    path = save_dataset(default, tmp_path / "ds.yaml")
    before = path.read_bytes()
    broken = _with(default, "Q285", questions=default["Q285"].questions[:3])
    with pytest.raises(DatasetError, match="Q285: 3 questions"):
        save_dataset(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds.yaml"]


# --------------------------------------------------------------------------- generator (fake engine)


class ScriptedEngine:
    """`LM.generate` stand-in: ``reply(request, k)`` writes each reply; requests are recorded."""

    def __init__(self, reply):
        self.reply = reply
        self.calls = []

    def generate(self, requests, sampling):
        self.calls.append((list(requests), sampling))
        out = []
        for req in requests:
            k = int(re.search(r"Write (\d+)", req.question[-1]["content"]).group(1))
            text = self.reply(req, k)
            out.append(GenerationResult(text, None, False, len(text.split())))
        return out


def _valid_items(req, k):
    kind = "question" if "open questions" in req.question[-1]["content"] else "instruction"
    end = "?" if kind == "question" else "."
    return [f"Generated {kind} {req.qid} number {i}{end}" for i in range(k)]


def test_parse_list_reads_json_only_and_keeps_complete_elements_of_a_cut_list():
    assert parse_list('Sure! ```json\n["a b", "c d"]\n``` Hope it helps') == ["a b", "c d"]
    assert parse_list('["first one", "second one", "third is cut off') == ["first one", "second one"]
    assert parse_list('["one", 2, {"x": 1}]') == ["one", 2, {"x": 1}]
    assert parse_list("no list here") is None
    assert parse_list("[1] What is this?") == [1]
    assert parse_list("[__import__('os').system('true')]") is None


def test_generator_retries_malformed_replies_then_succeeds():
    seen = {}

    def reply(req, k):
        job = req.qid.rsplit("/", 1)[0]
        seen[job] = seen.get(job, 0) + 1
        if seen[job] == 1:
            return "Here are some questions: 1. How? 2. Why?"         # not JSON: retried
        if seen[job] == 2 and job == "Q285/q":
            return json.dumps(_valid_items(req, k)[:3])                 # short: kept, rest asked again
        return json.dumps(_valid_items(req, k) + ["An extra valid item that is dropped?"])

    engine = ScriptedEngine(reply)
    ds = generate_dataset(engine, CODEBOOK, n_questions=12, n_instructions=2, seed=7, attributes=["Q285"])
    aset = ds["Q285"]
    assert len(aset.questions) == 12 and len(set(aset.questions)) == 12
    assert {c: len(t) for c, t in aset.instructions.items()} == {1: 2, 2: 2}
    assert not any("extra" in q for q in aset.questions)
    # Questions: malformed, then 3 of 10 kept, then 9 asked (10 given, the extra dropped):
    # 3 requests, each with a new seed.
    q_requests = [r for reqs, _ in engine.calls for r in reqs if r.qid.startswith("Q285/q")]
    assert len(q_requests) == 3
    assert len({r.seed for r in q_requests}) == 3
    assert "Write 10 open questions" in q_requests[0].question[-1]["content"]
    assert "Write 9 open questions" in q_requests[2].question[-1]["content"]
    assert "Do not repeat" in q_requests[2].question[-1]["content"]
    # The instruction request names the value's label and the survey item.
    i_request = next(r for reqs, _ in engine.calls for r in reqs if r.qid.startswith("Q285/2"))
    assert 'is: No.' in i_request.question[-1]["content"]
    assert CODEBOOK["Q285"].text in i_request.question[-1]["content"]
    # A JSON list of 10 sentences fits in the token budget.
    assert engine.calls[0][1].max_new_tokens >= 10 * 48
    # Deterministic given the seed.
    seen.clear()
    again = ScriptedEngine(reply)
    assert generate_dataset(again, CODEBOOK, n_questions=12, n_instructions=2, seed=7, attributes=["Q285"]) == ds
    assert [r.seed for reqs, _ in again.calls for r in reqs] == [r.seed for reqs, _ in engine.calls for r in reqs]


def test_generator_rejects_invalid_items_and_cross_value_duplicates():
    def reply(req, k):
        content = req.question[-1]["content"]
        if "open questions" in content:
            return json.dumps(["Not a question.", "", "x?", CODEBOOK["Q285"].text, 5,
                               "How do you usually spend your weekends?"] + _valid_items(req, k))
        return json.dumps(["You are the same persona for every value."] + _valid_items(req, k))

    ds = generate_dataset(ScriptedEngine(reply), CODEBOOK, n_questions=3, n_instructions=2,
                          attributes=["Q285"])
    assert all(q.startswith("Generated question") for q in ds["Q285"].questions)
    shared = [t for texts in ds["Q285"].instructions.values() for t in texts if "same persona" in t]
    assert len(shared) == 1   # kept for the first value only


def test_generator_raises_naming_the_value_and_last_reply_after_max_retries():
    def reply(req, k):
        if req.qid.startswith("Q285/2/"):
            return f"I cannot do that ({req.qid})"
        return json.dumps(_valid_items(req, k))

    engine = ScriptedEngine(reply)
    with pytest.raises(GenerationError, match=r"Q285 value 2 \(No\) instructions.*after 3 attempts.*Q285/2/2"):
        generate_dataset(engine, CODEBOOK, n_questions=2, n_instructions=1, max_retries=2, attributes=["Q285"])
    assert sum(r.qid.startswith("Q285/2/") for reqs, _ in engine.calls for r in reqs) == 3


def test_generator_rejects_unknown_attributes():
    with pytest.raises(ValueError, match="Q1"):
        generate_dataset(ScriptedEngine(None), CODEBOOK, attributes=["Q1"])


# --------------------------------------------------------------------------- generator (real model)


def test_real_generation_on_the_embedded_default(tmp_path):
    """The whole path on SmolLM2-135M-Instruct: prompts, JSON replies, validation, the file.

    The 135M model follows the format only part of the time (retries happen) and its texts are
    poor; this proves the path works, not that a 135M model writes a good dataset."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "gen.yaml"
        ds = main_dataset("embedded", out, n_questions=2, n_instructions=1, seed=REAL_SEED,
                          attributes=["Q285"], device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert load_dataset(out, **SMALL) == ds
    assert ds.version == "generated:SmolLM2-135M-Instruct:seed%d" % REAL_SEED
    assert out.read_text().startswith("# Demographic dataset generated by raysim with SmolLM2-135M-Instruct")
    aset = ds["Q285"]
    assert len(aset.questions) == 2 and all(q.endswith("?") for q in aset.questions)
    assert set(aset.instructions) == {1, 2}
    assert aset.instructions[1] != aset.instructions[2]

