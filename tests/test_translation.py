"""The translation job: round-trip review, the per-language cache, fallback to English."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysim.commands import translate as translate_command
from raysim.engine.base import GenerationResult
from raysim.methods import translation as tr
from raysim.methods.translation import (LocalizedItem, TranslationCacheError, Translations, coverage, judge,
                                        round_trip_similarity, source_strings, translate_strings)
from raysim.survey.batteries import battery_items
from raysim.survey.codebook import load_codebook

pytestmark = pytest.mark.usefixtures("one_thread")

WVS7 = load_codebook("wvs7")
BATTERIES = battery_items(WVS7)


class ScriptedEngine:
    """Replies from tables (English source → translation, translation → back-translation) and
    counts its generate calls; anything unscripted is a test error."""

    def __init__(self, forward: dict[str, str], back: dict[str, str], name: str = "fake-model",
                 fail_after: int | None = None) -> None:
        self.forward, self.back = forward, back
        self.name = name
        self.calls = 0
        self.asked: list[str] = []
        self.fail_after = fail_after

    def encode(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def generate(self, requests, sampling):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("interrupted")
        self.calls += 1
        assert sampling.top_k == 1  # greedy: deterministic translations
        out = []
        for r in requests:
            text = r.question[-1]["content"]
            table = self.back if "into English" in r.prefix[0]["content"] else self.forward
            self.asked.append(text)
            out.append(GenerationResult(table[text], None, False, 1))
        return out


class CountingEngine:
    """A real engine whose generate calls are counted."""

    def __init__(self, engine) -> None:
        self.engine, self.name, self.calls = engine, engine.name, 0

    def encode(self, text: str) -> list[int]:
        return self.engine.encode(text)

    def generate(self, requests, sampling):
        self.calls += 1
        return self.engine.generate(requests, sampling)


GOOD_FWD = {"Family": "家庭", "Very important": "非常重要", "Work": "工作"}
GOOD_BACK = {"家庭": "Family", "非常重要": "Very important.", "工作": "Work"}


# --------------------------------------------------------------------------- the round trip and its cache


def test_translations_are_reviewed_cached_and_not_redone(tmp_path):
    engine = ScriptedEngine(GOOD_FWD, GOOD_BACK)
    report = translate_strings(engine, ["Family", "Very important", "Family"], "zh", tmp_path, batch_size=1,
                               max_new_tokens=8)
    assert (report.strings, report.translated, report.cached, report.accepted, report.rejected) == (2, 2, 0, 2, 0)
    assert engine.calls == 4  # per batch of one: forward, then back
    data = json.loads((tmp_path / "zh.json").read_text(encoding="utf-8"))
    assert data["model"] == "fake-model" and data["language"] == "zh"
    entry = data["entries"]["Very important"]
    assert entry == {"text": "非常重要", "back": "Very important.", "similarity": 1.0, "accepted": True,
                     "verdict": "accepted", "threshold": tr.DEFAULT_THRESHOLD, "model": "fake-model"}
    again = translate_strings(engine, ["Family", "Very important"], "zh", tmp_path)
    assert engine.calls == 4 and (again.translated, again.cached, again.accepted) == (0, 2, 2)
    t = Translations.load(tmp_path)
    assert t.string("Family", "zh") == "家庭" and t.string("Family", "en") == "Family"
    assert t.string("Family", "es") is None and t.string("Work", "zh") is None


def test_an_interrupted_job_resumes_where_it_stopped(tmp_path):
    # Two forward+back rounds succeed (two batches of one), the third call fails.
    broken = ScriptedEngine(GOOD_FWD, GOOD_BACK, fail_after=4)
    with pytest.raises(RuntimeError, match="interrupted"):
        translate_strings(broken, ["Family", "Work", "Very important"], "zh", tmp_path, batch_size=1)
    kept = json.loads((tmp_path / "zh.json").read_text(encoding="utf-8"))["entries"]
    assert len(kept) == 2
    engine = ScriptedEngine(GOOD_FWD, GOOD_BACK)
    report = translate_strings(engine, ["Family", "Work", "Very important"], "zh", tmp_path, batch_size=1)
    assert (report.translated, report.cached, report.accepted) == (1, 2, 3)
    missing = ({"Family", "Work", "Very important"} - set(kept)).pop()
    assert engine.asked == [missing, GOOD_FWD[missing]]


def test_a_cache_refuses_another_model(tmp_path):
    translate_strings(ScriptedEngine(GOOD_FWD, GOOD_BACK, name="model-a"), ["Family"], "zh", tmp_path)
    other = ScriptedEngine(GOOD_FWD, GOOD_BACK, name="model-b")
    with pytest.raises(TranslationCacheError, match="model-a.*model-b"):
        translate_strings(other, ["Work"], "zh", tmp_path)
    assert other.calls == 0
    # Another language is another file: no conflict.
    es = translate_strings(ScriptedEngine({"Work": "Trabajo"}, {"Trabajo": "Work"}, name="model-b"),
                           ["Work"], "es", tmp_path)
    assert es.accepted == 1 and Translations.load(tmp_path).models == {"zh": "model-a", "es": "model-b"}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not readable JSON"),
    (json.dumps({"format": 1, "language": "zh", "model": "m", "entries": []}), "'entries' must be an object"),
    (json.dumps({"format": 1, "language": "ru", "model": "m", "entries": {}}), "holds language 'ru'"),
    (json.dumps({"format": 1, "language": "zh", "model": "m", "entries": {"Family": {
        "text": "家庭", "back": "Family", "similarity": 1.7, "accepted": True, "verdict": "accepted",
        "threshold": 0.6, "model": "m"}}}), "'similarity' must be a number in \\[0, 1\\]"),
    (json.dumps({"format": 1, "language": "zh", "model": "m", "entries": {"Family": {
        "text": "家庭", "back": "Family", "similarity": 0.2, "accepted": True, "verdict": "low_similarity",
        "threshold": 0.6, "model": "m"}}}), "contradicts"),
])
def test_a_malformed_cache_is_an_error_naming_the_file(tmp_path, content, message):
    (tmp_path / "zh.json").write_text(content, encoding="utf-8")
    with pytest.raises(TranslationCacheError, match=message) as err:
        Translations.load(tmp_path)
    assert str(tmp_path / "zh.json") in str(err.value)
    with pytest.raises(TranslationCacheError, match=message):
        translate_strings(ScriptedEngine(GOOD_FWD, GOOD_BACK, name="m"), ["Family"], "zh", tmp_path)


def test_no_cache_means_no_translations(tmp_path):
    for where in (tmp_path / "missing", tmp_path):
        t = Translations.load(where)
        assert t.string("Family", "zh") is None and t.string("Family", "en") == "Family"
    with pytest.raises(ValueError, match="language 'fr'"):
        Translations.load(tmp_path).string("Family", "fr")


def test_bad_arguments_are_refused(tmp_path):
    engine = ScriptedEngine(GOOD_FWD, GOOD_BACK)
    for kwargs, message in [({"language": "en"}, "language 'en'"), ({"language": "zh", "threshold": 1.5}, "threshold"),
                            ({"language": "zh", "batch_size": 0}, "batch_size")]:
        language = kwargs.pop("language")
        with pytest.raises(ValueError, match=message):
            translate_strings(engine, ["Family"], language, tmp_path, **kwargs)
    assert engine.calls == 0


# --------------------------------------------------------------------------- the review rules


def test_rejection_rules(tmp_path):
    forward = {"Family": "Family", "Friends": "Amigos", "Work": "  \n", "Politics": "政治",
               "Religion": "宗教", "Very important": "非常重要", "Leisure time": "空闲时间"}
    back = {"Amigos": "Friends", "政治": "政治", "宗教": "Rules of the game", "非常重要": "Not important",
            "空闲时间": "The leisure time", "Family": "Family"}
    engine = ScriptedEngine(forward, back)
    report = translate_strings(engine, list(forward), "zh", tmp_path)
    t = Translations.load(tmp_path)
    verdicts = {s: e.verdict for s, e in t.entries["zh"].items()}
    assert verdicts == {"Family": "untranslated", "Friends": "wrong_script", "Work": "empty", "Politics": "echo",
                        "Religion": "low_similarity", "Very important": "negation", "Leisure time": "accepted"}
    assert report.verdicts == {v: 1 for v in verdicts.values()} and (report.accepted, report.rejected) == (1, 6)
    assert "  \n" not in engine.asked  # an empty translation is not back-translated
    assert t.entries["zh"]["Work"].similarity == 0.0 and t.entries["zh"]["Work"].back == ""
    assert [s for s in forward if t.string(s, "zh")] == ["Leisure time"]
    # A stricter threshold re-judges the cache without the model.
    sim = t.entries["zh"]["Leisure time"].similarity
    assert 0.6 < sim < 1
    stricter = translate_strings(engine, list(forward), "zh", tmp_path, threshold=(sim + 1) / 2)
    assert engine.calls == 2 and stricter.cached == 7 and stricter.accepted == 0
    assert Translations.load(tmp_path).entries["zh"]["Leisure time"].verdict == "low_similarity"


def test_judge_and_similarity():
    assert round_trip_similarity("Agree strongly", "Strongly agree!") == pytest.approx(1.0)
    assert round_trip_similarity("Family", "家庭") == 0.0 and round_trip_similarity("Family", "") == 0.0
    high = round_trip_similarity("How important is religion in your life?",
                                 "What importance does religion have in your life?")
    low = round_trip_similarity("Family", "Fire")
    assert 0 <= low < 0.2 < tr.DEFAULT_THRESHOLD < high <= 1
    assert judge("Work", "Работа", "Work", 1.0, "ru", 0.6) == "accepted"
    assert judge("Work", "Trabajo", "Work", 1.0, "ru", 0.6) == "wrong_script"
    assert judge("Work", "Trabajo", "Work", 1.0, "es", 0.6) == "accepted"   # Latin script: not checkable
    assert judge("Work", "عمل", "Work", 1.0, "ar", 0.6) == "accepted"
    assert judge("Work", "WORK!", "Work", 1.0, "es", 0.6) == "untranslated"
    assert judge("Mentioned", "Mencionado", "Not mentioned", 0.87, "es", 0.6) == "negation"
    assert tr.clean_reply('"家庭"\n\nPronounced: jiā tíng', "Family") == "家庭"


# --------------------------------------------------------------------------- items and coverage


def _write_cache(path: Path, language: str, entries: dict[str, tuple[str, bool]]) -> None:
    """A cache file as the job writes it: source → (translation, accepted)."""
    data = {"format": 1, "language": language, "model": "m", "entries": {
        s: {"text": t, "back": s, "similarity": 1.0 if ok else 0.1, "accepted": ok,
            "verdict": "accepted" if ok else "low_similarity", "threshold": 0.6, "model": "m"}
        for s, (t, ok) in entries.items()}}
    path.mkdir(exist_ok=True)
    (path / f"{language}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _all_accepted(qids) -> dict[str, tuple[str, bool]]:
    return {s: (f"«{s}»", True) for s in source_strings(WVS7, qids)}


def test_source_strings():
    strings = source_strings(WVS7, ["Q48", "Q2", "Q1"])
    q1, q2 = BATTERIES["Q1"], BATTERIES["Q2"]
    assert strings == [q1.stem, q1.subitem] + [lab for _, lab in WVS7["Q1"].options] + [
        q2.subitem, WVS7["Q48"].text, "No choice at all", "A great deal of choice"]
    assert WVS7["Q1"].text not in strings and "5" not in strings
    with pytest.raises(ValueError, match="Q9999"):
        source_strings(WVS7, ["Q9999"])


def test_an_item_is_translated_whole_or_not_at_all(tmp_path):
    _write_cache(tmp_path, "zh", _all_accepted(["Q1", "Q48"]))
    t = Translations.load(tmp_path)
    q1, q48 = WVS7["Q1"], WVS7["Q48"]
    got = t.item(q1, BATTERIES["Q1"], "zh")
    stem, sub = f"«{BATTERIES['Q1'].stem}»", f"«{BATTERIES['Q1'].subitem}»"
    assert got == LocalizedItem(stem + sub, tuple((c, f"«{lab}»") for c, lab in q1.options), stem, sub)
    scale = t.item(q48, None, "zh")
    assert scale.text == f"«{q48.text}»" and scale.stem is None and scale.subitem is None
    assert scale.options[0] == (1, "«No choice at all»") and scale.options[4] == (5, "5")  # bare numbers stay
    # Q1 asked without its battery needs its own wording, which is not translated.
    assert t.item(q1, None, "zh") is None
    # English is the codebook's own text.
    en = t.item(q1, BATTERIES["Q1"], "en")
    assert en == LocalizedItem(q1.text, q1.options, BATTERIES["Q1"].stem, BATTERIES["Q1"].subitem)

    # One rejected label and the whole item falls back.
    entries = _all_accepted(["Q1", "Q48"])
    entries["Rather important"] = ("相当重要", False)
    _write_cache(tmp_path, "zh", entries)
    t = Translations.load(tmp_path)
    assert t.item(q1, BATTERIES["Q1"], "zh") is None and t.item(q48, None, "zh") is not None
    assert t.string("Rather important", "zh") is None


def test_coverage_counts(tmp_path):
    qids = ["Q1", "Q2", "Q46", "Q48"]
    _write_cache(tmp_path, "ru", _all_accepted(["Q1", "Q48"]))
    t = Translations.load(tmp_path)
    # Q2 shares Q1's stem and labels; its sub-item is missing. Q46 has nothing.
    assert coverage(t, WVS7, qids, "ru") == (2, 2)
    assert coverage(t, WVS7, qids, "zh") == (0, 4)
    assert coverage(t, WVS7, qids, "en") == (4, 0)


# --------------------------------------------------------------------------- the embedded model


@pytest.fixture(scope="module")
def embedded():
    from raysim.engine.hf import HFEngine
    from raysim.engine.loading import ModelSpec, load_model

    return HFEngine(load_model(ModelSpec()))


def test_embedded_model_round_trip(embedded, tmp_path):
    engine = CountingEngine(embedded)
    strings = ["Family", "Work", "Very important"]
    report = translate_strings(engine, strings, "zh", tmp_path, max_new_tokens=8)
    assert engine.calls == 2 and report.translated == 3 and report.accepted + report.rejected == 3
    data = json.loads((tmp_path / "zh.json").read_text(encoding="utf-8"))
    assert data["model"] == embedded.loaded.name == "SmolLM2-135M-Instruct"
    assert list(data["entries"]) == strings
    for source, e in data["entries"].items():
        assert set(e) == {"text", "back", "similarity", "accepted", "verdict", "threshold", "model"}
        assert isinstance(e["text"], str) and isinstance(e["back"], str) and e["model"] == data["model"]
        assert 0.0 <= e["similarity"] <= 1.0 and e["verdict"] in tr.VERDICTS
        assert e["accepted"] == (e["verdict"] == "accepted")
        assert e["verdict"] == judge(source, e["text"], e["back"], e["similarity"], "zh", tr.DEFAULT_THRESHOLD)
    # Deterministic (greedy) and resumable: a rerun elsewhere gives the same, a rerun here costs nothing.
    again = translate_strings(engine, strings, "zh", tmp_path / "again", max_new_tokens=8)
    assert json.loads((tmp_path / "again" / "zh.json").read_text(encoding="utf-8")) == data
    translate_strings(engine, strings, "zh", tmp_path, max_new_tokens=8)
    assert engine.calls == 4 and again.accepted == report.accepted


def test_command_line(embedded, tmp_path, monkeypatch, capsys):
    import raysim.engine.backends as backends

    monkeypatch.setattr(backends, "load_model", lambda spec: embedded.loaded)  # no second load
    args = ["--questions", "1", "--languages", "zh", "--max-new-tokens", "4", "--threads", "1", "-o", str(tmp_path)]
    assert translate_command.main(args) == 0
    out = capsys.readouterr().out
    # One question (Q46: wording + 4 labels).
    assert "1 questions, 5 distinct strings" in out
    assert "zh (Simplified Chinese): 5 strings: 5 translated now, 0 cached" in out
    assert "questions in Simplified Chinese" in out and "fall back to English" in out
    assert translate_command.main(args) == 0
    assert "5 strings: 0 translated now, 5 cached" in capsys.readouterr().out
    with pytest.raises(ValueError, match="'en' is not a language to translate into"):
        translate_command.main(["--languages", "en", "-o", str(tmp_path)])
