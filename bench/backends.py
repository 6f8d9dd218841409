"""HF engine vs vLLM engine, measured side by side in one run (issue 8).

Same model, same respondents' prompts (synthetic WVS-7 respondents' PE profiles as the system
turn, questions spread over the categories), same PSII-shaped plans (13 attribute terms, σ from
the preset, a noise seed per respondent), in both answer modes:

  logprob      exact option probabilities (HF: prefix once + packed question trie; vLLM: one
               request per option, prefix blocks from the salted prefix cache)
  generation   sampled answers (temperature 0.7, top-k 20, 5 new tokens; counter-based, so both
               engines draw the same tokens from the same logits)

Prints respondent-questions per second for each engine and mode, the vLLM/HF ratios, and how far
the two engines' answers agree. Runs where vLLM is installed (``.venv-vllm``, made by
``make test``):

    .venv-vllm/bin/python bench/backends.py                    # embedded default, fp32, CPU
    python bench/backends.py --model /models/Qwen2.5-7B-Instruct --preset qwen2.5-7b \\
        --device cuda --dtype bfloat16 --respondents 64 --questions 0   # a GPU node

On one GPU both replicas share its memory: vLLM takes ``--gpu-memory-utilization`` of the whole
device for weights and KV cache, after the HF replica has loaded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from engine_throughput import build_requests

from raysim.engine.backends import EngineSpec, make_engine
from raysim.engine.base import Decoding
from raysim.engine.loading import ModelSpec, model_preset, preset_for


def timed(fn, requests) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = fn(requests)
    return len(requests) / (time.perf_counter() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded", help="model directory or 'embedded'")
    ap.add_argument("--preset", default=None, help="model preset for the PSII-shaped plans (default: the model's)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--respondents", type=int, default=2)
    ap.add_argument("--questions", type=int, default=12, help="questions per respondent (0: all 259)")
    ap.add_argument("--max-new-tokens", type=int, default=5)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    spec = ModelSpec(a.model, dtype=a.dtype, device=a.device)
    preset = model_preset(a.preset or preset_for(spec) or "smollm2-135m")
    hf = make_engine(spec)
    vllm = make_engine(spec, EngineSpec("vllm", {"max_model_len": a.max_model_len,
                                                 "gpu_memory_utilization": a.gpu_memory_utilization}))
    qids, batteries, per_respondent = build_requests(hf.hidden_size, preset, a.respondents, a.questions, a.seed)
    requests = [r for rs in per_respondent for r in rs]
    sampling = Decoding(temperature=0.7, top_k=20, max_new_tokens=a.max_new_tokens)

    rates, answers = {}, {}
    for name, engine in (("hf", hf), ("vllm", vllm)):
        engine.score(requests[:2])                      # warm-up outside the timings
        engine.generate(requests[:2], sampling)
        rates[name, "logprob"], scored = timed(engine.score, requests)
        rates[name, "generation"], generated = timed(lambda rs: engine.generate(rs, sampling), requests)
        answers[name] = (scored, generated)

    print(f"model: {a.model} ({a.dtype}, {a.device}), {hf.n_layers} layers, hidden {hf.hidden_size}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"requests: {a.respondents} respondent(s) x {len(qids)} questions "
          f"({sum(q in batteries for q in qids)} in batteries) = {len(requests)}")
    for mode in ("logprob", "generation"):
        print(f"{mode:10s}  hf {rates['hf', mode]:8.2f} resp-q/s   vllm {rates['vllm', mode]:8.2f} resp-q/s   "
              f"vllm/hf {rates['vllm', mode] / rates['hf', mode]:.2f}")
    (hf_scored, hf_gen), (v_scored, v_gen) = answers["hf"], answers["vllm"]
    dp = max(float(np.abs(x.probs - y.probs).max()) for x, y in zip(hf_scored, v_scored))
    same = np.mean([x.token_ids == y.token_ids for x, y in zip(hf_gen, v_gen)])
    s = vllm.stats
    print(f"agreement: max |Δ option probability| {dp:.1e}; identical generations {same:.0%}")
    print(f"vllm prefix cache: {s['cached_tokens']} of {s['prompt_tokens']} prompt tokens read from it "
          f"({s['cached_tokens'] / max(s['prompt_tokens'], 1):.0%}); {s['reruns']} reruns")
    print(f"ratio: {rates['vllm', 'logprob'] / rates['hf', 'logprob']:.2f}")


if __name__ == "__main__":
    main()
