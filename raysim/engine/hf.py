"""The transformers backend: token-level scoring, generation and hidden means with prefix sharing.

Scoring layout (one respondent = one group = one row): the prefix runs once into a DynamicCache;
then the question suffixes and the option continuations of a micro-batch run packed into the row
after that cache, as a token trie: each node attends to the prefix and its own ancestors (a custom
4D mask), with explicit position ids so every token sees the positions, and hence the rotary phases
and injection noise, of its own unpadded prompt. Question turns that begin alike (a battery's stem
and options) share nodes, as options sharing leading tokens ("1" / "10") do; an option's last token
is never fed (only its probability is needed). After each micro-batch the cache is cropped back to
the prefixes.

Several respondents per forward: a wave of groups runs as one padded batch, one row per group, each
with its own plan (the hooks inject per row) and its own prefix, left-padded to the longest so the
trees start at one column; pad columns are masked out and positions skip them. How many rows a wave
takes is sized from the memory free when the replica first scores (:class:`HFOptions`), so a GPU
forward carries as many respondents as fit.
"""

from __future__ import annotations

import copy
import inspect
from functools import cached_property
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
    """Trie nodes (question and option tokens) packed into one row of a scoring forward after its
    prefix."""
    max_rows: int = 64
    """Most respondents (rows) in one scoring forward; 1 scores one respondent at a time."""
    memory_fraction: float = 0.5
    """Share of the memory free when the replica first scores (GPU memory on CUDA, RAM on CPU) that
    one scoring forward may take: its rows' prefix caches, activations, attention scores, logits."""
    generate_rows: int = 32
    """Rows decoded together in generation."""

    def __post_init__(self) -> None:
        for name in ("token_budget", "max_rows", "generate_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.memory_fraction, bool) or not isinstance(self.memory_fraction, (int, float)) \
                or not 0 < self.memory_fraction <= 1:
            raise ValueError(f"memory_fraction must be a number in (0, 1], got {self.memory_fraction!r}")


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
        self.read_rows = sorted({row for item in self.reads for reads in item for row, _ in reads})

    def ancestry(self) -> np.ndarray:
        """[N, N] bool: True where node i may attend to node j (itself and its ancestors)."""
        n = len(self.tokens)
        allowed = np.zeros((n, n), dtype=bool)
        for row, parent in enumerate(self.parents):   # parents precede children
            if parent >= 0:
                allowed[row] = allowed[parent]
            allowed[row, row] = True
        return allowed


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

    def _mask_for_model(self, allowed: np.ndarray) -> torch.Tensor:
        """[B, Q, K] bool (True: may attend) as the 4D mask the attention implementation reads."""
        allowed = torch.from_numpy(allowed)[:, None].to(self.device)
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
    def _prefix_cache(self, groups: Sequence[TokenGroup]):
        """The groups' prefixes run as one batch, row b under ``groups[b].plan``, left-padded to
        the longest (pad columns masked out, positions counted from each prefix's first token)."""
        from transformers import DynamicCache

        # No config: every layer keeps all its keys. A config would give sliding-window layers a
        # cache that drops keys beyond the window, so a packed tree longer than the window could
        # not be cropped back to the prefix.
        cache = DynamicCache()
        width = max(len(g.prefix) for g in groups)
        if not width:
            return cache
        ids = np.full((len(groups), width), self.tokenizer.pad_token_id, dtype=np.int64)
        pos = np.zeros((len(groups), width), dtype=np.int64)
        allowed = np.zeros((len(groups), width, width), dtype=bool)
        for b, group in enumerate(groups):
            pad = width - len(group.prefix)
            ids[b, pad:], pos[b, pad:] = group.prefix, np.arange(len(group.prefix))
            allowed[b, pad:, pad:] = np.tri(len(group.prefix), dtype=bool)
            # A pad attends to itself alone: a query with no key gives NaN states, which would
            # poison every score through the cached keys even where they are masked out.
            allowed[b, range(pad), range(pad)] = True
        padded = any(len(g.prefix) < width for g in groups)
        with self.injected([g.plan for g in groups]):
            self.model(input_ids=torch.from_numpy(ids).to(self.device), position_ids=torch.from_numpy(pos).to(self.device),
                       attention_mask=self._mask_for_model(allowed) if padded else None,
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

    def _trees(self, group: TokenGroup) -> list[_Tree]:
        return [_Tree(batch, len(group.prefix)) for batch in self._micro_batches(group.items)]

    def _score_group(self, group: TokenGroup, temperature: float) -> list[np.ndarray]:
        return self._score_wave([group], [self._trees(group)], temperature)[0]

    def _score_groups(self, groups: list[TokenGroup], temperature: float) -> list[list[np.ndarray]]:
        """Waves of groups, one row each, as many per forward as the memory budget and
        ``max_rows`` allow; groups with as many micro-batches and similar prefixes go together,
        so rows idle and pad little."""
        trees = [self._trees(g) for g in groups]
        pending = sorted(range(len(groups)), key=lambda i: (len(trees[i]), len(groups[i].prefix), i))
        out: list[list[np.ndarray]] = [[] for _ in groups]
        while pending:
            wave = self._wave(pending, groups, trees)
            scored = self._score_wave([groups[i] for i in wave], [trees[i] for i in wave], temperature)
            for i, logliks in zip(wave, scored):
                out[i] = logliks
            pending = pending[len(wave):]
        return out

    @cached_property
    def _memory_budget(self) -> float:
        """Bytes one scoring forward may take: ``memory_fraction`` of what is free at the first
        scoring call (after the weights are loaded)."""
        if self.device.type == "cuda":
            free = torch.cuda.mem_get_info(self.device)[0]
            free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        else:
            import psutil   # here only: a GPU machine's bare environment may lack it

            free = psutil.virtual_memory().available
        return self.options.memory_fraction * free

    def _row_bytes(self, prefix: int, nodes: int, reads: int) -> int:
        """An upper estimate of the memory one row of a scoring forward takes at its peak: the
        cached keys and values of prefix + tree, one layer's activations (MLP included), the
        attention scores of the unfused kernel, the mask, and the kept logits in the model's
        dtype plus their float32 log-softmax."""
        c = self.model.config
        elem = torch.finfo(self.loaded.dtype).bits // 8
        heads = c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        keys = prefix + nodes
        kv = 2 * c.num_hidden_layers * kv_heads * head_dim * elem * keys
        activations = nodes * ((4 * c.hidden_size + 3 * c.intermediate_size) * elem + 4 * c.hidden_size)
        attention = heads * max(nodes, prefix) * keys * (2 * 4 + 1)
        logits = reads * c.vocab_size * (elem + 2 * 4)
        return kv + activations + attention + logits

    def _wave(self, pending: list[int], groups: list[TokenGroup], trees: list[list[_Tree]]) -> list[int]:
        """The next groups of ``pending`` for one wave: at least one, at most ``max_rows``, and
        no more than the memory budget holds at the wave's widest prefix, tree and reads."""
        wave: list[int] = []
        prefix = nodes = reads = 0
        for i in pending[: self.options.max_rows]:
            p = max(prefix, len(groups[i].prefix))
            n = max([nodes] + [len(t.tokens) for t in trees[i]])
            r = max([reads] + [len(t.read_rows) for t in trees[i]])
            if wave and (len(wave) + 1) * self._row_bytes(p, n, r) > self._memory_budget:
                break
            wave.append(i)
            prefix, nodes, reads = p, n, r
        return wave

    @torch.inference_mode()
    def _score_wave(self, groups: list[TokenGroup], trees: list[list[_Tree]],
                    temperature: float) -> list[list[np.ndarray]]:
        """Per group, its items' continuation log-likelihoods: the prefixes once, then round k
        runs every group's k-th micro-batch tree as one padded batch (a group with fewer trees
        idles as a pad row)."""
        cache = self._prefix_cache(groups)
        width = max(len(g.prefix) for g in groups)
        rows = len(groups)
        out: list[list[np.ndarray]] = [[] for _ in groups]
        for k in range(max(len(t) for t in trees)):
            batch = [t[k] if k < len(t) else None for t in trees]
            n = max(len(t.tokens) for t in batch if t is not None)
            ids = np.full((rows, n), self.tokenizer.pad_token_id, dtype=np.int64)
            pos = np.zeros((rows, n), dtype=np.int64)
            allowed = np.zeros((rows, n, width + n), dtype=bool)
            allowed[:, range(n), width + np.arange(n)] = True   # pads attend to themselves only
            for b, (group, tree) in enumerate(zip(groups, batch)):
                if tree is None:
                    continue
                m = len(tree.tokens)
                self._check_window(max(tree.positions) + 1)
                ids[b, :m], pos[b, :m] = tree.tokens, tree.positions
                allowed[b, :m, width - len(group.prefix): width] = True
                allowed[b, :m, width: width + m] = tree.ancestry()
            keep = sorted({r for t in batch if t is not None for r in t.read_rows})
            where = {r: j for j, r in enumerate(keep)}
            with self.injected([g.plan for g in groups]):
                logits = self.model(
                    input_ids=torch.from_numpy(ids).to(self.device),
                    position_ids=torch.from_numpy(pos).to(self.device),
                    attention_mask=self._mask_for_model(allowed),
                    **{self._cache_kw: cache if width else None}, use_cache=bool(width),
                    logits_to_keep=torch.tensor(keep, device=self.device),
                ).logits
            if width:
                cache.crop(-n)   # back to the prefixes alone (negative: tokens to drop)
            out_rows, logliks = self._read_options(logits, batch, where, temperature)
            for b, ll in zip(out_rows, logliks):
                out[b].append(ll)
        return out

    def _read_options(self, logits: torch.Tensor, batch: list[_Tree | None], where: dict[int, int],
                      temperature: float) -> tuple[list[int], list[np.ndarray]]:
        """Per item of the round (in row order), its row and the summed log-probability of each
        option's continuation tokens under softmax(logits / temperature). Only the read tokens'
        values leave the device, gathered there."""
        b_idx, k_idx, t_idx, option = [], [], [], []
        items: list[tuple[int, int]] = []   # (row, its number of options)
        n = 0                               # options so far
        for b, tree in enumerate(batch):
            for item_reads in tree.reads if tree is not None else []:
                items.append((b, len(item_reads)))
                for reads in item_reads:
                    for r, t in reads:
                        b_idx.append(b)
                        k_idx.append(where[r])
                        t_idx.append(t)
                        option.append(n)
                    n += 1
        scaled = logits.float() / temperature
        at = [torch.tensor(x, device=self.device) for x in (b_idx, k_idx, t_idx)]
        read = scaled[at[0], at[1], at[2]] - torch.logsumexp(scaled, dim=-1)[at[0], at[1]]
        sums = np.bincount(option, weights=read.double().cpu().numpy(), minlength=n)
        ends = np.cumsum([k for _, k in items])
        return [b for b, _ in items], [sums[end - k: end] for (_, k), end in zip(items, ends)]

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def _generate_group(self, group: TokenGroup, sampling: Decoding, seeds: list[int], stop_ids: frozenset[int],
                        layers: list[int] | None) -> tuple[list[list[int]], np.ndarray | None]:
        prefix_cache = self._prefix_cache([group])
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
