"""A method at work: a batch of respondents → result rows (respondent × question).

``Simulator`` is built once per model replica from a ``MethodSpec`` and a ``Setup`` (what the run
fixes: questions, answer mode, seed, and for PSII the vector library and model preset). For each
respondent it decides the prompt language, the system turn and the injection plan; for each
question the question turn; then asks the engine in the run's answer mode:

* ``logprob``: the exact probability of every option (at the method's logprob temperature);
* ``generate``: a sampled answer (the method's temperature and top-k), parsed to an option code,
  an unparseable answer kept as invalid.

Everything is a pure function of (run seed, respondent id, question): the prompt language of a
mixed-language method, the noise seed, the sampling seed. A respondent gets the same rows in
any batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from ..engine.base import LM, Option, Request, Sampling
from ..engine.noise import derive_seed
from ..engine.plan import InjectionPlan, scoped
from ..identity.injection import PsiiPreset, check_setup, psii_plan, respondent_seed
from ..identity.library import VectorLibrary
from ..runs.results import result_rows
from ..survey.batteries import battery_items
from ..survey.codebook import Codebook, Item
from ..survey.population import BASE_COLUMNS, ID, records
from ..survey.profile import profile_columns, render_profile
from .prompts import answer_options, question_turn, system_text
from .spec import ANSWER_MODES, MIXED, MethodError, MethodSpec
from .templates import LANGUAGES, PromptTemplates, load_prompts
from .uniform import uniform_results

if TYPE_CHECKING:
    from .translation import Translations

SIMVBG_FRAMINGS = ("cognitive", "affective", "behavioral")


@dataclass(frozen=True)
class Setup:
    """What a run fixes for its method (one per model replica)."""

    codebook: Codebook
    qids: tuple[str, ...]
    answer: str = "logprob"
    seed: int = 0
    library: VectorLibrary | None = None
    preset: PsiiPreset | None = None
    translations: Translations | None = None


def columns(spec: MethodSpec, codebook: Codebook) -> list[str]:
    """The population columns a method reads: base columns, profile items, PSII attributes (any
    demographic item with options may be one: the codebook or the model preset says which)."""
    wanted = profile_columns(codebook) if spec.profile else []
    if spec.injection is not None:
        wanted += codebook.attribute_candidates
    return list(BASE_COLUMNS) + list(dict.fromkeys(c for c in wanted if c not in BASE_COLUMNS))


def prompt_language(spec: MethodSpec, seed: int, respondent_id: int,
                    weights: Mapping[str, float] | None = None) -> str:
    """The respondent's prompt language: the method's, or for ``mixed`` one of ``LANGUAGES``
    drawn from (seed, respondent id) alone, uniformly or with the mixture ``weights``."""
    if spec.language != MIXED:
        return spec.language
    draw = derive_seed(seed, f"language:{int(respondent_id)}")
    if not weights:
        return LANGUAGES[draw % len(LANGUAGES)]
    unknown = set(weights) - set(LANGUAGES)
    if unknown:
        raise MethodError(f"language_weights name unknown languages {sorted(unknown)} (known: {list(LANGUAGES)})")
    cumulative = np.cumsum([weights.get(lang, 0.0) for lang in LANGUAGES])
    u = draw / 2**63 * cumulative[-1]   # derive_seed gives 63 bits
    return LANGUAGES[min(int(np.searchsorted(cumulative, u, side="right")), len(LANGUAGES) - 1)]


def _majority(codes: list[int | None]) -> int | None:
    """The most frequent valid answer; a tie goes to the one given first."""
    valid = [c for c in codes if c is not None]
    if not valid:
        return None
    counts = Counter(valid)
    top = max(counts.values())
    return next(c for c in valid if counts[c] == top)


class Simulator:
    def __init__(self, spec: MethodSpec, engine: LM | None, setup: Setup) -> None:
        if setup.answer not in ANSWER_MODES:
            raise MethodError(f"answer mode {setup.answer!r} is not one of {list(ANSWER_MODES)}")
        if spec.needs_model and engine is None:
            raise MethodError(f"method {spec.name!r} needs a model")
        self.spec, self.engine, self.setup = spec, engine, setup
        self.codebook = setup.codebook
        self.items = [setup.codebook[q] for q in setup.qids]
        self.batteries = battery_items(setup.codebook)
        self.preset = self._preset() if spec.injection is not None else None
        self.label = spec.name if engine is None else f"{spec.name} ({engine.name})"
        self._questions: dict[tuple[str, str], str] = {}

    def _preset(self) -> PsiiPreset:
        inj, s = self.spec.injection, self.setup
        if s.library is None or s.preset is None:
            raise MethodError(f"method {self.spec.name!r} injects vectors: the run needs a vector library "
                              "and a model preset")
        preset = s.preset.for_codebook(self.codebook)
        if not inj.layerwise:
            flat = inj.flat_layer(s.library.manifest.n_layers)
            preset = preset.with_(attribute_layers={a: flat for a in s.library.attributes})
        if not inj.noise:
            preset = preset.with_(sigma=0.0)
        if not inj.language_vector:
            preset = preset.with_(language_scale=0.0)
        if self.engine is not None:   # a library of another model, or layers outside it: refused here
            check_setup(self.engine, s.library, preset)
        return preset

    # ------------------------------------------------------------------ prompts

    def _question(self, qid: str, language: str) -> str:
        key = (qid, language)
        if key not in self._questions:
            self._questions[key] = self._render_question(qid, language)
        return self._questions[key]

    def _render_question(self, qid: str, language: str) -> str:
        item: Item = self.codebook[qid]
        battery = self.batteries.get(qid)
        localized = None
        if language != "en" and self.setup.translations is not None:
            localized = self.setup.translations.item(item, battery, language)
        # Without a reviewed translation the item is asked in English (counted by the run).
        return question_turn(item, battery, localized=localized,
                             options_header=load_prompts(language).options_header if localized else "")

    def _profile(self, row: dict[str, Any], language: str) -> str:
        return render_profile(row, self.codebook, language=language)

    def _plan(self, row: dict[str, Any], language: str) -> InjectionPlan | None:
        if self.preset is None:
            return None
        s = self.setup
        return psii_plan(s.library, row, self.preset, respondent_seed(s.seed, row[ID]),
                         language=language, attributes=tuple(a for a in self.preset.attributes if a in s.library.attributes),
                         demographic=self.spec.injection.demographic, skip_unknown=True)

    def _requests(self, rid: int, system: str, plan: InjectionPlan | None, language: str,
                  tag: str = "") -> list[Request]:
        scope = self.spec.injection.noise_scope if self.spec.injection else "respondent"
        prefix = ({"role": "system", "content": system},)
        return [Request(prefix=prefix, question=self._question(it.id, language), options=answer_options(it),
                        plan=scoped(plan, scope, it.id) if plan is not None else None, qid=it.id,
                        seed=derive_seed(self.setup.seed, f"answer:{rid}:{it.id}{tag}"))
                for it in self.items]

    # ------------------------------------------------------------------ answering

    def _answer(self, requests: list[Request]) -> dict[str, list]:
        spec = self.spec
        if self.setup.answer == "logprob":
            scored = self.engine.score(requests, temperature=spec.logprob.temperature)
            return {"probs": [r.probs for r in scored]}
        made = self.engine.generate(requests, spec.generate.sampling())
        return {"sampled_code": [g.code for g in made], "raw_text": [g.text for g in made],
                "valid": [g.valid for g in made]}

    def __call__(self, respondents: pd.DataFrame, run_id: str, config_hash: str) -> pd.DataFrame:
        """Result rows for ``respondents`` (in their order), every question each."""
        if self.spec.kind == "uniform":
            return uniform_results(respondents, self.codebook, list(self.setup.qids), run_id=run_id,
                                   config_hash=config_hash,
                                   sample_seed=self.setup.seed if self.setup.answer == "generate" else None)
        rows = records(respondents)
        if self.spec.kind == "simvbg":
            answers = self._simvbg(rows)
        else:
            answers = self._answer([r for row in rows for r in self.prompt_requests(row)])
        codes = [list(it.codes) for it in self.items] * len(rows)
        probs = answers.get("probs")
        return result_rows(respondents, list(self.setup.qids), run_id=run_id, method=self.label,
                           config_hash=config_hash, option_codes=codes,
                           probs=[p.astype(np.float32).tolist() for p in probs] if probs is not None else None,
                           sampled_code=answers.get("sampled_code"), raw_text=answers.get("raw_text"),
                           valid=answers.get("valid", True))

    def prompt_requests(self, row: dict[str, Any]) -> list[Request]:
        """A prompt method's requests for one respondent, one per question."""
        spec, rid = self.spec, int(row[ID])
        language = prompt_language(spec, self.setup.seed, rid, self.preset.language_weights if self.preset else None)
        templates = load_prompts(language)
        profile = self._profile(row, language) if spec.system == "pe" else None
        return self._requests(rid, system_text(templates, spec.system, profile), self._plan(row, language), language)

    # ------------------------------------------------------------------ SimVBG

    def backgrounds(self, rows: list[dict[str, Any]]) -> list[str]:
        """SimVBG step 1: each respondent's background story, written by the model from the profile."""
        spec, seed = self.spec, self.setup.seed
        requests = []
        for row in rows:
            language = prompt_language(spec, seed, int(row[ID]))
            prompt = load_prompts(language).simvbg_background.format(profile=self._profile(row, language))
            requests.append(Request(prefix=(), question=prompt, options=(Option(0, "-"),),
                                    seed=derive_seed(seed, f"background:{int(row[ID])}")))
        sampling = Sampling(temperature=spec.generate.temperature, top_k=spec.generate.top_k,
                            max_new_tokens=spec.background_tokens)
        return [g.text for g in self.engine.generate(requests, sampling)]

    def simvbg_requests(self, row: dict[str, Any], story: str) -> list[Request]:
        """SimVBG step 2 for one respondent: per framing, per question, a request whose system turn
        holds the profile, the story and the framing."""
        rid = int(row[ID])
        language = prompt_language(self.spec, self.setup.seed, rid)
        t: PromptTemplates = load_prompts(language)
        persona = system_text(t, "pe", f"{self._profile(row, language)}\n\n{story}".strip())
        return [r for framing in SIMVBG_FRAMINGS
                for r in self._requests(rid, f"{persona}\n\n{getattr(t, 'simvbg_' + framing)}", None, language,
                                        tag=f":{framing}")]

    def _simvbg(self, rows: list[dict[str, Any]]) -> dict[str, list]:
        k, n_q = len(SIMVBG_FRAMINGS), len(self.items)
        answers = self._answer([r for row, story in zip(rows, self.backgrounds(rows))
                                for r in self.simvbg_requests(row, story)])

        def per(values: list) -> list[list]:
            # requests are respondent-major, then framing, then question
            return [[values[(r * k + f) * n_q + q] for f in range(k)] for r in range(len(rows)) for q in range(n_q)]

        out: dict[str, list] = {}
        if "probs" in answers:
            out["probs"] = [np.mean(ps, axis=0) for ps in per(answers["probs"])]
        else:
            out["sampled_code"] = [_majority(cs) for cs in per(answers["sampled_code"])]
            out["raw_text"] = [" | ".join(ts) for ts in per(answers["raw_text"])]
            out["valid"] = [c is not None for c in out["sampled_code"]]
        return out
