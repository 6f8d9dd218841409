"""The transformers backend: token-level scoring, generation and hidden means with prefix sharing.

Scoring layout (one respondent = one group): the prefix runs once into a DynamicCache; then the
question suffixes and the option continuations of a micro-batch run packed into ONE row after that
cache, as a token trie: each node attends to the prefix and its own ancestors (a custom 4D mask),
with explicit position ids so every token sees the positions, and hence the rotary phases and
injection noise, of its own unpadded prompt. Question turns that begin alike (a battery's stem and
options) share nodes, as options sharing leading tokens ("1" / "10") do; an option's last token is
never fed (only its probability is needed). After each micro-batch the cache is cropped back to
the prefix.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from raysim.engine.base import LM, Decoding, TokenGroup, TokenItem
from raysim.engine.hooks import InjectionHooks
from raysim.engine.loading import LoadedModel, decoder_layers
from raysim.engine.noise import as_seed
from raysim.engine.plan import InjectionPlan
from raysim.engine.sampling import sample


@dataclass(frozen=True)
class HFOptions:
    """HF engine settings a run config may give under ``engine:`` (``{name: hf, token_budget: 512}``).
    What the model is (dtype, device) is the :class:`~raysim.engine.loading.ModelSpec`'s."""

    token_budget: int = 1024
    """Trie nodes (question and option tokens) packed into one scoring forward after a prefix."""
    generate_rows: int = 32
    """Rows decoded together in generation."""

    def __post_init__(self) -> None:
        for name in ("token_budget", "generate_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _paths(item: TokenItem) -> list[tuple[int, ...]]:
    """The token paths (trie keys) an item feeds: every prefix of its suffix, then every proper
    prefix of each option continuation after it (an option's last token is never fed: only its
    probability is read)."""
    suffix = tuple(item.suffix)
    keys = [suffix[: k + 1] for k in range(len(suffix))]
    keys += [suffix + tuple(c[: i + 1]) for c in item.continuations for i in range(len(c) - 1)]
    return keys


class _Tree:
    """A micro-batch of items packed into one sequence as a token trie: items whose question
    turns begin alike (a battery's stem and options) share those tokens' nodes, as options
    sharing leading tokens ("1" / "10") do. Each node attends to the cached prefix and its own
    ancestors only, at the position it has in its own unpadded prompt, so every read equals a
    separate forward of that full prompt."""

    def __init__(self, items: list[TokenItem], start: int) -> None:
        tokens: list[int] = []
        positions: list[int] = []
        parents: list[int] = []          # -1: attends only to the cached prefix
        nodes: dict[tuple[int, ...], int] = {}
        self.reads: list[list[list[tuple[int, int]]]] = []   # item → option → (row, token)

        def node(path: tuple[int, ...]) -> int:
            """The row of the trie node for ``path``, adding it and any missing ancestors."""
            k = len(path)
            while k and path[:k] not in nodes:
                k -= 1
            parent = nodes[path[:k]] if k else -1
            for j in range(k + 1, len(path) + 1):
                nodes[path[:j]] = len(tokens)
                tokens.append(path[j - 1])
                positions.append(start + j - 1)
                parents.append(parent)
                parent = nodes[path[:j]]
            return parent

        for item in items:
            suffix = tuple(item.suffix)
            item_reads = []
            for cont in item.continuations:
                reads = [(node(suffix + tuple(cont[:i])), tok) for i, tok in enumerate(cont)]
                item_reads.append(reads)
            node(suffix)   # generation-free items (no continuations) still feed their suffix
            self.reads.append(item_reads)
        self.tokens, self.positions, self.parents = tokens, positions, parents

    def mask(self, prefix_len: int) -> torch.Tensor:
        """[N, prefix_len + N] bool: True where a token may attend."""
        n = len(self.tokens)
        allowed = np.zeros((n, prefix_len + n), dtype=bool)
        allowed[:, :prefix_len] = True
        for row, parent in enumerate(self.parents):   # parents precede children
            if parent >= 0:
                allowed[row, prefix_len:] = allowed[parent, prefix_len:]
            allowed[row, prefix_len + row] = True
        return torch.from_numpy(allowed)


def _sliding_window(config) -> int | None:
    """The attention window of the model's sliding-window layers; None when every layer attends
    to the whole sequence (Llama; Qwen2 without use_sliding_window; Mistral with no window)."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if window is None or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


class HFEngine(LM):
    """One transformers model replica behind the :class:`LM` interface."""

    def __init__(self, loaded: LoadedModel, options: HFOptions = HFOptions()) -> None:
        attn = loaded.model.config._attn_implementation
        if attn not in ("sdpa", "eager"):
            # The packed tree needs an arbitrary 4D mask, which other kernels would silently ignore.
            raise ValueError(f"HFEngine needs attn_implementation 'sdpa' or 'eager', model uses {attn!r}")
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.name, self.fingerprint = loaded.name, loaded.fingerprint
        self.n_layers, self.hidden_size = loaded.n_layers, loaded.hidden_size
        self.options = options
        self.hooks = InjectionHooks(self.model, loaded.n_layers, loaded.hidden_size)
        self.window = _sliding_window(self.model.config)
        # transformers renamed forward's ``past_key_values`` to ``cache`` (the old name warns on
        # every call); older releases, e.g. those vLLM pins, know only the old one.
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    def injected(self, plans: Sequence[InjectionPlan | None]):
        """Context: forwards of ``self.model`` inside it get ``plans[b]`` at batch row b (one plan:
        every row). A plan vector that requires grad receives gradients through the hooks (how
        raysim.identity.language trains language vectors)."""
        return self.hooks.active(plans, self.device, self.loaded.dtype)

    def _mask_for_model(self, allowed: torch.Tensor) -> torch.Tensor:
        allowed = allowed[None, None].to(self.device)
        if self.model.config._attn_implementation == "eager":
            # Eager attention adds the mask to the scores.
            zero = torch.zeros((), dtype=self.loaded.dtype, device=self.device)
            return torch.where(allowed, zero, torch.finfo(self.loaded.dtype).min)
        return allowed

    def _check_window(self, length: int) -> None:
        """Sliding-window attention equals full attention while a sequence fits in the window;
        beyond it the packed tree's masks (and the pad gaps of generation) would need the
        window, which the engine does not model."""
        if self.window is not None and length > self.window:
            raise ValueError(f"a sequence of {length} positions exceeds the model's sliding attention "
                             f"window of {self.window}; HFEngine supports sliding-window models only "
                             "for sequences within the window")

    @torch.inference_mode()
    def _prefix_cache(self, group: TokenGroup):
        from transformers import DynamicCache

        # No config: every layer keeps all its keys. A config would give sliding-window layers a
        # cache that drops keys beyond the window, so a packed tree longer than the window could
        # not be cropped back to the prefix.
        cache = DynamicCache()
        if group.prefix:
            ids = torch.tensor([group.prefix], device=self.device)
            with self.injected([group.plan]):
                self.model(input_ids=ids, position_ids=torch.arange(len(group.prefix), device=self.device)[None],
                           **{self._cache_kw: cache}, use_cache=True, logits_to_keep=1)
        return cache

    # ------------------------------------------------------------------ scoring

    def _micro_batches(self, items: list[TokenItem]) -> list[list[TokenItem]]:
        """Consecutive items packed while their trie stays within the token budget (an item
        costs only the nodes it does not share with the batch so far)."""
        batches: list[list[TokenItem]] = []
        seen: set[tuple[int, ...]] = set()
        for item in items:
            paths = _paths(item)
            new = [k for k in paths if k not in seen]
            if batches and len(seen) + len(new) <= self.options.token_budget:
                batches[-1].append(item)
                seen.update(new)
            else:
                batches.append([item])
                seen = set(paths)
        return batches

    @torch.inference_mode()
    def _score_group(self, group: TokenGroup, temperature: float) -> list[np.ndarray]:
        cache = self._prefix_cache(group)
        p = len(group.prefix)
        out: list[np.ndarray] = []
        for batch in self._micro_batches(group.items):
            tree = _Tree(batch, p)
            self._check_window(max(tree.positions) + 1)
            rows = sorted({row for item in tree.reads for reads in item for row, _ in reads})
            where = {row: k for k, row in enumerate(rows)}
            with self.injected([group.plan]):
                logits = self.model(
                    input_ids=torch.tensor([tree.tokens], device=self.device),
                    position_ids=torch.tensor([tree.positions], device=self.device),
                    attention_mask=self._mask_for_model(tree.mask(p)),
                    **{self._cache_kw: cache if p else None}, use_cache=bool(p),
                    logits_to_keep=torch.tensor(rows, device=self.device),
                ).logits[0]
            if p:
                cache.crop(-len(tree.tokens))   # back to the prefix alone (negative: tokens to drop)
            logprobs = torch.log_softmax(logits.float() / temperature, dim=-1).cpu()
            for item_reads in tree.reads:
                out.append(np.array([sum(float(logprobs[where[r], t]) for r, t in reads)
                                     for reads in item_reads]))
        return out

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def _generate_group(self, group: TokenGroup, sampling: Decoding, seeds: list[int], stop_ids: frozenset[int],
                        layers: list[int] | None) -> tuple[list[list[int]], np.ndarray | None]:
        prefix_cache = self._prefix_cache(group)
        p = len(group.prefix)
        results: list[list[int]] = []
        means: list[np.ndarray] = []
        seed_of = dict(zip((item.index for item in group.items), seeds))
        for start in range(0, len(group.items), self.options.generate_rows):
            batch = group.items[start: start + self.options.generate_rows]
            ids, batch_means = self._generate_batch(batch, [seed_of[i.index] for i in batch], group,
                                                    copy.deepcopy(prefix_cache), p, sampling, stop_ids, layers)
            results.extend(ids)
            if layers is not None:
                means.append(batch_means)
        return results, (np.concatenate(means) if layers is not None else None)

    def _capture(self, layers: list[int], sums: torch.Tensor, live: list[torch.Tensor]):
        """Hooks adding each live row's last-position state at ``layers`` into ``sums`` [rows, L, H]
        (registered after the injection hooks, so they read the injected states); ``live[0]`` is
        the [rows] float mask of rows whose fed token is a response token (all-zero: no capture)."""
        modules = [(0, self.model.get_input_embeddings())] + [
            (i + 1, m) for i, m in enumerate(decoder_layers(self.model))]
        where = {layer: j for j, layer in enumerate(layers)}

        def keep(j):
            def hook(module, args, output):
                hidden = output[0] if isinstance(output, tuple) else output
                sums[:, j] += hidden[:, -1].float() * live[0][:, None]
            return hook

        return [m.register_forward_hook(keep(where[l])) for l, m in modules if l in where]

    def _generate_batch(self, batch, seeds, group, cache, p, sampling, stop_ids,
                        layers: list[int] | None = None) -> tuple[list[list[int]], np.ndarray | None]:
        rows = len(batch)
        width = max(len(item.suffix) for item in batch)
        self._check_window(p + width + sampling.max_new_tokens)
        dev = self.device
        # Suffixes right-aligned after the prefix; the pad gap in between is masked out and
        # positions skip it, so every row sees its own unpadded prompt.
        ids = torch.full((rows, width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, p + width), dtype=torch.long)
        mask[:, :p] = 1
        pos = torch.full((rows, width), p, dtype=torch.long)
        for r, item in enumerate(batch):
            s = len(item.suffix)
            ids[r, width - s:] = torch.tensor(item.suffix)
            mask[r, p + width - s:] = 1
            pos[r, width - s:] = torch.arange(p, p + s)
        if p:
            cache.batch_repeat_interleave(rows)
        seed_t = torch.tensor([as_seed(s) for s in seeds], dtype=torch.int64, device=dev)
        out = [[] for _ in range(rows)]
        done = torch.zeros(rows, dtype=torch.bool)
        ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
        # Response means are read while decoding: the token sampled at step k is fed at step k+1,
        # so its states come with that forward (step 0 feeds the prompt: nothing to read).
        live = [torch.zeros(rows, device=dev)]
        sums = torch.zeros((rows, len(layers or []), self.loaded.hidden_size), device=dev)
        handles = self._capture(layers, sums, live) if layers else []
        try:
            with self.injected([group.plan]):
                for step in range(sampling.max_new_tokens):
                    logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                        **{self._cache_kw: cache}, use_cache=True, logits_to_keep=1).logits[:, -1]
                    token = sample(logits.float(), sampling.temperature, sampling.top_k, sampling.top_p,
                                   seed_t, torch.full_like(seed_t, step)).cpu()
                    fed = ~done   # rows whose sampled token is part of their answer
                    for r in range(rows):
                        if not done[r]:
                            out[r].append(int(token[r]))
                            done[r] = int(token[r]) in stop_ids
                    live[0] = (fed & ~done).float().to(dev)   # the next forward feeds response tokens
                    if bool(done.all()) or (step + 1 == sampling.max_new_tokens and not layers):
                        break
                    ids = token[:, None].to(dev)
                    mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=dev)], dim=1)
                    pos = pos[:, -1:] + 1
                else:
                    # Length-capped rows: their last token has not been fed yet; one forward reads it.
                    self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **{self._cache_kw: cache},
                               use_cache=True, logits_to_keep=1)
        finally:
            for h in handles:
                h.remove()
        if not layers:
            return out, None
        counts = torch.tensor([len([t for t in o if t not in stop_ids]) for o in out], dtype=torch.float32)
        means = sums.cpu() / counts.clamp(min=1)[:, None, None]
        return out, means.numpy()

    # ------------------------------------------------------------------ hidden means

    @torch.inference_mode()
    def _hidden_means(self, ids: list[list[int]], spans: list[tuple[int, int]], layers: list[int],
                      plans=None) -> np.ndarray:
        width = max(len(x) for x in ids)
        batch = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):   # right padding: token k of a text stays at column k
            batch[r, : len(x)] = torch.tensor(x)
            mask[r, : len(x)] = 1
        captured: dict[int, torch.Tensor] = {}

        def keep(layer):
            def hook(module, args, output):
                captured[layer] = (output[0] if isinstance(output, tuple) else output).float()
            return hook

        # Capture at the same points the injection hooks write to: layer ℓ = block ℓ−1's output.
        modules = [(0, self.model.get_input_embeddings())] + [
            (i + 1, m) for i, m in enumerate(decoder_layers(self.model))]
        handles = [m.register_forward_hook(keep(l)) for l, m in modules if l in set(layers)]
        try:
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            # The injection hooks were registered first, so the states captured include injection.
            with self.injected(plans if plans is not None else [None] * len(ids)):
                self.model(input_ids=batch.to(self.device), attention_mask=mask.to(self.device),
                           position_ids=pos.to(self.device), use_cache=False, logits_to_keep=1)
        finally:
            for h in handles:
                h.remove()
        out = np.zeros((len(ids), len(layers), self.loaded.hidden_size), dtype=np.float32)
        for r, (a, b) in enumerate(spans):
            for j, layer in enumerate(layers):
                out[r, j] = captured[layer][r, a:b].mean(dim=0).cpu().numpy()
        return out
