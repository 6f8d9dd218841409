"""The engine interface and the text→token work every backend shares.

Like lm-evaluation-harness's ``TemplateLM``: the base class applies the chat template, fixes the
token boundaries (shared prefix | question turn | answer continuation, with
encode(context + continuation) = encode(context) + encode(continuation)), finds the end-of-answer
marker and groups requests that share a (prefix, plan); backends implement only the token-level
core (``_score_group``, ``_generate_group``, ``_hidden_means``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
from jinja2 import TemplateError

from raysim.engine.parsing import parse_answer
from raysim.engine.plan import InjectionPlan

Message = Mapping[str, str]


@dataclass(frozen=True)
class Option:
    code: int
    text: str
    """The answer string the model is asked to give ("10", "Very important")."""


@dataclass(frozen=True)
class Request:
    """One respondent × question.

    ``prefix`` holds the messages every question of a respondent shares (system prompt, profile);
    ``question`` the turn(s) that ask this question. ``seed`` drives sampling in generation.
    """

    prefix: tuple[Message, ...]
    question: tuple[Message, ...]
    options: tuple[Option, ...]
    plan: InjectionPlan | None = None
    qid: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", tuple(self.prefix))
        question = self.question
        if isinstance(question, str):
            question = ({"role": "user", "content": question},)
        object.__setattr__(self, "question", tuple(question))
        object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise ValueError(f"request {self.qid!r} has no options")
        codes = [o.code for o in self.options]
        if len(set(codes)) != len(codes) or len({o.text for o in self.options}) != len(codes):
            raise ValueError(f"request {self.qid!r}: option codes and answer strings must be unique")


@dataclass(frozen=True)
class ScoreResult:
    codes: tuple[int, ...]
    probs: np.ndarray
    """P(option | prompt) renormalised over the options (float64, sums to 1)."""
    logliks: np.ndarray
    """log P(answer string + end-of-answer | prompt) per option, before renormalisation."""


@dataclass(frozen=True)
class Decoding:
    """How generated answers are sampled (temperature, top-k/top-p, length)."""

    temperature: float = 0.7
    top_k: int = 20
    top_p: float = 1.0
    max_new_tokens: int = 16


@dataclass(frozen=True)
class GenerationResult:
    text: str
    code: int | None
    valid: bool
    n_tokens: int
    token_ids: tuple[int, ...] = ()
    """The generated ids, stop token excluded (the response as the model produced it)."""
    prompt_ids: tuple[int, ...] = ()
    """The prompt's ids as fed (prefix + question turn), so prompt_ids + token_ids is the sequence."""


@dataclass
class TokenItem:
    """One request in token form: its question suffix and, for scoring, its continuations."""

    index: int
    suffix: list[int]
    continuations: list[list[int]] = field(default_factory=list)


@dataclass
class TokenGroup:
    """Requests sharing a prefix and a plan: the backend computes the prefix once."""

    prefix: list[int]
    plan: InjectionPlan | None
    items: list[TokenItem]


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LM(abc.ABC):
    """One model replica. Subclasses set ``tokenizer`` and the model's identity (``name``,
    ``fingerprint``: :func:`raysim.engine.loading.fingerprint`, ``n_layers``, ``hidden_size``)
    and implement the token-level core."""

    tokenizer: Any
    name: str
    fingerprint: str
    n_layers: int
    hidden_size: int

    # ------------------------------------------------------------------ public interface

    def score(self, requests: Sequence[Request], temperature: float = 1.0) -> list[ScoreResult]:
        """Exact option probabilities: P(answer + end-of-answer | prompt), renormalised.

        ``temperature`` scores under the token distribution a sampler at that temperature draws
        from (softmax(logits / T) at every step of the answer), without top-k truncation."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        results: list[ScoreResult | None] = [None] * len(requests)
        groups = self._groups(requests, with_options=True)
        for group, logliks in zip(groups, self._score_groups(groups, float(temperature))):
            for item, ll in zip(group.items, logliks):
                ll = np.asarray(ll, dtype=np.float64)
                probs = np.exp(ll - np.logaddexp.reduce(ll))
                results[item.index] = ScoreResult(
                    tuple(o.code for o in requests[item.index].options), probs / probs.sum(), ll)
        return results  # type: ignore[return-value]

    def generate(self, requests: Sequence[Request], sampling: Decoding = Decoding()) -> list[GenerationResult]:
        """Sampled answers (per-request seeds), stopped at the end of the turn, parsed to a code."""
        return self._generate(requests, sampling, None)[0]

    def generate_with_means(self, requests: Sequence[Request], sampling: Decoding,
                            layers: Sequence[int]) -> tuple[list[GenerationResult], np.ndarray]:
        """:meth:`generate`, plus per request the mean hidden state over its response tokens (the
        generated ids, stop excluded) at each of ``layers``: [requests, layers, hidden], zeros for
        an empty response. The states are those a forward of prompt + response gives
        (:meth:`hidden_means_ids`); a backend may read them while decoding instead."""
        return self._generate(requests, sampling, self._checked_layers(layers))

    def _generate(self, requests: Sequence[Request], sampling: Decoding,
                  layers: list[int] | None) -> tuple[list[GenerationResult], np.ndarray | None]:
        results: list[GenerationResult | None] = [None] * len(requests)
        means = None
        groups = self._groups(requests, with_options=False)
        seeds = [[requests[item.index].seed for item in group.items] for group in groups]
        for group, (outputs, group_means) in zip(groups, self._generate_groups(groups, sampling, seeds, layers)):
            for k, (item, ids) in enumerate(zip(group.items, outputs)):
                ids = [t for t in ids if t not in self.stop_ids]
                text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                req = requests[item.index]
                code = parse_answer(text, [(o.code, o.text) for o in req.options])
                results[item.index] = GenerationResult(text, code, code is not None, len(ids), tuple(ids),
                                                       tuple(group.prefix) + tuple(item.suffix))
                if layers is not None:
                    if means is None:
                        means = np.zeros((len(requests), len(layers), group_means.shape[-1]), dtype=np.float32)
                    means[item.index] = group_means[k]
        return results, means  # type: ignore[return-value]

    def hidden_means(self, texts: Sequence[str], spans: Sequence[tuple[int, int]],
                     layers: Sequence[int], unit: str = "token",
                     plans: Sequence[InjectionPlan | None] | None = None) -> np.ndarray:
        """Mean hidden state over ``spans[i]`` of ``texts[i]`` at each of ``layers`` (0 = embeddings,
        ℓ = output of decoder block ℓ−1), all from one forward pass: array [texts, layers, hidden].

        These are the states the injection hooks add to. They equal transformers'
        ``hidden_states[ℓ]`` except at ℓ = n_layers, where transformers reports the output after
        the final norm; here it is the last block's output, where a final vector is injected.

        Spans are [start, end) in tokens of ``encode(text)`` or, with ``unit="char"``, in characters
        (every token overlapping the character span counts). ``plans[i]``, if given, is injected
        into text i's forward (the states read are then the injected ones).
        """
        if len(texts) != len(spans):
            raise ValueError("texts and spans must have the same length")
        ids = [self.encode(t) for t in texts]
        if unit == "char":
            spans = [self._char_to_token_span(t, s) for t, s in zip(texts, spans)]
        elif unit != "token":
            raise ValueError(f"unit must be 'token' or 'char', got {unit!r}")
        return self.hidden_means_ids(ids, spans, layers, plans)

    def hidden_means_ids(self, ids: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]],
                         layers: Sequence[int], plans: Sequence[InjectionPlan | None] | None = None) -> np.ndarray:
        """:meth:`hidden_means` on token ids (e.g. a prompt's ids + the ids a generation returned,
        which decoding and re-encoding need not reproduce)."""
        ids = [list(x) for x in ids]
        if len(ids) != len(spans) or (plans is not None and len(plans) != len(ids)):
            raise ValueError("ids, spans and plans must have the same length")
        for i, (start, end) in enumerate(spans):
            if not 0 <= start < end <= len(ids[i]):
                raise ValueError(f"span {(start, end)} of text {i} outside its {len(ids[i])} tokens")
        return self._hidden_means(ids, list(spans), self._checked_layers(layers),
                                  list(plans) if plans is not None else None)

    def _checked_layers(self, layers: Sequence[int]) -> list[int]:
        for layer in layers:
            if not 0 <= layer <= self.n_layers:
                raise ValueError(f"layer {layer} out of range 0..{self.n_layers}")
        return list(layers)

    # ------------------------------------------------------------------ backend core

    def _score_groups(self, groups: list[TokenGroup], temperature: float) -> list[list[np.ndarray]]:
        """:meth:`_score_group` for every group; a backend that batches across groups (vLLM's
        continuous batch) takes them all at once."""
        return [self._score_group(group, temperature) for group in groups]

    def _generate_groups(self, groups: list[TokenGroup], sampling: Decoding, seeds: list[list[int]],
                         layers: list[int] | None) -> list[tuple[list[list[int]], np.ndarray | None]]:
        """:meth:`_generate_group` for every group (``seeds[g]``: group g's per-item seeds)."""
        return [self._generate_group(group, sampling, s, self.stop_ids, layers) for group, s in zip(groups, seeds)]

    @abc.abstractmethod
    def _score_group(self, group: TokenGroup, temperature: float) -> list[np.ndarray]:
        """Per item, the summed log-probability of each continuation after prefix + suffix, each
        token's under softmax(logits / temperature)."""

    @abc.abstractmethod
    def _generate_group(self, group: TokenGroup, sampling: Decoding, seeds: list[int], stop_ids: frozenset[int],
                        layers: list[int] | None) -> tuple[list[list[int]], np.ndarray | None]:
        """Per item, the generated token ids (up to and including a stop id) and, if ``layers``,
        the [items, layers, hidden] response means (:meth:`generate_with_means`)."""

    @abc.abstractmethod
    def _hidden_means(self, ids: list[list[int]], spans: list[tuple[int, int]],
                      layers: list[int], plans: list[InjectionPlan | None] | None) -> np.ndarray:
        """[texts, layers, hidden] means over token spans, each row under its plan (if any)."""

    # ------------------------------------------------------------------ text → tokens

    def encode(self, text: str) -> list[int]:
        # The chat template already writes any BOS; the tokenizer must not add another.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) with context ids = encode(context) and the pair
        tokenised as the whole string wherever the tokenizer allows (lm-eval's ``_encode_pair``)."""
        context_ids = self.encode(context)
        whole = self.encode(context + continuation)
        if whole[: len(context_ids)] == context_ids:
            return context_ids, whole[len(context_ids):]
        # A merge across the boundary: keep the context as the model sees it alone.
        return context_ids, self.encode(continuation)

    def chat(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt)

    @cached_property
    def end_of_answer(self) -> str:
        """What the chat template writes right after an assistant answer, up to and including its
        first special token (``<|im_end|>``, ``<|eot_id|>``, ``</s>``); EOS where none."""
        sentinel = "RAYSIMSENTINEL"
        text = self.chat([{"role": "user", "content": "x"}, {"role": "assistant", "content": sentinel}],
                         add_generation_prompt=False)
        tail = text[text.rfind(sentinel) + len(sentinel):]
        specials = [s for s in self.tokenizer.all_special_tokens if s and s in tail]
        if specials:
            first = min(specials, key=lambda s: (tail.index(s), -len(s)))
            return tail[: tail.index(first) + len(first)]
        return self.tokenizer.eos_token

    @cached_property
    def stop_ids(self) -> frozenset[int]:
        marker = [t for t in self.encode(self.end_of_answer) if t in set(self.tokenizer.all_special_ids)]
        eos = self.tokenizer.eos_token_id
        return frozenset(marker + ([eos] if eos is not None else []))

    @cached_property
    def _special_strings(self) -> tuple[str, ...]:
        return tuple(s for s in self.tokenizer.all_special_tokens if s)

    def continuation(self, prompt: str, answer: str) -> list[int]:
        """Token ids of ``answer`` + end-of-answer after ``prompt``."""
        # Tokenisation cannot merge across a special token, so only the text after the prompt's
        # last special token matters: that makes the result cacheable per (tail, answer).
        cut = max((prompt.rfind(s) + len(s) for s in self._special_strings if s in prompt), default=0)
        return self._continuation_cached(prompt[cut:], answer)

    @lru_cache(maxsize=65536)
    def _continuation_cached(self, tail: str, answer: str) -> list[int]:
        return self.encode_pair(tail, answer + self.end_of_answer)[1]

    def _groups(self, requests: Sequence[Request], with_options: bool) -> list[TokenGroup]:
        keyed: dict[tuple[str, str | None], list[tuple[int, str]]] = {}
        for i, req in enumerate(requests):
            full = self.chat(req.prefix + req.question, add_generation_prompt=True)
            prefix_text = self._prefix_text(req.prefix)
            if not full.startswith(prefix_text):
                prefix_text = ""  # a template that rewrites earlier turns: nothing to share
            plan_key = None if req.plan is None or req.plan.is_empty else req.plan.key
            keyed.setdefault((prefix_text, plan_key), []).append((i, full))
        groups = []
        for (prefix_text, _), members in keyed.items():
            prefix = self.encode(prefix_text) if prefix_text else []
            wholes = [self.encode(full) for _, full in members]
            # The shared boundary is where every full prompt's own tokenisation still agrees with
            # the prefix's, so prefix + suffix is exactly encode(full prompt).
            n = min([len(prefix)] + [_common_length(prefix, w) for w in wholes])
            items = []
            for (i, full), whole in zip(members, wholes):
                conts = [self.continuation(full, o.text) for o in requests[i].options] if with_options else []
                items.append(TokenItem(i, whole[n:], conts))
            groups.append(TokenGroup(prefix[:n], requests[members[0][0]].plan, items))
        return groups

    def _prefix_text(self, prefix: tuple[Message, ...]) -> str:
        if not prefix:
            return ""
        try:
            return self.chat(prefix, add_generation_prompt=False)
        except TemplateError:
            # Templates that only accept full conversations (e.g. a system turn must be followed
            # by a user turn): score without a shared prefix rather than fail.
            return ""

    def _char_to_token_span(self, text: str, span: tuple[int, int]) -> tuple[int, int]:
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        inside = [k for k, (a, b) in enumerate(offsets) if a < span[1] and b > span[0]]
        if not inside:
            raise ValueError(f"character span {span} covers no token")
        return inside[0], inside[-1] + 1
