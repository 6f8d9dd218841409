"""``raysim translate``: have a model translate the survey questions into the prompt languages
(raysim.methods.translation), reviewed by a round trip and cached."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..methods.translation import (DEFAULT_THRESHOLD, LANGUAGE_NAMES, TARGETS, VERDICTS, Translations, coverage,
                                   source_strings, translate_strings)
from .help import finish
from .model_arguments import add_model_arguments, model_spec


def _languages(text: str) -> list[str]:
    langs = [lang.strip() for lang in text.split(",") if lang.strip()]
    if not langs:
        raise ValueError("--languages names no language")
    for lang in langs:
        if lang not in TARGETS:
            raise ValueError(f"--languages: {lang!r} is not a language to translate into; choose from {list(TARGETS)}")
    return list(dict.fromkeys(langs))


def main(argv: list[str] | None = None) -> int:
    """``raysim translate``: have a model translate the survey questions into the prompt
    languages, reviewed by a round trip and cached; untranslated items fall back to English."""
    p = finish(argparse.ArgumentParser(prog="raysim translate", description=main.__doc__),
               "raysim translate --languages zh,es --questions 24")
    add_model_arguments(p, "translating model")
    p.add_argument("--languages", default=",".join(TARGETS),
                   help=f"comma-separated target languages (default {','.join(TARGETS)})")
    p.add_argument("--codebook", default="wvs7", help="wvs7 (default), cardata, or a YAML path")
    p.add_argument("--questions", type=int, default=0,
                   help="translate N questions spread evenly over the categories (default 0: all)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"round-trip similarity needed to accept a translation (default {DEFAULT_THRESHOLD})")
    p.add_argument("--batch-size", type=int, default=16, help="strings per generation batch (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="cap on each generation (default: from the source's length)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="cache directory (<language>.json); rerunning into it resumes")
    a = p.parse_args(argv)
    from ..survey.codebook import load_codebook
    from ..survey.sampling import questions_evenly

    languages = _languages(a.languages)
    if a.questions < 0:
        raise ValueError(f"--questions must be >= 0, got {a.questions}")
    codebook = load_codebook(a.codebook)
    qids = questions_evenly(codebook, a.questions)
    strings = source_strings(codebook, qids)
    Translations.load(a.out)   # a malformed cache fails before the model loads

    import torch

    from ..engine.backends import make_engine

    if a.threads:
        torch.set_num_threads(a.threads)
    engine = make_engine(model_spec(a))
    print(f"{len(qids)} questions, {len(strings)} distinct strings; model {engine.name}; cache {a.out}")
    for language in languages:
        started = time.monotonic()

        def progress(done: int, total: int, language: str = language) -> None:
            print(f"  {language}: {done}/{total} new strings ({time.monotonic() - started:.0f} s)", flush=True)

        r = translate_strings(engine, strings, language, a.out, threshold=a.threshold, seed=a.seed,
                              batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, progress=progress)
        why = ", ".join(f"{v} {r.verdicts[v]}" for v in VERDICTS[1:] if r.verdicts.get(v))
        print(f"{language} ({LANGUAGE_NAMES[language]}): {r.strings} strings: {r.translated} translated now, "
              f"{r.cached} cached; {r.accepted} accepted, {r.rejected} rejected" + (f" ({why})" if why else ""))
        shown, fallback = coverage(Translations.load(a.out), codebook, qids, language)
        print(f"{language}: {shown} of {len(qids)} questions in {LANGUAGE_NAMES[language]}, "
              f"{fallback} fall back to English")
    return 0
