"""The HF engine on the embedded default (fp32, CPU): exactness, batch invariance, injection."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from engine_helpers import brute_force
from tolerances import SCALE_RTOL, assert_close_to_scale, assert_distributions_close
from raysim.engine.base import Option, Request, Decoding
from raysim.engine.hf import HFEngine
from raysim.engine.loading import ModelSpec, load_model
from raysim.engine.plan import InjectionPlan, Term

SCALE = tuple(Option(c, str(c)) for c in range(1, 11))
ZERO_BASED = tuple(Option(c, str(c)) for c in range(0, 11))
LABELS = (Option(1, "Very important"), Option(2, "Rather important"),
          Option(3, "Not very important"), Option(4, "Not at all important"))
PREFIX = ({"role": "system", "content": "You are a 45-year-old man from Norway with a university "
                                        "degree. Answer the survey question with the answer only."},)
Q_FAMILY = "How important is family in your life? Answer with a number from 1 (not at all) to 10 (very)."
Q_TAX = "Is cheating on taxes justifiable? 1 = never, 10 = always."
Q_WORK = "How important is work in your life? Very important, Rather important, Not very important or Not at all important?"


@pytest.fixture(scope="module")
def engine():
    return HFEngine(load_model(ModelSpec()))


def _plan(engine, seed=0, sigma=0.0, scale=1.0, layers=(10, 20)):
    gen = torch.Generator().manual_seed(1234)
    terms = tuple(Term(l, torch.randn(engine.loaded.hidden_size, generator=gen), scale) for l in layers)
    return InjectionPlan(terms, sigma=sigma, seed=seed)


def test_end_of_answer_and_multitoken_options(engine):
    assert engine.end_of_answer == "<|im_end|>"
    full = engine.chat(PREFIX + ({"role": "user", "content": Q_FAMILY},), True)
    assert engine.continuation(full, "10")[-1] == engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert len(engine.continuation(full, "10")) == 3   # "1", "0", end of turn: not a first-token proxy


def test_exact_scoring_equals_brute_force(engine):
    for options in (SCALE, ZERO_BASED):
        req = Request(PREFIX, Q_FAMILY, options)
        got = engine.score([req])[0]
        assert got.codes == tuple(o.code for o in options)
        assert abs(got.probs.sum() - 1) < 1e-9
        assert_distributions_close(got.probs, brute_force(engine, req))


def test_scoring_at_a_temperature_equals_brute_force(engine):
    reqs = [Request(PREFIX, Q_FAMILY, SCALE), Request(PREFIX, Q_WORK, LABELS)]   # multi-token answers too
    cold = engine.score(reqs)
    hot = engine.score(reqs, temperature=2.0)
    for req, h in zip(reqs, hot):
        assert_distributions_close(h.probs, brute_force(engine, req, temperature=2.0))
    # Answers of one or two tokens: a hotter sampler spreads them. (Not a law for multi-token
    # labels: each option's every token, end of turn included, is flattened separately.)
    entropy = lambda p: float(-(p * np.log(p)).sum())   # noqa: E731
    assert entropy(hot[0].probs) > entropy(cold[0].probs)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        engine.score(reqs, temperature=0.0)


def test_prefix_shared_equals_separate_prompts_with_noise(engine):
    plan = _plan(engine, seed=5, sigma=0.5, scale=2.0)
    reqs = [Request(PREFIX, q, opts, plan) for q, opts in ((Q_FAMILY, SCALE), (Q_TAX, SCALE), (Q_WORK, LABELS))]
    shared = engine.score(reqs)
    for req, got in zip(reqs, shared):
        assert_distributions_close(got.probs, brute_force(engine, req))
    # The same prompt with nothing declared shared (empty prefix, no cache) agrees as well.
    unshared = Request((), PREFIX + reqs[1].question, SCALE, plan)
    assert_distributions_close(engine.score([unshared])[0].probs, shared[1].probs)


def test_battery_items_sharing_a_stem_equal_separate_prompts(engine):
    # Question turns that begin with the same stem and options share trie nodes in one packed
    # micro-batch; every item must still read exactly its own prompt's probabilities.
    stem = "How important is each of the following in your life?\n1. Very important\n2. Rather important\n\n"
    plan = _plan(engine, seed=3, sigma=0.4, scale=2.0)
    two = tuple(Option(c, str(c)) for c in (1, 2))
    reqs = [Request(PREFIX, stem + topic, two, plan) for topic in ("Family", "Friends", "Leisure time")]
    assert len(engine._micro_batches(engine._groups(reqs, with_options=True)[0].items)) == 1
    for req, got in zip(reqs, engine.score(reqs)):
        assert_distributions_close(got.probs, brute_force(engine, req))


def test_zero_vector_is_no_injection_and_hooks_leave_nothing(engine):
    ids = torch.tensor([engine.encode("Hello there, how are you?")])
    with torch.inference_mode():
        before = engine.model(ids).logits
    req = Request(PREFIX, Q_FAMILY, SCALE)
    zero = InjectionPlan((Term(12, np.zeros(engine.loaded.hidden_size, dtype=np.float32)),))
    np.testing.assert_allclose(engine.score([req])[0].probs,
                               engine.score([Request(PREFIX, Q_FAMILY, SCALE, zero)])[0].probs, atol=1e-7)
    engine.score([Request(PREFIX, Q_FAMILY, SCALE, _plan(engine, sigma=1.0, scale=5.0))])
    assert engine.hooks.idle
    with torch.inference_mode():
        after = engine.model(ids).logits
    assert torch.equal(before, after)


def test_alone_equals_inside_mixed_batch(engine):
    target = Request(PREFIX, Q_FAMILY, SCALE, _plan(engine, seed=1, sigma=0.3), seed=42)
    other_prefix = ({"role": "system", "content": "You are a young woman from Chile."},)
    mixed = [
        Request(other_prefix, Q_TAX, SCALE, _plan(engine, seed=9, sigma=0.8, layers=(3,))),
        Request(PREFIX, Q_WORK, LABELS, target.plan, seed=7),      # same group, other length
        target,
        Request(PREFIX, Q_TAX, SCALE, None, seed=3),                 # same prefix, no plan
    ]
    alone = engine.score([target])[0]
    assert_distributions_close(engine.score(mixed)[2].probs, alone.probs)
    # Another packed tree: more of the target's group ahead of it, so its nodes sit at other rows
    # of a longer sequence (other kernel shapes); its distribution is the same.
    crowded = [Request(PREFIX, f"{Q_TAX} ({k})", SCALE, target.plan) for k in range(3)] + mixed
    assert_distributions_close(engine.score(crowded)[5].probs, alone.probs)
    sampling = Decoding(temperature=0.7, top_k=20, max_new_tokens=6)
    gen_alone = engine.generate([target], sampling)[0]
    gen_mixed = engine.generate(mixed, sampling)
    assert gen_mixed[2].text == gen_alone.text
    assert engine.generate([target], sampling)[0].text == gen_alone.text   # reproducible


def test_generation_greedy_parses_and_counts_invalid(engine):
    results = engine.generate([Request(PREFIX, Q_FAMILY, SCALE, seed=s) for s in range(2)],
                              Decoding(temperature=0.0, max_new_tokens=4))
    assert results[0].text == results[1].text   # greedy ignores the seed
    for r in results:
        assert r.n_tokens <= 4
        assert r.valid == (r.code is not None)
        assert r.code is None or r.code in range(1, 11)


def test_large_vector_moves_distribution(engine):
    req = Request(PREFIX, Q_WORK, LABELS)
    # The "very important" direction at layer 10: hidden means of that answer minus the opposite.
    texts = ["Very important", "Not at all important"]
    means = engine.hidden_means(texts, [(0, len(engine.encode(t))) for t in texts], [10])
    direction = means[0, 0] - means[1, 0]
    base = engine.score([req])[0].probs
    moved = engine.score([Request(PREFIX, Q_WORK, LABELS, InjectionPlan((Term(10, direction),)))])[0].probs
    assert 0.5 * np.abs(moved - base).sum() > 0.05
    assert moved[0] > base[0] + 0.05          # mass moves onto "Very important"


def test_noise_differs_between_respondents_and_reproduces(engine):
    def probs(seed):
        plan = _plan(engine, seed=seed, sigma=1.0, scale=0.0)
        return engine.score([Request(PREFIX, Q_TAX, SCALE, plan)])[0].probs
    a, b, a2 = probs(1), probs(2), probs(1)
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(a, a2)


def test_hidden_means_match_hidden_states(engine):
    texts = ["The quick brown fox", "Hello"]
    ids = engine.encode(texts[0])
    got = engine.hidden_means(texts, [(1, len(ids)), (0, 1)], [0, 5, 29])
    assert got.shape == (2, 3, engine.loaded.hidden_size)
    with torch.inference_mode():
        hs = engine.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    for j, layer in enumerate([0, 5, 29]):
        assert_close_to_scale(got[0, j], hs[layer][0, 1:].mean(0))
    n = engine.loaded.n_layers
    last = engine.hidden_means([texts[0]], [(2, 3)], [n])[0, 0]   # one token: its own state
    with torch.inference_mode():
        normed = engine.model.model.norm(torch.from_numpy(last))
    assert_close_to_scale(normed, hs[n][0, 2])
    chars = engine.hidden_means([texts[0]], [(4, 9)], [5], unit="char")   # "quick"
    assert_close_to_scale(chars[0, 0], hs[5][0, 1:2].mean(0))
    with pytest.raises(ValueError):
        engine.hidden_means(texts, [(0, 50), (0, 1)], [1])


# Thread counts the kernel-variance tests run under: one, two and the machine's default (all its
# cores), so a tolerance that holds only for one blocking of the sums fails here.
THREADS = sorted({1, 2, torch.get_num_threads()})


@pytest.fixture(params=THREADS, ids=lambda n: f"{n}threads")
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


# Extra left padding: other batch widths, hence other kernel shapes. With 5 and 15 the longest
# row's logits differ from its lone forward by 1.5e-4 and 3.1e-4 on the 2-core AVX-512 machine
# these tolerances were tuned on: an absolute 1e-4 fails there as it did on an AVX-512/AMX machine
# (7.5e-4, issue 17). Relative to the logits' scale that is 5e-6 and 1.1e-5, inside SCALE_RTOL.
@pytest.mark.parametrize("extra_pad", [0, 5, 15])
def test_hooks_per_row_plans_with_left_padding(engine, threads, extra_pad):
    """Rows of one padded batch carry different plans (or none) and match their lone forwards."""
    plans = [_plan(engine, seed=3, sigma=0.5), None, _plan(engine, seed=4, sigma=0.2, layers=(1, 30))]
    texts = ["Family is very important to me.", "Hi", "Work matters a great deal in my life, I think."]
    ids = [engine.encode(t) for t in texts]
    width = max(map(len, ids)) + extra_pad
    batch = torch.zeros((3, width), dtype=torch.long)
    mask = torch.zeros((3, width), dtype=torch.long)
    for r, x in enumerate(ids):
        batch[r, width - len(x):] = torch.tensor(x)
        mask[r, width - len(x):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    dev, dt = engine.device, engine.loaded.dtype

    def lone(x, plan):
        with engine.hooks.active([plan], dev, dt):
            return engine.model(torch.tensor([x]), position_ids=torch.arange(len(x))[None]).logits[0]

    with torch.inference_mode():
        with engine.hooks.active(plans, dev, dt):
            together = engine.model(batch, attention_mask=mask, position_ids=pos).logits
        rows = [together[r, width - len(x):] for r, x in enumerate(ids)]
        for r, x in enumerate(ids):
            # fp32 kernels differ between a padded batch and a lone row, even with no plan, by
            # an amount that follows the logits' scale: compare per position to its own maximum
            assert_close_to_scale(rows[r], lone(x, plans[r]), axis=-1, err_msg=f"row {r}")
        plain = lone(ids[0], None)
        other_seed = lone(ids[0], plans[0].with_seed(99))
    # The plan acted, and the tolerance would catch its noise drawn from another seed.
    assert float((plain - rows[0]).abs().max()) > 30 * SCALE_RTOL * float(plain.abs().max())
    with pytest.raises(AssertionError, match="not close"):
        assert_close_to_scale(rows[0], other_seed, axis=-1)


def test_eager_attention_matches_sdpa(engine):
    """The packed tree's mask is built per attention kernel: eager (additive) agrees with sdpa."""
    eager = HFEngine(load_model(ModelSpec()))
    eager.model.set_attn_implementation("eager")
    assert eager.model.config._attn_implementation == "eager"
    assert eager.model is not engine.model and engine.model.config._attn_implementation == "sdpa"
    req = Request(PREFIX, Q_FAMILY, SCALE, _plan(engine, seed=2, sigma=0.3))
    assert_distributions_close(eager.score([req])[0].probs, engine.score([req])[0].probs)


@pytest.mark.parametrize("system", [None, "You are a retired teacher. Answer in one sentence."])
def test_response_means_read_while_decoding_equal_a_forward_of_prompt_and_response(engine, system):
    plan = _plan(engine, seed=3, sigma=0.3)
    prefix = ({"role": "system", "content": system},) if system else ()
    questions = ["What is 2+2? Answer with the number only.", "Is the sky blue? Yes or no.", "Describe your town."]
    requests = [Request(prefix, q, (Option(0, "-"),), plan=plan, seed=k) for k, q in enumerate(questions)]
    layers = [0, 1, 15, 30]
    sampling = Decoding(temperature=0.7, max_new_tokens=12)
    results, means = engine.generate_with_means(requests, sampling, layers)
    if not system:   # rows that stop on their own and rows cut at the length cap
        assert {r.n_tokens < 12 for r in results} == {True, False}
    assert [r.text for r in results] == [r.text for r in engine.generate(requests, sampling)]
    expected = engine.hidden_means_ids([r.prompt_ids + r.token_ids for r in results],
                                       [(len(r.prompt_ids), len(r.prompt_ids) + len(r.token_ids)) for r in results],
                                       layers, [plan] * len(results))
    assert_close_to_scale(means, expected, axis=-1)   # per request and layer: one scale per vector
