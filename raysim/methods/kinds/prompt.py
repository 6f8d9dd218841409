"""Kind ``prompt``: one prompt per question, optionally injected (Direct, High-Temp, Multilingual,
DivReq, PE, PSII and its ablations).

    kind: prompt
    system: pe              # direct | divreq | pe (the respondent's profile) | narrative (their own
                            # persona text: a population imported from narrative personas)
    language: mixed         # en | zh | ar | es | ru | mixed (drawn per respondent, seeded)
    logprob: {temperature: 1.0}
    generate: {temperature: 0.7, top_k: 20, max_new_tokens: 10}
    injection: {demographic: true, language_vector: true, noise: true, layerwise: true}

An injecting method needs the run's vector library and model preset (resources ``vectors`` and
``preset``); for each respondent it builds PSII's plan from their attribute answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...engine.plan import NOISE_SCOPES, InjectionPlan
from ...identity.injection import PsiiPreset, check_setup, psii_plan, respondent_seed
from ...survey.codebook import Codebook
from ...survey.population import ID, PERSONA
from ...survey.profile import profile_columns
from ..prompts import system_text
from ..templates import load_prompts
from .base import Answers, MethodError, register_kind
from .prompting import PromptingKind, PromptingParams, languages_of

SYSTEMS = ("direct", "divreq", "pe", "narrative")


@dataclass(frozen=True)
class Injection:
    """PSII's injection, each part switchable for the ablations."""

    demographic: bool = True
    """The attribute vectors; False keeps noise-only terms at the same layers."""
    language_vector: bool = True
    """The value (language) vector of the prompt language at the final block."""
    noise: bool = True
    """Gaussian noise of the preset's σ on every term."""
    layerwise: bool = True
    """Each attribute at its preset layer; False: all at ``flat_depth`` of the model's depth."""
    flat_depth: float = 0.7
    noise_scope: str = "respondent"
    """One noise seed per respondent (a stable individual) or per question (the reference's way)."""

    def flat_layer(self, n_layers: int) -> int:
        return max(1, min(n_layers, round(self.flat_depth * n_layers)))


@dataclass(frozen=True)
class PromptParams(PromptingParams):
    system: str = "pe"
    injection: Injection | None = None


@register_kind("prompt")
class PromptKind(PromptingKind):
    Params = PromptParams

    @classmethod
    def check(cls, params: PromptParams, where: str) -> None:
        super().check(params, where)
        if params.system not in SYSTEMS:
            raise MethodError(f"{where}: system {params.system!r} is not one of {list(SYSTEMS)}")
        inj = params.injection
        if inj is not None:
            if inj.noise_scope not in NOISE_SCOPES:
                raise MethodError(f"{where}: injection.noise_scope {inj.noise_scope!r} is not one of "
                                  f"{list(NOISE_SCOPES)}")
            if not 0 < inj.flat_depth <= 1:
                raise MethodError(f"{where}: injection.flat_depth must be in (0, 1], got {inj.flat_depth}")

    @classmethod
    def resources(cls, params: PromptParams) -> dict[str, bool]:
        injecting = {"vectors": True, "preset": True} if params.injection is not None else {}
        return {**super().resources(params), **injecting}

    @classmethod
    def columns(cls, params: PromptParams, codebook: Codebook) -> list[str]:
        # PSII attributes: any demographic item with options may be one (the codebook or the
        # model preset says which)
        return ((profile_columns(codebook) if params.system == "pe" else [])
                + ([PERSONA] if params.system == "narrative" else [])
                + (codebook.attribute_candidates if params.injection is not None else []))

    @classmethod
    def profile_languages(cls, params: PromptParams) -> tuple[str, ...]:
        return languages_of(params.language) if params.system == "pe" else ()

    def __init__(self, spec, engine, setup) -> None:
        super().__init__(spec, engine, setup)
        self.preset = self._preset() if self.params.injection is not None else None

    def _preset(self) -> PsiiPreset:
        inj = self.params.injection
        if not {"vectors", "preset"} <= set(self.setup.resources):
            raise MethodError(f"method {self.spec.name!r} injects vectors: the run needs a vector library "
                              "and a model preset")
        library, preset = self.resource("vectors"), self.resource("preset").for_codebook(self.codebook)
        if not inj.layerwise:
            flat = inj.flat_layer(library.manifest.n_layers)
            preset = preset.with_(attribute_layers={a: flat for a in library.attributes})
        if not inj.noise:
            preset = preset.with_(sigma=0.0)
        if not inj.language_vector:
            preset = preset.with_(language_scale=0.0)
        if self.engine is not None:   # a library of another model, or layers outside it: refused here
            check_setup(self.engine, library, preset)
        return preset

    def plan(self, row: dict[str, Any], language: str) -> InjectionPlan | None:
        if self.preset is None:
            return None
        library = self.resource("vectors")
        return psii_plan(library, row, self.preset, respondent_seed(self.setup.seed, row[ID]), language=language,
                         attributes=tuple(a for a in self.preset.attributes if a in library.attributes),
                         demographic=self.params.injection.demographic, skip_unknown=True)

    def prompt_requests(self, row: dict[str, Any]) -> list:
        """One respondent's requests, one per question."""
        params, rid = self.params, int(row[ID])
        language = self.language_of(rid, self.preset.language_weights if self.preset else None)
        if params.system == "narrative":   # the persona's own words in PE's frame
            system = system_text(load_prompts(language), "pe", self.narrative(row))
        else:
            profile = self.profile(row, language) if params.system == "pe" else None
            system = system_text(load_prompts(language), params.system, profile)
        scope = params.injection.noise_scope if params.injection else "respondent"
        return self.requests(rid, system, self.plan(row, language), language, noise_scope=scope)

    @staticmethod
    def narrative(row: dict[str, Any]) -> str:
        text = row.get(PERSONA)
        if not isinstance(text, str) or not text.strip():
            raise MethodError(f"respondent {row[ID]} ({row.get('country')}) has no persona text: system narrative "
                              "needs a population imported from narrative personas (raysim data import --text COL)")
        return text

    def answer(self, rows: list[dict[str, Any]]) -> Answers:
        return self.ask([r for row in rows for r in self.prompt_requests(row)])
