"""Engine throughput, measured side by side in one run (issue 3).

(a) the PSII reference's way: one prompt at a time through HF ``generate`` (5 new tokens,
    temperature 0.7, top-k 20), injection hooks on;
(b) the engine in logprob mode (exact option probabilities) with prefix sharing;
(c) the engine in generation mode (same sampling, 5 new tokens) with prefix sharing;
(d) with several respondents, (b) again with one respondent per forward (``max_rows`` 1), to show
    what packing respondents into one forward gives.
Same model, same respondents' prompts, same injection plans. Prints respondent-questions per
second for each and the ratios b/a and c/a; the last line is ``ratio: <b/a>``.

The plans are PSII-shaped (one term per demographic attribute at its preset layer group, σ from
the preset, a per-respondent noise seed) with random directions of a realistic norm, since the
vector library is built later; injection cost does not depend on the directions.

    python bench/engine_throughput.py                       # embedded default, CPU, fp32
    python bench/engine_throughput.py --random-init qwen2.5-7b --device cuda --dtype bfloat16 \
        --respondents 64 --peak-tflops 989                  # GPU: also the fraction of dense peak
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from raysim.engine.backends import EngineSpec, make_engine
from raysim.engine.base import Decoding
from raysim.engine.hf import HFEngine
from raysim.engine.loading import ModelSpec, model_preset
from raysim.engine.plan import InjectionPlan, Term
from raysim.methods.prompts import persona_prefix, request
from raysim.survey.batteries import battery_items
from raysim.survey.codebook import load_codebook
from raysim.survey.profile import render_profile
from raysim.survey.sampling import questions_evenly
from raysim.survey.synthetic import synth_frames


def psii_like_plan(hidden_size: int, preset: dict, seed: int, rng: np.random.Generator) -> InjectionPlan:
    psii = preset["psii"]
    terms = []
    for group, attrs in psii["attribute_groups"].items():
        layer = psii["layers"][group]
        for _ in attrs:
            v = rng.standard_normal(hidden_size).astype(np.float32)
            terms.append(Term(layer, v / np.linalg.norm(v), scale=psii["vector_scale"]))
    return InjectionPlan(tuple(terms), sigma=psii["sigma"], seed=seed)


def build_requests(hidden_size: int, preset: dict, respondents: int, questions: int, seed: int):
    """Per synthetic respondent, its requests for ``questions`` questions spread over the
    categories (0: all): its PE profile as the system turn, battery items as stem / options /
    sub-item, a PSII-shaped plan with its own noise seed."""
    codebook = load_codebook("wvs7")
    qids = questions_evenly(codebook, questions)
    batteries = battery_items(codebook)
    people = next(synth_frames(respondents, seed=seed))
    rng = np.random.default_rng(seed)
    per_respondent = []
    for row in people.head(respondents).to_dict("records"):
        prefix = persona_prefix(render_profile(row, codebook))
        plan = psii_like_plan(hidden_size, preset, seed=int(row["respondent_id"]), rng=rng)
        per_respondent.append([request(prefix, codebook[q], plan, seed=int(row["respondent_id"]),
                                       battery=batteries.get(q)) for q in qids])
    return qids, batteries, per_respondent


def reference_rate(engine: HFEngine, requests, sampling: Decoding) -> float:
    """One prompt at a time through ``generate`` with the same hooks and plans."""
    model, tok = engine.model, engine.tokenizer
    t0 = time.perf_counter()
    for r in requests:
        ids = torch.tensor([engine.encode(engine.chat(r.prefix + r.question, add_generation_prompt=True))],
                           device=engine.device)
        with engine.injected([r.plan]), torch.inference_mode():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=sampling.max_new_tokens,
                           do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k,
                           pad_token_id=tok.pad_token_id)
    return len(requests) / (time.perf_counter() - t0)


def timed_rate(fn, requests) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = fn(requests)
    return len(requests) / (time.perf_counter() - t0), out


def tokens_fed(engine: HFEngine, requests) -> int:
    """Tokens the logprob path runs through the model: each respondent's prefix once, then every
    question turn and option continuation (an upper bound: shared option tokens count once)."""
    n = 0
    for prefix in {r.prefix for r in requests}:
        n += len(engine.encode(engine.chat(prefix, add_generation_prompt=False)))
    for r in requests:
        full = engine.chat(r.prefix + r.question, add_generation_prompt=True)
        n += len(engine.encode(full)) - len(engine.encode(engine.chat(r.prefix, add_generation_prompt=False)))
        n += sum(len(engine.continuation(full, o.text)) for o in r.options)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded", help="model path or 'embedded'")
    ap.add_argument("--random-init", default=None, help="architecture preset, e.g. qwen2.5-7b")
    ap.add_argument("--preset", default=None, help="PSII preset (default: smollm2-135m or the random-init one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--respondents", type=int, default=1, help="respondents for the engine runs")
    ap.add_argument("--questions", type=int, default=0,
                    help="questions per respondent, spread over the categories (0: the whole questionnaire)")
    ap.add_argument("--ref-every", type=int, default=4,
                    help="the reference times every k-th of the first respondent's questions "
                         "(a systematic sample of the same prompts: its rate is per question)")
    ap.add_argument("--token-budget", type=int, default=1024)
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense peak of the device, for the fraction")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    engine = make_engine(ModelSpec(a.model, dtype=a.dtype, device=a.device, random_init=a.random_init),
                         EngineSpec("hf", {"token_budget": a.token_budget}))
    preset = model_preset(a.preset or a.random_init or "smollm2-135m")
    qids, batteries, per_respondent = build_requests(engine.hidden_size, preset, a.respondents, a.questions, a.seed)
    engine_reqs = [r for rs in per_respondent for r in rs]
    ref_reqs = per_respondent[0][:: a.ref_every]
    sampling = Decoding(temperature=0.7, top_k=20, max_new_tokens=5)

    # Warm-up (first-call allocations, tokenizer caches) outside the timings.
    engine.score(engine_reqs[:2])
    reference_rate(engine, ref_reqs[:1], sampling)

    ref = reference_rate(engine, ref_reqs, sampling)
    score_rate, scored = timed_rate(engine.score, engine_reqs)
    gen_rate, generated = timed_rate(lambda rs: engine.generate(rs, sampling), engine_reqs)
    single_rate = None
    if a.respondents > 1:
        batched_options, engine.options = engine.options, dataclasses.replace(engine.options, max_rows=1)
        single_rate, _ = timed_rate(engine.score, engine_reqs)
        engine.options = batched_options

    print(f"model: {engine.name} ({a.dtype}, {a.device}), {engine.n_layers} layers, hidden {engine.hidden_size}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"questions: {len(qids)} per respondent, {sum(q in batteries for q in qids)} of them in batteries; "
          f"engine: {a.respondents} respondent(s) x all of them; reference: every {a.ref_every}th question "
          f"of the first ({len(ref_reqs)} prompts)")
    print(f"(a) reference (one prompt at a time, HF generate, 5 new tokens, hooks on): {ref:8.2f} resp-q/s")
    print(f"(b) engine logprob, prefix sharing:                                  {score_rate:8.2f} resp-q/s")
    print(f"(c) engine generation, prefix sharing (5 new tokens):                {gen_rate:8.2f} resp-q/s")
    if single_rate:
        print(f"(d) engine logprob, one respondent per forward:                      {single_rate:8.2f} resp-q/s"
              f"  (b/d: {score_rate / single_rate:.2f})")
    valid = sum(g.valid for g in generated) / len(generated)
    print(f"generation: {valid:.0%} of answers parsed to an option; logprob rows: {len(scored)}")
    if a.peak_tflops:
        params = sum(p.numel() for n, p in engine.model.named_parameters() if "embed" not in n)
        flops = 2 * params * tokens_fed(engine, engine_reqs) * score_rate / len(engine_reqs)
        print(f"logprob mode: {flops / 1e12:.1f} TFLOP/s = {flops / 1e12 / a.peak_tflops:.1%} of "
              f"{a.peak_tflops:g} TFLOP/s dense peak (2·params·tokens; attention not counted)")
    print(f"ratio c/a: {gen_rate / ref:.2f}")
    print(f"ratio: {score_rate / ref:.2f}")


if __name__ == "__main__":
    main()
