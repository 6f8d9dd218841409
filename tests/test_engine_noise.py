import numpy as np
import pytest
import torch

from raysim.engine.hooks import InjectionHooks
from raysim.engine.noise import derive_seed, normals, uniforms
from raysim.engine.parsing import parse_answer
from raysim.engine.plan import InjectionPlan, PlanError, Term, scoped


def _eps(seeds, term, positions, dim=64):
    return normals(torch.tensor(seeds), term, torch.tensor(positions), dim)


def test_normal_statistics():
    x = _eps([7], 0, [list(range(2000))], dim=128).double().flatten()
    assert abs(float(x.mean())) < 0.01
    assert abs(float(x.std()) - 1.0) < 0.01
    # Tails of a normal: about 4.55% beyond 2 sigma.
    assert abs(float((x.abs() > 2).double().mean()) - 0.0455) < 0.004


def test_independence_across_position_term_seed():
    pos = [list(range(500))]
    base = _eps([1], 0, pos).flatten()
    others = [
        _eps([1], 1, pos).flatten(),                         # another term
        _eps([2], 0, pos).flatten(),                         # another seed
        _eps([1], 0, [list(range(1, 501))]).flatten(),       # shifted positions
    ]
    for other in others:
        corr = np.corrcoef(base.numpy(), other.numpy())[0, 1]
        assert abs(corr) < 0.02


def test_pure_function_of_seed_term_position():
    alone = _eps([5], 3, [[10, 11, 12]])
    batched = _eps([9, 5, 4], 3, [[0, 1, 2], [10, 11, 12], [7, 8, 9]])
    assert torch.equal(alone[0], batched[1])
    assert torch.equal(_eps([5], 3, [[12]])[0, 0], alone[0, 2])   # a position alone
    u = uniforms(torch.tensor([3, 4]), torch.tensor([0, 0]), 100)
    assert torch.equal(u[1], uniforms(torch.tensor([4]), torch.tensor([0]), 100)[0])
    assert float(u.min()) > 0 and float(u.max()) <= 1


def test_plan_validation_and_key():
    v = np.ones(8, dtype=np.float32)
    plan = InjectionPlan((Term(2, v),), sigma=0.1, seed=3)
    plan.validate(n_layers=4, hidden_size=8)
    with pytest.raises(PlanError, match="out of range"):
        InjectionPlan((Term(0, v),)).validate(4, 8)
    with pytest.raises(PlanError, match="out of range"):
        InjectionPlan((Term(5, v),)).validate(4, 8)
    with pytest.raises(PlanError, match="size 8"):
        InjectionPlan((Term(1, v),)).validate(4, 16)
    with pytest.raises(PlanError):
        InjectionPlan(sigma=-1.0)
    same = InjectionPlan((Term(2, torch.ones(8)),), sigma=0.1, seed=3)
    assert plan.key == same.key and plan == same and len({plan, same}) == 1
    assert plan.key != plan.with_seed(4).key
    assert InjectionPlan((Term(2, v, scale=2.0),)).key != InjectionPlan((Term(2, v),)).key


def test_noise_scope():
    plan = InjectionPlan((Term(1, np.zeros(4)),), sigma=0.2, seed=11)
    assert scoped(plan, "respondent", "Q1") is plan
    q1, q2 = scoped(plan, "question", "Q1"), scoped(plan, "question", "Q2")
    assert q1.seed == plan.for_question("Q1").seed == derive_seed(11, "Q1")
    assert q1.seed != q2.seed
    with pytest.raises(PlanError):
        scoped(plan, "population", "Q1")


@pytest.mark.parametrize("text,code", [
    ("7", 7), (" 10.", 10), ("10 - always justifiable", 10), ("Always justifiable!", 10),
    ("always JUSTIFIABLE", 10), ("11", None), ("I don't know", None), ("", None), ("0", None),
])
def test_parse_scale(text, code):
    options = [(c, str(c)) for c in range(1, 10)] + [(10, "Always justifiable")]
    assert parse_answer(text, options) == code


def test_parse_labels_and_codes():
    options = [(1, "Very important"), (2, "Rather important"), (3, "Not very important")]
    assert parse_answer("Rather important.", options) == 2
    assert parse_answer("very important", options) == 1
    assert parse_answer("3", options) == 3
    assert parse_answer("Important", options) is None


class _TupleBlock(torch.nn.Module):
    """A decoder block that returns (hidden, extra) as older transformers layers do."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(hidden, hidden)

    def forward(self, h, position_ids=None):
        return self.lin(h), "extra"


class _TupleModel(torch.nn.Module):
    def __init__(self, hidden: int = 8, n: int = 2) -> None:
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList(_TupleBlock(hidden) for _ in range(n))

    def forward(self, h, position_ids):
        for layer in self.model.layers:
            h, extra = layer(h, position_ids=position_ids)
            assert extra == "extra"   # the hook keeps the rest of the tuple
        return h


def test_hooks_handle_decoder_blocks_that_return_tuples():
    torch.manual_seed(0)
    model = _TupleModel()
    hooks = InjectionHooks(model, n_layers=2, hidden_size=8)
    h = torch.randn(1, 3, 8)
    pos = torch.arange(3)[None]
    v = torch.ones(8)
    with torch.no_grad():
        plain = model(h, pos)
        with hooks.active([InjectionPlan((Term(2, v),))], torch.device("cpu"), torch.float32):
            shifted = model(h, pos)
        torch.testing.assert_close(shifted, plain + 1.0)   # layer 2 = the last block's output
        with hooks.active([InjectionPlan((Term(1, v),), sigma=0.5, seed=3)], torch.device("cpu"), torch.float32):
            noisy = model(h, pos)
        assert not torch.allclose(noisy, plain)
    assert hooks.idle
    with torch.no_grad():
        torch.testing.assert_close(model(h, pos), plain)


def test_top_k_sampling_draws_only_the_candidates_yet_equals_a_full_draw():
    from raysim.engine.noise import uniforms
    from raysim.engine.sampling import sample

    logits = torch.randn(64, 5000, generator=torch.Generator().manual_seed(0)) * 3
    seeds = torch.arange(64, dtype=torch.int64) * 7919
    got = sample(logits, 0.7, 20, 1.0, seeds, torch.full_like(seeds, 3))
    # The reference: mask all but the top k, Gumbel noise for the whole vocabulary.
    scaled = logits / 0.7
    kth = torch.topk(scaled, 20, dim=-1).values[:, -1:]
    masked = scaled.masked_fill(scaled < kth, float("-inf"))
    u = uniforms(seeds, torch.full_like(seeds, 3), 5000)
    expected = (torch.log_softmax(masked, -1) - torch.log(-torch.log(u.clamp(max=1 - 1e-12))).float()).argmax(-1)
    assert torch.equal(got, expected)
    assert len(set(got.tolist())) > 10   # really sampled, not argmax
