"""Survey questions in the prompt languages: a chosen model translates the codebook's English
wording, a round trip reviews each translation, and whatever is not accepted falls back to English.

Units are the distinct strings a question turn is built from (:func:`source_strings`): an item's
wording (for a battery item the battery stem and the sub-item instead, which is how the question
turn shows it) and its option labels (a label that is just its code needs no translation).

The review (:func:`judge`): the translation is translated back into English by the same model and
compared with the source by :func:`round_trip_similarity`, the cosine of character 2-4-gram
frequency vectors (scikit-learn's ``char_wb`` analyzer, no IDF). Character n-grams tolerate what
an honest back-translation changes (word order: "Agree strongly" / "Strongly agree", inflection,
articles) where an edit-distance ratio such as difflib's punishes reordering; IDF is left out
because it would be fitted on the two strings alone, and a pair's score should not depend on a
corpus. Being surface similarity it is blind to a flipped polarity ("Very important" / "Not
important" score 0.73), so a negation present on one side only is rejected as such. Cheap rules
come first: empty output, output equal to the source (not translated), output in the wrong
script (zh, ar, ru), and a back-translation equal to the translation (the round trip did nothing).

Results, accepted or not, are cached per language in ``<cache_dir>/<language>.json``, keyed by
the English source string and written atomically after every batch: an interrupted job resumes,
and a rerun does no model work for cached strings (it only re-judges them, which needs no model,
so a new threshold applies). A cache file belongs to one model and refuses another.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..atomic import write_atomic
from ..engine.base import Option, Request, Decoding
from ..engine.noise import derive_seed
from ..survey.batteries import BatteryItem, battery_items
from ..survey.codebook import Codebook, Item
from ..survey.profile_templates import load_templates
from .templates import LANGUAGES

if TYPE_CHECKING:
    from ..engine.base import LM

LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese", "ar": "Arabic", "es": "Spanish", "ru": "Russian"}
TARGETS = tuple(lang for lang in LANGUAGES if lang != "en")

DEFAULT_THRESHOLD = 0.6
"""Round-trip similarity needed for acceptance. Faithful paraphrases score 0.74-1.0 ("How
important is religion in your life?" / "What importance does religion have in your life?" 0.74);
a back-translation that rambles around the topic scores about 0.55."""

CACHE_FORMAT = 1
VERDICTS = ("accepted", "empty", "untranslated", "wrong_script", "echo", "low_similarity", "negation")
MAX_NEW_TOKENS = 768
"""Cap on the derived generation budget (the longest WVS wording is ~100 English tokens)."""
_EXPANSION = 5
"""Tokens of a translation per English token: the embedded model's tokenizer spends 1.8 (es) to
4.1 (ru) on the shipped prompt translations."""

# Greedy decoding (top-k 1), so a translation is a function of the model and the string alone.
_TEMPERATURE, _TOP_K = 0.1, 1

_SCRIPTS = {
    "zh": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
    "ar": re.compile(r"[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]"),
    "ru": re.compile(r"[\u0400-\u04ff]"),
}
"""The script a translation must be written in, where that differs from English's."""
_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|none|nothing|nobody|cannot)\b|n['’]t\b")
_QUOTES = {'"': '"', "'": "'", "“": "”", "«": "»", "「": "」", "『": "』"}


class TranslationCacheError(ValueError):
    """A translation cache file that cannot be used (malformed, or another model's)."""


@dataclass(frozen=True)
class LocalizedItem:
    """An item's question-turn parts in one language (what ``question_turn`` shows)."""

    text: str
    options: tuple[tuple[int, str], ...]
    stem: str | None
    subitem: str | None


@dataclass(frozen=True)
class CacheEntry:
    """One source string's translation and its review."""

    text: str
    back: str
    """The translation translated back into English by the same model."""
    similarity: float
    accepted: bool
    verdict: str
    """"accepted" or why not (one of ``VERDICTS``)."""
    threshold: float
    model: str

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "back": self.back, "similarity": self.similarity, "accepted": self.accepted,
                "verdict": self.verdict, "threshold": self.threshold, "model": self.model}


@dataclass(frozen=True)
class TranslationReport:
    language: str
    model: str
    path: Path
    strings: int
    """Distinct source strings asked for."""
    translated: int
    """Of those, translated by the model in this call."""
    cached: int
    """Of those, found in the cache (no model work)."""
    accepted: int
    rejected: int
    verdicts: dict[str, int] = field(default_factory=dict)
    """Count of each verdict over the strings asked for."""


# --------------------------------------------------------------------------- review


def _norm(text: str) -> str:
    """Case, punctuation and spacing folded away: what "the same string" means here."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def round_trip_similarity(source: str, back: str) -> float:
    """Cosine in [0, 1] of the character 2-4-gram count vectors (word-boundary padded, after
    :func:`_norm`) of the English source and its back-translation (see the module docstring)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    a, b = _norm(source), _norm(back)
    if not a or not b:
        return 0.0
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), use_idf=False, norm="l2",
                              lowercase=False).fit_transform([a, b])
    # Clipped: the l2-normalised dot product can exceed 1 by a rounding error.
    return float(min(1.0, max(0.0, vectors[0].multiply(vectors[1]).sum())))


def in_script(text: str, language: str) -> bool:
    """Whether most letters of ``text`` are in ``language``'s script (True where the script is
    English's too, which cannot be told apart cheaply)."""
    script = _SCRIPTS.get(language)
    if script is None:
        return True
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(bool(script.match(c)) for c in letters) >= 0.5 * len(letters)


def _negated(text: str) -> bool:
    return bool(_NEGATION.search(text.casefold()))


def judge(source: str, text: str, back: str, similarity: float, language: str, threshold: float) -> str:
    """The verdict on one translation: "accepted" or the first rule it breaks."""
    if not _norm(text):
        return "empty"
    if _norm(text) == _norm(source):
        return "untranslated"
    if not in_script(text, language):
        return "wrong_script"
    if _norm(back) == _norm(text):
        return "echo"
    if similarity < threshold:
        return "low_similarity"
    # After the similarity test: this catches close round trips that flipped the polarity.
    if _negated(source) != _negated(back):
        return "negation"
    return "accepted"


def clean_reply(reply: str, source: str) -> str:
    """The translation in a model reply: its first non-empty line where the source is one line
    (small models keep talking after the translation) and without quotes the source lacks."""
    text = reply.strip()
    if "\n" not in source:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and not source.startswith(text[0]):
        text = text[1:-1].strip()
    return text


# --------------------------------------------------------------------------- the cache file


def cache_path(cache_dir: Path | str, language: str) -> Path:
    return Path(cache_dir) / f"{language}.json"


def _check_language(language: str, allow_english: bool) -> None:
    allowed = LANGUAGES if allow_english else TARGETS
    if language not in allowed:
        raise ValueError(f"language {language!r} not one of {list(allowed)}")


def _entry(raw: Any, where: str) -> CacheEntry:
    if not isinstance(raw, dict):
        raise TranslationCacheError(f"{where}: an entry must be an object, got {type(raw).__name__}")
    types = {"text": str, "back": str, "verdict": str, "model": str, "accepted": bool}
    for key, kind in types.items():
        if not isinstance(raw.get(key), kind):
            raise TranslationCacheError(f"{where}: {key!r} must be a {kind.__name__}, got {raw.get(key)!r}")
    for key in ("similarity", "threshold"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise TranslationCacheError(f"{where}: {key!r} must be a number in [0, 1], got {value!r}")
    if raw["verdict"] not in VERDICTS:
        raise TranslationCacheError(f"{where}: unknown verdict {raw['verdict']!r} (known: {list(VERDICTS)})")
    if raw["accepted"] != (raw["verdict"] == "accepted"):
        raise TranslationCacheError(f"{where}: 'accepted' contradicts verdict {raw['verdict']!r}")
    return CacheEntry(raw["text"], raw["back"], float(raw["similarity"]), raw["accepted"], raw["verdict"],
                      float(raw["threshold"]), raw["model"])


def read_cache(path: Path, language: str) -> tuple[str | None, dict[str, CacheEntry]]:
    """(model, source → entry) of one cache file; (None, {}) when there is none."""
    path = Path(path)
    if not path.exists():
        return None, {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TranslationCacheError(f"translation cache {path} is not readable JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise TranslationCacheError(f"translation cache {path}: not a format-{CACHE_FORMAT} translation cache")
    if data.get("language") != language:
        raise TranslationCacheError(f"translation cache {path} holds language {data.get('language')!r}, "
                                    f"expected {language!r}")
    model, entries = data.get("model"), data.get("entries")
    if not isinstance(model, str) or not model:
        raise TranslationCacheError(f"translation cache {path}: 'model' must be a model name")
    if not isinstance(entries, dict):
        raise TranslationCacheError(f"translation cache {path}: 'entries' must be an object keyed by source text")
    out = {}
    for source, raw in entries.items():
        entry = _entry(raw, f"translation cache {path}, entry {source!r}")
        if entry.model != model:
            raise TranslationCacheError(f"translation cache {path}, entry {source!r}: made by model "
                                        f"{entry.model!r} in a cache of model {model!r}")
        out[source] = entry
    return model, out


def _write_cache(path: Path, language: str, model: str, entries: Mapping[str, CacheEntry]) -> None:
    data = {"format": CACHE_FORMAT, "language": language, "model": model,
            "entries": {source: e.to_json() for source, e in entries.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n",
                                                  encoding="utf-8"))


# --------------------------------------------------------------------------- translating


def model_name(engine: LM) -> str:
    name = getattr(engine, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError("the engine does not name its model (engine.name), which the cache records")
    return name


def translation_messages(text: str, source: str, target: str) -> tuple[dict[str, str], dict[str, str]]:
    """(system turn, user turn) asking for ``text`` in language ``target`` (codes)."""
    system = (f"You are a professional translator of survey questionnaires. Translate the user's text "
              f"from {LANGUAGE_NAMES[source]} into {LANGUAGE_NAMES[target]}. Reply with the translation "
              f"only, nothing else.")
    return {"role": "system", "content": system}, {"role": "user", "content": text}


def _generate(engine: LM, texts: Sequence[str], source: str, target: str, seed: int, budget: int) -> list[str]:
    requests = []
    for k, text in enumerate(texts):
        system, user = translation_messages(text, source, target)
        # The system turn is the prefix: the engine computes it once for the batch. The option
        # only parses an answer code, which a free-text reply does not have.
        requests.append(Request(prefix=(system,), question=(user,), options=(Option(0, "-"),),
                                qid=f"translate/{source}-{target}/{k}",
                                seed=derive_seed(seed, f"{source}-{target}\x00{text}")))
    sampling = Decoding(temperature=_TEMPERATURE, top_k=_TOP_K, max_new_tokens=budget)
    return [r.text for r in engine.generate(requests, sampling)]


def _budget(engine: LM, texts: Sequence[str], per_token: int) -> int:
    longest = max(len(engine.encode(t)) for t in texts)
    return min(MAX_NEW_TOKENS, per_token * longest + 16)


def translate_strings(engine: LM, strings: Sequence[str], language: str, cache_dir: Path | str, *,
                      threshold: float = DEFAULT_THRESHOLD, seed: int = 0, batch_size: int = 16,
                      max_new_tokens: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> TranslationReport:
    """Translate ``strings`` (English) into ``language`` with ``engine``, review each by the round
    trip and cache every result in ``<cache_dir>/<language>.json``. Cached strings cost no model
    work; all cached entries are re-judged under ``threshold``. ``max_new_tokens`` caps each
    generation (default: derived from the source's length). ``progress(done, total)`` is called
    after each batch of new strings."""
    _check_language(language, allow_english=False)
    if not 0 <= threshold <= 1 or math.isnan(threshold):
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    wanted = list(dict.fromkeys(s for s in strings if s.strip()))
    model = model_name(engine)
    path = cache_path(cache_dir, language)
    cached_model, entries = read_cache(path, language)
    if cached_model is not None and cached_model != model:
        raise TranslationCacheError(
            f"translation cache {path} was made with model {cached_model!r}, this run uses {model!r}; "
            "one cache file holds one model's translations: use another output directory or remove the file")

    # Re-judging needs no model: a changed threshold (or rule) applies to cached entries too.
    rejudged = {}
    for source, e in entries.items():
        verdict = judge(source, e.text, e.back, e.similarity, language, threshold)
        rejudged[source] = CacheEntry(e.text, e.back, e.similarity, verdict == "accepted", verdict, threshold,
                                      e.model)
    changed = rejudged != entries
    entries = rejudged

    pending = [s for s in wanted if s not in entries]
    cached = len(wanted) - len(pending)
    if changed:
        _write_cache(path, language, model, _ordered(entries, wanted))
    if pending:
        # Similar lengths per batch: a batch decodes until its longest reply is done.
        pending.sort(key=lambda s: len(engine.encode(s)))
    for start in range(0, len(pending), batch_size):
        batch = pending[start: start + batch_size]
        forward = max_new_tokens or _budget(engine, batch, _EXPANSION)
        texts = [clean_reply(r, s) for r, s in zip(_generate(engine, batch, "en", language, seed, forward), batch)]
        backward = max_new_tokens or _budget(engine, batch, 2)
        asked = [k for k, t in enumerate(texts) if t]
        replies = _generate(engine, [texts[k] for k in asked], language, "en", seed, backward) if asked else []
        backs = [""] * len(batch)
        for k, reply in zip(asked, replies):
            backs[k] = clean_reply(reply, batch[k])
        for source, text, back in zip(batch, texts, backs):
            similarity = round_trip_similarity(source, back)
            verdict = judge(source, text, back, similarity, language, threshold)
            entries[source] = CacheEntry(text, back, similarity, verdict == "accepted", verdict, threshold, model)
        _write_cache(path, language, model, _ordered(entries, wanted))
        if progress is not None:
            progress(min(start + batch_size, len(pending)), len(pending))

    verdicts: dict[str, int] = {}
    for s in wanted:
        verdicts[entries[s].verdict] = verdicts.get(entries[s].verdict, 0) + 1
    accepted = verdicts.get("accepted", 0)
    return TranslationReport(language, model, path, len(wanted), len(pending), cached, accepted,
                             len(wanted) - accepted, verdicts)


def _ordered(entries: Mapping[str, CacheEntry], order: Sequence[str]) -> dict[str, CacheEntry]:
    """The entries in the order asked for (questionnaire order), any others after them."""
    first = {s: entries[s] for s in order if s in entries}
    return first | {s: e for s, e in entries.items() if s not in first}


# --------------------------------------------------------------------------- using translations


def source_strings(codebook: Codebook, qids: Iterable[str]) -> list[str]:
    """The distinct strings the question turns of ``qids`` are built from, in questionnaire
    order: an item's wording (for a battery item the stem and the sub-item, which the question
    turn shows instead) and each option label that is not just its code."""
    wanted = {codebook[q].id for q in qids}   # unknown ids: the codebook's clear error
    batteries = battery_items(codebook)
    out: list[str] = []
    for qid, item in codebook.items.items():
        if qid not in wanted:
            continue
        battery = batteries.get(qid)
        out += [battery.stem, battery.subitem] if battery else [item.text]
        out += [label for code, label in item.options if label != str(code)]
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Translations:
    """Accepted translations per language, read from a cache directory."""

    entries: Mapping[str, Mapping[str, CacheEntry]] = field(default_factory=dict)
    """language → English source → entry (accepted or not)."""
    models: Mapping[str, str] = field(default_factory=dict)
    """language → the model that translated it."""

    @classmethod
    def load(cls, cache_dir: Path | str | None) -> Translations:
        """Every ``<language>.json`` in ``cache_dir``; a missing directory or file is a language
        without translations, a malformed file an error naming it."""
        entries, models = {}, {}
        if cache_dir is not None and Path(cache_dir).is_dir():
            for language in TARGETS:
                model, found = read_cache(cache_path(cache_dir, language), language)
                if model is not None:
                    entries[language], models[language] = found, model
        return cls(entries, models)

    def string(self, text: str, language: str) -> str | None:
        """``text`` in ``language`` if an accepted translation exists (English: ``text``)."""
        _check_language(language, allow_english=True)
        if language == "en":
            return text
        entry = self.entries.get(language, {}).get(text)
        return entry.text if entry is not None and entry.accepted else None

    def item(self, item: Item, battery: BatteryItem | None, language: str) -> LocalizedItem | None:
        """``item``'s question-turn parts in ``language``, or None unless every part it needs is
        translated and accepted (the item then stays English as a whole: a question half in one
        language and half in another would be worse). A battery item needs its stem and sub-item
        (its ``text`` is then the two joined), any other its wording; both need every option
        label that is not just its code."""
        options = []
        for code, label in item.options:
            localized = label if label == str(code) else self.string(label, language)
            if localized is None:
                return None
            options.append((code, localized))
        if battery is None:
            text = self.string(item.text, language)
            return None if text is None else LocalizedItem(text, tuple(options), None, None)
        stem, subitem = self.string(battery.stem, language), self.string(battery.subitem, language)
        if stem is None or subitem is None:
            return None
        if language == "en":
            return LocalizedItem(item.text, tuple(options), stem, subitem)
        # Joined as the language joins sentences ("" in Chinese).
        text = f"{stem}{load_templates(language).separator}{subitem}"
        return LocalizedItem(text, tuple(options), stem, subitem)


def coverage(translations: Translations, codebook: Codebook, qids: Iterable[str],
             language: str) -> tuple[int, int]:
    """(items shown in ``language``, items falling back to English) among ``qids``."""
    batteries = battery_items(codebook)
    translated = fallback = 0
    for q in qids:
        if translations.item(codebook[q], batteries.get(q), language) is None:
            fallback += 1
        else:
            translated += 1
    return translated, fallback
