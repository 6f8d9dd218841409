"""The HF engine and its injection hooks on tiny random Llama, Qwen2 and Mistral models.

Each model has the layer classes of its architecture (Mistral's default config keeps its sliding
window, so its masks and caches take the sliding-window path) and the embedded default's
tokenizer, whose ids fit the model's vocabulary. Weights are random but peaked enough
(initializer_range 0.2) for option probabilities to differ clearly, so the tolerances below test
something.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from engine_helpers import brute_force
from tolerances import assert_distributions_close
from raysim.engine.base import Option, Request, Decoding
from raysim.engine.hf import HFEngine, HFOptions
from raysim.engine.loading import LoadedModel, embedded_default_dir, prepare, random_model
from raysim.engine.plan import InjectionPlan, Term

pytestmark = pytest.mark.usefixtures("one_thread")

N_LAYERS = 3
SCALE = tuple(Option(c, str(c)) for c in range(1, 11))
LABELS = (Option(1, "Very important"), Option(2, "Rather important"),
          Option(3, "Not very important"), Option(4, "Not at all important"))
PREFIX = ({"role": "system", "content": "You are a 45-year-old man from Norway. Answer with the answer only."},)
OTHER_PREFIX = ({"role": "system", "content": "You are a young woman from Chile."},)
Q_FAMILY = "How important is family in your life? Answer with a number from 1 (not at all) to 10 (very)."
Q_TAX = "Is cheating on taxes justifiable? 1 = never, 10 = always."
Q_WORK = "How important is work in your life?"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_default_dir())


def _tiny(tokenizer, model_type, **overrides) -> LoadedModel:
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
        num_hidden_layers=N_LAYERS, num_attention_heads=4, num_key_value_heads=2,
        initializer_range=0.2, attn_implementation="sdpa",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **overrides,
    )
    return prepare(random_model(config), tokenizer, f"tiny-{model_type}")


@pytest.fixture(scope="module", params=["llama", "qwen2", "mistral"])
def engine(request, tokenizer):
    engine = HFEngine(_tiny(tokenizer, request.param))
    assert engine.model.config.model_type == request.param
    assert engine.model.config._attn_implementation == "sdpa"
    return engine


def _plan(engine, seed=0, sigma=0.0, scale=1.0, layers=(1, N_LAYERS), final=False):
    gen = torch.Generator().manual_seed(1234 + seed)
    size = engine.loaded.hidden_size
    terms = tuple(Term(layer, torch.randn(size, generator=gen), scale) for layer in layers)
    return InjectionPlan(terms, sigma=sigma, seed=seed,
                         final_vector=torch.randn(size, generator=gen) if final else None)


def test_zero_vector_is_no_injection_and_hooks_leave_nothing(engine):
    ids = torch.tensor([engine.encode("Hello there, how are you?")])
    with torch.inference_mode():
        before = engine.model(ids).logits
    plain = engine.score([Request(PREFIX, Q_FAMILY, SCALE)])[0].probs
    assert plain.max() > 0.2          # not near-uniform: the comparisons below can fail
    zero = InjectionPlan((Term(2, np.zeros(engine.loaded.hidden_size, dtype=np.float32)),))
    np.testing.assert_allclose(engine.score([Request(PREFIX, Q_FAMILY, SCALE, zero)])[0].probs, plain, atol=1e-7)
    engine.score([Request(PREFIX, Q_FAMILY, SCALE, _plan(engine, sigma=1.0, scale=5.0, final=True))])
    engine.generate([Request(PREFIX, Q_FAMILY, SCALE, _plan(engine, sigma=1.0))], Decoding(max_new_tokens=3))
    assert engine.hooks.idle
    with torch.inference_mode():
        after = engine.model(ids).logits
    assert torch.equal(before, after)


def _mixed(engine, target):
    return [
        Request(OTHER_PREFIX, Q_TAX, SCALE, _plan(engine, seed=9, sigma=0.8, layers=(2,)), seed=5),
        Request(PREFIX, Q_WORK, LABELS, target.plan, seed=7),       # same group, other length
        target,
        Request(PREFIX, Q_TAX, SCALE, None, seed=3),                  # same prefix, no plan
        Request((), Q_FAMILY + " Be brief.", SCALE, _plan(engine, seed=4, sigma=0.5, final=True), seed=1),
    ]


def test_alone_equals_inside_mixed_batch(engine):
    target = Request(PREFIX, Q_FAMILY, SCALE, _plan(engine, seed=1, sigma=0.3), seed=42)
    alone = engine.score([target])[0].probs
    assert_distributions_close(engine.score(_mixed(engine, target))[2].probs, alone)


def test_prefix_shared_equals_brute_force(engine):
    plan = _plan(engine, seed=5, sigma=0.5, scale=2.0, final=True)
    reqs = [Request(PREFIX, q, opts, plan) for q, opts in ((Q_FAMILY, SCALE), (Q_TAX, SCALE), (Q_WORK, LABELS))]
    for req, got in zip(reqs, engine.score(reqs)):
        assert_distributions_close(got.probs, brute_force(engine, req))


def test_large_vector_moves_distribution(engine):
    base = engine.score([Request(PREFIX, Q_WORK, LABELS)])[0].probs
    moved = engine.score([Request(PREFIX, Q_WORK, LABELS, _plan(engine, scale=20.0, layers=(2,)))])[0].probs
    assert 0.5 * np.abs(moved - base).sum() > 0.05


def test_generation_alone_equals_inside_batch(engine):
    target = Request(PREFIX, Q_FAMILY, SCALE, _plan(engine, seed=1, sigma=0.3), seed=42)
    sampling = Decoding(temperature=0.7, top_k=20, max_new_tokens=6)
    alone = engine.generate([target], sampling)[0]
    assert alone.n_tokens > 0 and alone.text
    assert engine.generate(_mixed(engine, target), sampling)[2].text == alone.text
    assert engine.generate([target], sampling)[0].text == alone.text      # reproducible
    other_seed = Request(PREFIX, Q_FAMILY, SCALE, target.plan, seed=43)
    assert engine.generate([other_seed], sampling)[0].text != alone.text   # the seed matters


@pytest.mark.parametrize("model_type, window", [
    ("mistral", {"sliding_window": 64}),                                          # every layer slides
    ("qwen2", {"use_sliding_window": True, "sliding_window": 64, "max_window_layers": 1}),   # hybrid
])
def test_sliding_window_models_within_the_window(tokenizer, model_type, window):
    # Every prompt fits in the window, but the packed trees together with the prefix do not: the
    # prefix cache must still crop back exactly after each micro-batch.
    engine = HFEngine(_tiny(tokenizer, model_type, **window), HFOptions(token_budget=40))
    assert engine.window == 64
    plan = _plan(engine, seed=5, sigma=0.5)
    reqs = [Request(PREFIX, q, SCALE, plan) for q in ("Family?", "Work?", "Friends?", "Leisure?")]
    batches = engine._micro_batches(engine._groups(reqs, with_options=True)[0].items)
    prefix = len(engine._groups(reqs, with_options=True)[0].prefix)
    assert len(batches) > 1 and prefix + 40 > 64
    for req, got in zip(reqs, engine.score(reqs)):
        assert_distributions_close(got.probs, brute_force(engine, req))
    assert engine.generate(reqs[:2], Decoding(max_new_tokens=4))[0].n_tokens > 0
    with pytest.raises(ValueError, match="sliding attention window of 64"):
        engine.score([Request(PREFIX, Q_FAMILY * 3, SCALE)])


def _psii_respondents(engine, n=7):
    """Respondents as PSII asks them: each its own profile (prefixes of different lengths, one
    respondent with none), its own plan (a term at every layer, noise, its own seed; one
    respondent without a plan) and 1-3 questions."""
    asked = ((Q_FAMILY, SCALE), (Q_TAX, SCALE), (Q_WORK, LABELS))
    out = []
    for r in range(n):
        prefix = () if r == 3 else (
            {"role": "system", "content": f"You are respondent {r}: " + "a parent, " * r + "from Norway."},)
        plan = None if r == 2 else _plan(engine, seed=10 + r, sigma=0.5, layers=(1, 2, 3))
        out.append([Request(prefix, q, opts, plan, seed=r) for q, opts in asked[: 1 + r % 3]])
    return out


def test_several_respondents_per_forward_equal_one_at_a_time(engine):
    people = _psii_respondents(engine)
    alone = [[got.probs for got in engine.score(reqs)] for reqs in people]
    widths = []
    grab = engine.model.register_forward_pre_hook(lambda m, args, kw: widths.append(kw["input_ids"].shape[0]),
                                                  with_kwargs=True)
    options = engine.options
    try:
        # A small token budget gives respondents different numbers of micro-batches (rounds in
        # which a row idles); max_rows 3 splits the seven into waves.
        engine.options = HFOptions(token_budget=30, max_rows=3)
        together = engine.score([r for reqs in people for r in reqs])
    finally:
        engine.options = options
        grab.remove()
    assert max(widths) == 3 and len(widths) > 3
    flat = [p for probs in alone for p in probs]
    assert len(together) == len(flat)
    for got, want in zip(together, flat):
        assert_distributions_close(got.probs, want)
    # The batching is exact enough to tell plans apart: another respondent's answer is far away.
    assert np.abs(np.log(flat[0]) - np.log(together[1].probs)).max() > 0.05


def test_rows_per_forward_follow_the_memory_budget(engine):
    groups = engine._groups([r for reqs in _psii_respondents(engine) for r in reqs], with_options=True)
    trees = [engine._trees(g) for g in groups]
    order = list(range(len(groups)))
    widest = engine._row_bytes(max(len(g.prefix) for g in groups), max(len(t.tokens) for ts in trees for t in ts),
                               max(len(t.read_rows) for ts in trees for t in ts))
    engine.__dict__["_memory_budget"] = 3.5 * widest
    try:
        assert len(engine._wave(order, groups, trees)) == 3
        engine.__dict__["_memory_budget"] = 1.0     # less than one row: still one row per wave
        assert len(engine._wave(order, groups, trees)) == 1
    finally:
        del engine.__dict__["_memory_budget"]
    assert 1 < len(engine._wave(order, groups, trees)) <= engine.options.max_rows   # free memory: many
