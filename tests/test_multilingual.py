"""Profiles and method prompts in every survey language (en, zh, ar, es, ru)."""

from __future__ import annotations

import re
import string

import pandas as pd
import pytest

from raysim.methods import templates as tpl
from raysim.methods.prompts import persona_prefix
from raysim.methods.templates import LANGUAGES, PromptTemplateError, load_prompts, parse_prompts
from raysim.survey import cardata, profile
from raysim.survey.cardata import load_cardata
from raysim.survey.codebook import Item, load_codebook
from raysim.survey.countries import CountryError, load_countries
from raysim.survey.profile import localized_country_name, render_profile
from raysim.survey.profile_templates import ProfileTemplateError, load_templates, parse_templates
from raysim.survey.synthetic import synth_frames

OTHERS = ("zh", "ar", "es", "ru")
WVS7, CARDATA = load_codebook("wvs7"), load_codebook("cardata")
EN = load_templates("en")
SCRIPT = {"zh": r"[\u4e00-\u9fff]", "ar": r"[\u0600-\u06ff]", "ru": r"[\u0400-\u04ff]"}
LATIN = re.compile(r"[A-Za-z]")
END = {"zh": "。"}
LABEL = {"en": "Local", "zh": "本地", "ar": "محلي", "es": "local", "ru": "местный"}
"""A value label for the country-coded items (Q290, Q272) in each language's own script."""
REFERS_BACK = {"ru"}
"""Languages that name the country once and refer back to it (Russian declines the name)."""


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


def _forms(phrase) -> list[str]:
    return [phrase] if isinstance(phrase, str) else list(phrase.values())


def _phrases(templates, qid: str) -> dict:
    """key -> phrase of one item (the label form under the key "label")."""
    it = templates.items[qid]
    return dict(it.codes or it.number or {"label": it.label})


def _sentences(text: str, language: str) -> int:
    return text.count(END.get(language, "."))


def _values(item: Item) -> list[int]:
    """Every valid code of an item (a coded item: a few codes)."""
    if item.kind == "numeric":
        lo, hi = item.range
        return list(range(lo, hi + 1))
    if item.kind == "coded":
        return [1, 2, 57]
    return [c for c, _ in item.options] + [c for c, _ in item.extra_codes]


@pytest.fixture(scope="module")
def synthetic():
    return next(synth_frames(300, seed=7))


# --- profile templates ------------------------------------------------------------------------

@pytest.mark.parametrize("language", OTHERS)
def test_profile_file_has_the_items_codes_and_placeholders_of_english(language):
    t = load_templates(language)
    assert t.language == language and t.order == EN.order and set(t.items) == set(EN.items)
    for qid, en_item in EN.items.items():
        item, en, ph = t.items[qid], _phrases(EN, qid), _phrases(t, qid)
        assert (item.codes is None, item.number is None, item.label is None) == \
            (en_item.codes is None, en_item.number is None, en_item.label is None), qid
        if en_item.codes is not None:
            assert set(ph) == set(en), qid
        else:
            assert set(en) <= set(ph), qid          # numbers may add values for agreement
        for key, phrase in ph.items():
            en_fields = _fields(en.get(key, en.get("other", "")))
            for form in _forms(phrase):
                used = _fields(form)
                if item.number is None or key == "other":   # codes, labels, the general count
                    assert used - {"country"} == en_fields - {"country"}, (qid, key, form)
                else:                                        # an exact count may spell it out
                    assert used - {"country"} <= {"value"}, (qid, key, form)
                if language in REFERS_BACK:
                    assert "country" not in used, (qid, key, form)
                else:
                    assert ("country" in used) == ("country" in en_fields), (qid, key, form)
                end = END.get(language, ".")
                assert form.endswith(end) and form.count(end) == 1, (qid, key, form)
    assert _fields(_forms(t.country)[0]) == {"country"}


@pytest.mark.parametrize("language", OTHERS)
@pytest.mark.parametrize("codebook", [WVS7, CARDATA], ids=["wvs7", "cardata"])
def test_every_code_of_every_item_renders_in_both_genders(language, codebook):
    checked = 0
    for qid in codebook.demographic_ids:
        if qid not in EN.items or qid == "Q260":
            continue
        values = _values(codebook[qid])
        labels = {qid: {c: f"{LABEL[language]}{c}" for c in values}}
        for sex in (1, 2):
            seen = set()
            for code in values:
                text = render_profile({"Q260": sex, qid: code}, codebook, value_labels=labels,
                                      language=language)
                assert _sentences(text, language) == 2 and "{" not in text, (qid, code, text)
                seen.add(text)
            assert len(seen) == len(values), f"{language} {qid}: two codes render the same sentence"
        checked += 1
    assert checked == (20 if codebook is WVS7 else 3)   # templated items but Q260


@pytest.mark.parametrize("language", OTHERS)
def test_synthetic_profiles_render_sentence_for_sentence_like_english(language, synthetic):
    for row in synthetic.to_dict("records"):
        labels = {q: {int(row[q]): LABEL[language]} for q in ("Q290", "Q272") if not pd.isna(row[q])}
        en = render_profile(row, WVS7, value_labels={q: {c: LABEL["en"] for c in v} for q, v in labels.items()})
        text = render_profile(row, WVS7, value_labels=labels, language=language)
        assert _sentences(text, language) == _sentences(en, "en") > 10, (row["respondent_id"], text)
        assert not re.search(r"[{}]|\bNone\b|\bnan\b|<NA>|  ", text), text
        english = [s for s in re.split(r"(?<=\.) ", en)]
        assert not any(s in text for s in english), text
        if language in SCRIPT:
            assert re.search(SCRIPT[language], text) and not LATIN.search(text), text


@pytest.mark.parametrize("language", OTHERS)
def test_cardata_profiles_render_and_tell_respondents_apart(language):
    df = load_cardata().drop_duplicates(["country", "Q260", "Q262", "RELIGION", "DEGREE"])
    texts = [render_profile(row, CARDATA, language=language) for row in df.to_dict("records")]
    assert all(_sentences(t, language) == 5 for t in texts)
    assert len(set(texts)) == len(df)
    if language in SCRIPT:
        assert not any(LATIN.search(t) for t in texts)


def test_chinese_profile_sets_no_spaces_between_sentences():
    text = render_profile({"country": "CHN", "Q260": 2, "Q262": 30}, WVS7, language="zh")
    assert text == "你是女性。你今年30岁。你住在中国。"


@pytest.mark.parametrize("language, qid, code, man, woman", [
    ("ar", "Q273", 1, "أنت متزوج.", "أنتِ متزوجة."),
    ("ar", "country", "EGY", "تعيش في مصر.", "تعيشين في مصر."),
    ("es", "Q273", 1, "Estás casado.", "Estás casada."),
    ("ru", "Q273", 1, "Вы женаты.", "Вы замужем."),
    ("zh", "Q271", 3, "你和岳父母住在一起。", "你和公婆住在一起。"),
])
def test_the_respondents_sex_picks_the_gendered_form(language, qid, code, man, woman):
    def text(row):
        return render_profile({**row, qid: code}, WVS7, language=language)
    assert man in text({"Q260": 1}) and woman in text({"Q260": 2})
    assert man in text({})                              # no sex: the generic masculine
    assert man in text({"Q260": -1}) and woman not in text({"Q260": -1})


def _russian_form(n: int, one: str, few: str, many: str) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return one
    return few if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14 else many


@pytest.mark.parametrize("qid, start, words", [
    ("Q262", 15, ("год", "года", "лет")),
    ("Q270", 3, ("человек", "человека", "человек")),
    ("Q274", 1, ("ребёнок", "ребёнка", "детей")),
])
def test_russian_counts_agree_with_their_number(qid, start, words):
    lo, hi = WVS7[qid].range
    for n in range(max(lo, start), hi + 1):
        text = render_profile({qid: n}, WVS7, language="ru")
        assert re.search(rf"\b{n} {_russian_form(n, *words)}\b", text), text


def test_arabic_counts_agree_with_their_number():
    assert render_profile({"Q274": 2}, WVS7, language="ar") == "لديك طفلان."
    for n in range(3, 25):
        noun = "أطفال" if n <= 10 else "طفلًا"
        assert render_profile({"Q274": n}, WVS7, language="ar") == f"لديك {n} {noun}."
    for n, noun in [(15, "عامًا"), (99, "عامًا"), (100, "عام"), (102, "عام"), (103, "أعوام")]:
        assert render_profile({"Q262": n}, WVS7, language="ar") == f"عمرك {n} {noun}."


@pytest.mark.parametrize("raw, needle", [
    ({"m": "A.", "x": "B."}, r"gendered forms must be exactly \['f', 'm'\]"),
    ({"m": "A.", "f": "B"}, "Q1.codes.1.f: a sentence must end with a period"),
    ({"m": "A {age}.", "f": "B."}, r"unknown placeholder\(s\) \['age'\]"),
])
def test_malformed_gendered_phrases_are_rejected(raw, needle):
    doc = {"language": "t", "country": "你住在{country}。", "country_fallback": "x", "separator": "",
           "order": ["Q1", "country"], "items": {"Q1": {"codes": {1: {"m": "A.", "f": "B。"}}}}}
    assert parse_templates(doc, "t").items["Q1"].codes[1] == {"m": "A.", "f": "B。"}
    doc["items"] = {"Q1": {"codes": {1: raw}}}
    with pytest.raises(ProfileTemplateError, match=needle):
        parse_templates(doc, "t")


def test_unknown_profile_language_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"no profile templates for language 'de'; available: "
                                         r"\['ar', 'en', 'es', 'ru', 'zh'\]"):
        load_templates("de")


# --- country names ----------------------------------------------------------------------------

ALL_COUNTRIES = sorted(set(load_countries()) | set(cardata.COUNTRIES.values()))


@pytest.mark.parametrize("language", OTHERS)
def test_every_country_has_a_name_in_every_language(language):
    assert len(ALL_COUNTRIES) == 68
    names = {c: localized_country_name(c, language) for c in ALL_COUNTRIES}
    assert len(set(names.values())) == len(names)
    assert set(profile._country_names(language)) == set(ALL_COUNTRIES)   # no stray codes
    for code, name in names.items():
        assert name and name == name.strip(), (code, name)
        if language in SCRIPT:
            assert re.search(SCRIPT[language], name) and not LATIN.search(name), (code, name)


def test_spanish_country_names_never_need_a_contraction():
    for code in ALL_COUNTRIES:
        assert not localized_country_name(code, "es").startswith(("el ", "El ")), code


def test_country_name_errors(monkeypatch):
    with pytest.raises(CountryError, match="unknown WVS-7 country code 'XYZ'"):
        localized_country_name("XYZ", "zh")
    with pytest.raises(CountryError, match="no country names for language 'de'"):
        localized_country_name("USA", "de")
    monkeypatch.setattr(profile, "_country_names", lambda language: {})
    with pytest.raises(CountryError, match=r"country_names_zh.yaml has no name for USA \(the United States\)"):
        render_profile({"country": "USA"}, WVS7, language="zh")


# --- method prompts ---------------------------------------------------------------------------

def test_pe_prefix_is_the_templates_pe_system_turn():
    assert load_prompts().language == "en"
    for language in LANGUAGES:
        (turn,) = persona_prefix("<P>", language)
        assert turn == {"role": "system", "content": load_prompts(language).pe_system.format(profile="<P>")}


@pytest.mark.parametrize("language", LANGUAGES)
def test_prompt_templates_load_in_every_language(language):
    p = load_prompts(language)
    assert p.language == language
    system = p.pe_system.format(profile="<PROFILE>")
    assert system.endswith("<PROFILE>") and p.answer_instruction in system
    assert p.simvbg_background.format(profile="<PROFILE>").endswith("<PROFILE>")
    texts = [getattr(p, k).replace("{profile}", "") for k in tpl._KEYS]
    if language != "en":
        en = load_prompts("en")
        assert p.options_header and all(getattr(p, k) != getattr(en, k) for k in tpl._KEYS)
    if language in SCRIPT:
        assert all(re.search(SCRIPT[language], t) and not LATIN.search(t) for t in texts)
    assert len({p.simvbg_cognitive, p.simvbg_affective, p.simvbg_behavioral}) == 3
    assert p.divreq_system != p.direct_system and p.answer_instruction in p.divreq_system


def _prompt_doc(**changes) -> dict:
    doc = {"language": "en", **{k: getattr(load_prompts("en"), k) for k in tpl._KEYS}}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize("changes, needle", [
    ({"simvbg_affective": None}, r"prompts_t.yaml: missing key\(s\) \['simvbg_affective'\]"),
    ({"extra": "x"}, r"unknown key\(s\) \['extra'\]"),
    ({"pe_system": "Answer. Reply with the number of the answer you choose and nothing else."},
     r"key 'pe_system': placeholders \[\], expected \['\{profile\}'\]"),
    ({"pe_system": load_prompts("en").pe_system + " {profile}"}, r"key 'pe_system': placeholders \['\{profile\}', '\{profile\}'\]"),
    ({"simvbg_background": "Write about {person}."}, r"key 'simvbg_background': placeholders \['\{person\}'\]"),
    ({"direct_system": "Be {x}."}, r"key 'direct_system': placeholders \['\{x\}'\], expected \[\]"),
    ({"simvbg_cognitive": "Think {"}, r"key 'simvbg_cognitive': malformed braces"),
    ({"simvbg_behavioral": " "}, r"key 'simvbg_behavioral': is empty"),
    ({"divreq_system": "Forget that you are an AI model. Answer with a number."},
     r"key 'divreq_system': does not contain answer_instruction"),
    ({"answer_instruction": 3}, r"key 'answer_instruction': expected a string"),
])
def test_malformed_prompt_files_are_rejected(changes, needle):
    assert parse_prompts(_prompt_doc(), "prompts_t.yaml") == load_prompts("en")
    with pytest.raises(PromptTemplateError, match=needle):
        parse_prompts(_prompt_doc(**changes), "prompts_t.yaml")


def test_unknown_prompt_language_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"no prompt templates for language 'de'; available: "
                                         r"\['en', 'zh', 'ar', 'es', 'ru'\]"):
        load_prompts("de")
