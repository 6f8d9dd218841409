"""Golden tests of the vLLM engine against the HF engine on the embedded default (fp32, CPU).

Tolerances (tests/tolerances.py): option log-likelihoods and option log-probabilities within
LOGPROB_ATOL (2e-3 nats) of the HF engine's (vLLM's CPU kernels sum in another order, and how far
that moves them depends on the machine: 1.5e-4 nats seen at most, 7e-5 on a 2-core AVX-512
machine); token ids of greedy and seeded generations identical; hidden means within SCALE_RTOL of
each vector's own largest magnitude (1.6e-6 seen). Run in the vLLM environment (``make test``
builds it).
"""

import dataclasses

import numpy as np
import pytest
import torch

from raysim.engine.base import Option, Request, Decoding
from raysim.engine.hf import HFEngine
from raysim.engine.loading import load_model
from raysim.engine.plan import InjectionPlan, Term
from raysim.engine.vllm_engine import VLLMEngine, VLLMOptions
from tolerances import LOGPROB_ATOL, assert_close_to_scale, assert_distributions_close

LOGLIK_ATOL = LOGPROB_ATOL   # nats: an option's log-likelihood, as its log-probability

pytestmark = pytest.mark.timeout(900)

PROFILE = ("You are answering a survey as this person: a 47-year-old woman from Germany who lives in a "
           "large city, is married with two children, finished a university degree in engineering, works "
           "full time for a private company, describes her household as upper middle class, belongs to no "
           "religious denomination, attends no religious services, is interested in politics, places herself "
           "slightly left of centre, trusts most people she meets, and thinks that work is important but "
           "family and friends come first. Answer every question as she would, with the number only.")
QUESTIONS = ("How important is family in your life? 1 means very important, 4 not at all important.",
             "How much do you trust people you meet for the first time? 1 trust completely, 4 not at all.",
             "On a scale of 1 to 10, how satisfied are you with your life as a whole these days?")
OPTIONS = (tuple(Option(i, str(i)) for i in range(1, 5)),) * 2 + (tuple(Option(i, str(i)) for i in range(1, 11)),)


@pytest.fixture(scope="module")
def vllm_engine():
    return VLLMEngine(options=VLLMOptions(max_model_len=1024))


@pytest.fixture(scope="module")
def hf_engine():
    torch.set_num_threads(1)
    return HFEngine(load_model())


def _vec(seed: int, size: int = 576) -> torch.Tensor:
    return torch.randn(size, generator=torch.Generator().manual_seed(seed)) * 2


def _plans():
    """No plan; vectors at two layers; vectors, noise and a final vector; the same vectors with
    another noise seed (a per-question noise scope)."""
    noisy = InjectionPlan((Term(4, _vec(1)), Term(18, _vec(2), 1.5)), sigma=1.0, seed=11, final_vector=_vec(3))
    return [None, InjectionPlan((Term(8, _vec(4)), Term(12, _vec(5), 2.0))), noisy, noisy.with_seed(12)]


def _requests(plans, profile=PROFILE):
    prefix = ({"role": "system", "content": profile},)
    return [Request(prefix, q, opts, plan=plan, qid=f"q{j}", seed=100 * i + j)
            for i, plan in enumerate(plans) for j, (q, opts) in enumerate(zip(QUESTIONS, OPTIONS))]


def _assert_scores_close(got, want):
    for a, b in zip(got, want):
        assert a.codes == b.codes
        np.testing.assert_allclose(a.logliks, b.logliks, rtol=0, atol=LOGLIK_ATOL)
        assert_distributions_close(a.probs, b.probs)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_option_scores_equal_the_hf_engine_for_mixed_plans_in_one_batch(vllm_engine, hf_engine, temperature):
    requests = _requests(_plans())
    got = vllm_engine.score(requests, temperature)
    _assert_scores_close(got, hf_engine.score(requests, temperature))
    # The plans really act: each injected respondent's answers differ from the plain one's.
    plain = got[0].probs
    for k in (1, 2, 3):
        assert np.abs(got[3 * k].probs - plain).max() > 1e-3
    assert np.abs(got[6].probs - got[9].probs).max() > 1e-4    # same vectors, other noise seed


def test_scale_zero_plans_equal_stock_vllm(vllm_engine):
    """A plan of zero-scale terms without noise changes nothing: option log-likelihoods equal
    stock vLLM's own prompt log-probabilities (no raysim arguments on the request), greedy
    generations its own greedy decode."""
    from vllm import SamplingParams

    zero = InjectionPlan((Term(3, _vec(7), 0.0), Term(30, _vec(8), 0.0)))
    requests = _requests([zero])
    got = vllm_engine.score(requests)
    for req, res in zip(requests, got):
        full = vllm_engine.chat(req.prefix + req.question, add_generation_prompt=True)
        ids = vllm_engine.encode(full)
        want = []
        for option in req.options:
            cont = vllm_engine.continuation(full, option.text)
            out = vllm_engine.llm.generate({"prompt_token_ids": ids + cont},
                                           SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False),
                                           use_tqdm=False)[0]
            want.append(sum(out.prompt_logprobs[len(ids) + i][t].logprob for i, t in enumerate(cont)))
        np.testing.assert_allclose(res.logliks, want, rtol=0, atol=LOGLIK_ATOL)
    sampling = Decoding(temperature=0.0, max_new_tokens=10)
    for req, res in zip(requests, vllm_engine.generate(requests, sampling)):
        ids = vllm_engine.encode(vllm_engine.chat(req.prefix + req.question, add_generation_prompt=True))
        out = vllm_engine.llm.generate({"prompt_token_ids": ids},
                                       SamplingParams(max_tokens=10, temperature=0.0, detokenize=False,
                                                      stop_token_ids=sorted(vllm_engine.stop_ids)),
                                       use_tqdm=False)[0]
        assert res.token_ids == tuple(t for t in out.outputs[0].token_ids if t not in vllm_engine.stop_ids)


@pytest.mark.parametrize("sampling", [Decoding(temperature=0.0, max_new_tokens=12),
                                      Decoding(temperature=1.0, top_k=20, max_new_tokens=12),
                                      Decoding(temperature=0.9, top_k=0, top_p=0.9, max_new_tokens=12)],
                         ids=["greedy", "top_k", "top_p"])
def test_generations_equal_the_hf_engine(vllm_engine, hf_engine, sampling):
    requests = _requests(_plans())
    got = vllm_engine.generate(requests, sampling)
    want = hf_engine.generate(requests, sampling)
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert [g.code for g in got] == [w.code for w in want]
    if sampling.temperature > 0:
        assert len({g.text for g in got}) > 3


def test_a_request_alone_equals_it_in_a_mixed_batch(vllm_engine):
    requests = _requests(_plans())
    batch_scores = vllm_engine.score(requests)
    sampling = Decoding(temperature=1.0, top_k=20, max_new_tokens=10)
    batch_gen = vllm_engine.generate(requests, sampling)
    for k in (2, 7, 10):
        alone = vllm_engine.score([requests[k]])[0]
        np.testing.assert_allclose(alone.logliks, batch_scores[k].logliks, rtol=0, atol=LOGLIK_ATOL)
        assert vllm_engine.generate([requests[k]], sampling)[0].token_ids == batch_gen[k].token_ids


def test_calls_from_another_thread_work(vllm_engine):
    """Ray Data calls an actor's UDF from another thread than its constructor; a new thread's
    OpenMP default (all cores) must not reach vLLM's CPU attention, which checks it against the
    thread count it was started with."""
    import threading

    requests = _requests(_plans())[:3]
    here = vllm_engine.score(requests)
    there: list = []

    def call():
        torch._C.set_num_threads(vllm_engine._threads + 1)    # a thread with another OpenMP count
        there.append(vllm_engine.score(requests))
        there.append(torch.get_num_threads())

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert len(there) == 2, "the call in the other thread failed"
    _assert_scores_close(there[0], here)
    assert there[1] == vllm_engine._threads     # the call ran with the engine's thread count


def _context_at_block_end(engine, question, opts, block=128):
    """A profile whose prompt (context) ends one token before a KV block boundary: option tokens
    then fill that block, so scoring the same request again finds them in the prefix cache."""
    for extra in range(400):
        profile = PROFILE + " Note:" + " x" * extra
        req = Request(({"role": "system", "content": profile},), question, opts)
        n = len(engine.encode(engine.chat(req.prefix + req.question, add_generation_prompt=True)))
        if n % block == block - 1 and n > block:
            return req
    raise AssertionError("no profile length found")


def test_prefix_caching_on_and_off_give_the_same_results(vllm_engine):
    uncached = VLLMEngine(options=VLLMOptions(max_model_len=1024, enable_prefix_caching=False,
                                              max_num_batched_tokens=64, max_num_seqs=16))
    requests = _requests(_plans())
    sampling = Decoding(temperature=1.0, top_k=20, max_new_tokens=10)
    before = dict(vllm_engine.stats)
    first = vllm_engine.score(requests)
    second = vllm_engine.score(requests)      # the same prompts: prefixes come from the cache
    # Salted per plan: each respondent's prefix blocks are read back, by its own requests only.
    assert vllm_engine.stats["cached_tokens"] - before["cached_tokens"] > 0
    reference = uncached.score(requests)      # no cache, prompts prefilled in chunks of 64
    assert uncached.stats["cached_tokens"] == 0
    for got in (first, second):
        _assert_scores_close(got, reference)
    assert [g.token_ids for g in vllm_engine.generate(requests, sampling)] == \
        [g.token_ids for g in uncached.generate(requests, sampling)]
    # Option tokens found in the cache are scored again without it, not read as holes.
    req = _context_at_block_end(vllm_engine, QUESTIONS[2], OPTIONS[2])
    reruns = vllm_engine.stats["reruns"]
    once, again = vllm_engine.score([req])[0], vllm_engine.score([req])[0]
    assert vllm_engine.stats["reruns"] > reruns
    np.testing.assert_allclose(again.logliks, once.logliks, rtol=0, atol=LOGLIK_ATOL)
    np.testing.assert_allclose(once.logliks, uncached.score([req])[0].logliks, rtol=0, atol=LOGLIK_ATOL)


def test_hidden_means_equal_the_hf_engine(vllm_engine, hf_engine):
    plans = _plans()
    texts = ["The quick brown fox jumps over the lazy dog.", "Survey answers depend on who is asked.",
             "Family is very important.", "Trust is built slowly."]
    spans = [(0, 5), (2, 7), (1, 4), (0, 3)]
    layers = [0, 4, 18, vllm_engine.n_layers]
    got = vllm_engine.hidden_means(texts, spans, layers, plans=plans)
    want = hf_engine.hidden_means(texts, spans, layers, plans=plans)
    assert_close_to_scale(got, want, axis=-1)   # per text and layer: a massive activation sets no other's scale
    with pytest.raises(ValueError, match="out of range"):
        vllm_engine.hidden_means(texts[:1], spans[:1], [vllm_engine.n_layers + 1])


def test_generation_means_equal_the_hf_engine(vllm_engine, hf_engine):
    requests = _requests(_plans())
    sampling = Decoding(temperature=1.0, top_k=20, max_new_tokens=6)   # some answers hit the cap
    got, got_means = vllm_engine.generate_with_means(requests, sampling, [0, 9, 30])
    want, want_means = hf_engine.generate_with_means(requests, sampling, [0, 9, 30])
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert any(g.n_tokens == 6 for g in got)
    assert_close_to_scale(got_means, want_means, axis=-1)   # per request and layer


def test_vectors_upload_once_per_replica(vllm_engine):
    noisy = _plans()[2]
    plans = [noisy.with_seed(s) for s in range(5)]          # one vector set, five noise seeds
    before = vllm_engine.stats["vector_uploads"]
    vllm_engine.score(_requests(plans)[:5])
    assert vllm_engine.stats["vector_uploads"] - before <= 1
    vllm_engine.score(_requests(plans)[5:])
    assert vllm_engine.stats["vector_uploads"] - before <= 1
    # A small residency limit evicts the oldest sets; evicted sets are sent again when needed.
    small = dataclasses.replace(vllm_engine.options, max_resident_vectors=1)
    vllm_engine.options, options = small, vllm_engine.options
    try:
        others = [InjectionPlan((Term(6, _vec(20 + k)),)) for k in range(3)]
        before = vllm_engine.stats["vector_uploads"]
        for plan in others + others[:1]:
            vllm_engine.score(_requests([plan])[:1])
        assert len(vllm_engine._resident) == 1
        assert vllm_engine.stats["vector_uploads"] - before == 4      # the first one sent again
        plain = vllm_engine.score(_requests([others[0]])[:1])[0]
        assert vllm_engine.stats["vector_uploads"] - before == 4      # still resident
    finally:
        vllm_engine.options = options
    # The second scoring finds the prompt's blocks in the prefix cache (same plan, same salt) and
    # computes fewer tokens: another kernel path, hence the cross-path tolerance.
    np.testing.assert_allclose(plain.logliks, vllm_engine.score(_requests([others[0]])[:1])[0].logliks,
                               rtol=0, atol=LOGLIK_ATOL)


def test_bad_plans_and_models_are_refused(vllm_engine):
    from raysim.engine.loading import ModelSpec
    from raysim.engine.plan import PlanError

    with pytest.raises(PlanError, match="layer 31 out of range"):
        vllm_engine.score(_requests([InjectionPlan((Term(31, _vec(1)),))])[:1])
    with pytest.raises(PlanError, match="size 100"):
        vllm_engine.score(_requests([InjectionPlan((Term(3, _vec(1, 100)),))])[:1])
    with pytest.raises(ValueError, match="random_init"):
        VLLMEngine(ModelSpec(random_init="tiny-llama"))
    with pytest.raises(ValueError, match="installed vLLM runs on 'cpu'"):
        VLLMEngine(ModelSpec(device="cuda"))
