"""The ``dry`` backend: a model's tokenizer and chat template, and its architecture built on the
meta device (no weights, no compute). Requests are tokenised and grouped exactly as the HF and
vLLM backends see them (the text-to-token work is the shared base class's), every option comes
out equally likely, and generation stops at once. It counts what a real backend would compute:
``raysim plan`` prices a run with it, and ``engine: dry`` runs a pipeline end to end without a
model's cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import LM, Decoding, TokenGroup
from .loading import EMBEDDED_NAME, ModelSpec, architecture_config, embedded_default_dir, resolve_source


@dataclass(frozen=True)
class DryOptions:
    """No settings: what it counts is fixed by the model and the requests."""


@dataclass
class Counts:
    groups: int = 0
    """Prefixes computed (one per respondent and plan: the prefix is shared by its questions)."""
    requests: int = 0
    prefix_tokens: int = 0
    question_tokens: int = 0
    """Question-turn tokens and the option tokens after them, as fed (before any trie sharing)."""
    generated_tokens: int = 0
    """Generation mode: ``max_new_tokens`` per request, the most a real backend would decode."""

    @property
    def tokens(self) -> int:
        return self.prefix_tokens + self.question_tokens + self.generated_tokens


class DryEngine(LM):
    def __init__(self, spec: ModelSpec, options: DryOptions | None = None) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        if spec.random_init is not None:
            config = architecture_config(spec.random_init, spec.n_layers)
            self.tokenizer = AutoTokenizer.from_pretrained(embedded_default_dir())
            self.name = f"random:{spec.random_init}" + (f"@{spec.n_layers}L" if spec.n_layers else "")
        else:
            source = resolve_source(spec.name_or_path)
            config = AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code, revision=spec.revision)
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=spec.trust_remote_code,
                                                           revision=spec.revision)
            self.name = EMBEDDED_NAME if spec.name_or_path == "embedded" else spec.name_or_path
        with torch.device("meta"):   # shapes only: the parameter count, no memory
            model = AutoModelForCausalLM.from_config(config)
        self.parameters = sum(p.numel() for p in model.parameters())
        self.n_layers, self.hidden_size = config.num_hidden_layers, config.hidden_size
        self.fingerprint = f"dry:{self.name}"
        self.counts = Counts()

    def _count(self, group: TokenGroup) -> None:
        self.counts.groups += 1
        self.counts.requests += len(group.items)
        self.counts.prefix_tokens += len(group.prefix)
        self.counts.question_tokens += sum(len(it.suffix) + sum(map(len, it.continuations)) for it in group.items)

    def _score_group(self, group: TokenGroup, temperature: float) -> list[np.ndarray]:
        self._count(group)
        return [np.zeros(len(it.continuations)) for it in group.items]

    def _generate_group(self, group: TokenGroup, sampling: Decoding, seeds: list[int], stop_ids: frozenset[int],
                        layers: list[int] | None) -> tuple[list[list[int]], np.ndarray | None]:
        self._count(group)
        self.counts.generated_tokens += sampling.max_new_tokens * len(group.items)
        means = np.zeros((len(group.items), len(layers), self.hidden_size)) if layers else None
        return [[min(stop_ids)] for _ in group.items], means

    def _hidden_means(self, ids, spans, layers, plans) -> np.ndarray:
        raise NotImplementedError("the dry backend computes no hidden states (identity vectors need a model)")
