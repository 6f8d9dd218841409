"""Prompt mixtures with stand-in components: a crafter that writes a code word for the answer it is
asked for, and a model whose answer distribution is a fixed function of the code word in the
system prompt. Deterministic and fast; the real model runs in test_mixture_fit.py."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from raysim.methods.mixture.crafting import CraftRequest, craft, leaks, parse_prompt
from raysim.methods.mixture.scenario import POOLED, ScenarioError, noise_floor, observe, parse_targets
from raysim.methods.mixture.search import Search
from raysim.methods.mixture.weights import objective, slsqp
from raysim.survey.codebook import load_codebook
from raysim.survey.columns import COUNTRY, ID, WEIGHT

WORDS = ["amber", "birch", "cedar", "dune", "elm", "fern", "grove", "heath", "iris", "juniper"]
CB = load_codebook("wvs7")


def peak(k: int, at: int, sharp: float = 2.5) -> np.ndarray:
    p = np.exp(-sharp * np.abs(np.arange(k) - at))
    return p / p.sum()


class StandIn:
    """Answers: a peak at the position whose word is in the prompt (uniform without one).
    Crafter: 'You are a calm person of the <word> kind.' for the option it is asked for."""

    def __init__(self, codebook=CB, leak: bool = False, sharp: float = 2.5) -> None:
        self.codebook, self.leak, self.sharp = codebook, leak, sharp
        self.calls = 0

    def item_distributions(self, prompts):
        self.calls += len(prompts)
        out = []
        for p in prompts:
            found = [i for i, w in enumerate(WORDS) if w in p]
            out.append({qid: (peak(len(it.codes), min(found[0], len(it.codes) - 1), self.sharp) if found
                              else np.full(len(it.codes), 1 / len(it.codes)))
                        for qid, it in self.codebook.items.items() if it.ordinal})
        return out

    def complete(self, turns):
        replies = []
        for _, user, _ in turns:
            m = re.search(r'asked "(.*?)", they would answer "([^"]+)"', user, flags=re.DOTALL)
            q, label = m.group(1), m.group(2)
            item = next(it for it in self.codebook.items.values() if it.text == q)
            order = item.scale or item.codes
            pos = next(i for i, c in enumerate(order) if item.labels[c] == label)
            extra = f" You would say: {label}." if self.leak else ""
            replies.append(f"You are a calm person of the {WORDS[pos]} kind.{extra}")
        return replies


def population(mix: dict[int, float], qid: str = "Q164", n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Respondents whose answers to ``qid`` are drawn from Σ w·peak(position)."""
    item = CB[qid]
    k = len(item.codes)
    dist = sum(w * peak(k, at) for at, w in mix.items())
    rng = np.random.default_rng(seed)
    order = item.scale or item.codes
    answers = [order[i] for i in rng.choice(k, size=n, p=dist)]
    return pd.DataFrame({ID: np.arange(n), COUNTRY: "DEU", WEIGHT: 1.0, qid: answers})


# ---- weights -------------------------------------------------------------------------------

def test_slsqp_recovers_known_weights():
    comps = [np.stack([peak(10, 1), peak(10, 5), peak(10, 8)])]
    for true in ([0.2, 0.5, 0.3], [0.7, 0.0, 0.3], [1.0, 0.0, 0.0]):
        observed = [np.asarray(true) @ comps[0]]
        w = slsqp(comps, observed)
        assert np.allclose(w, true, atol=1e-4), (w, true)
        assert objective(comps, observed, w) < 1e-6
        assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all()


def test_slsqp_never_worse_than_its_start():
    rng = np.random.default_rng(3)
    comps = [rng.dirichlet(np.ones(6), size=4), rng.dirichlet(np.ones(4), size=4)]
    observed = [rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(4))]
    start = rng.dirichlet(np.ones(4))
    assert objective(comps, observed, slsqp(comps, observed, start)) <= objective(comps, observed, start) + 1e-12


# ---- scenario ------------------------------------------------------------------------------

def test_scale_target_is_the_convolution_with_reverse_keyed_items_reversed():
    bfi = load_codebook("configs/surveys/bfi.yaml")
    (t,) = parse_targets([{"scale": "agreeableness", "items": ["A1", "A2"], "reverse": ["A1"]}], bfi, "t")
    assert t.size == 11 and t.offset == 2
    p1, p2 = np.eye(6)[0], np.eye(6)[5]      # A1 "very inaccurate" (reversed: top), A2 "very accurate"
    assert t.label(int(np.argmax(t.distribution({"A1": p1, "A2": p2})))) == "12"
    people = pd.DataFrame({ID: [1, 2], COUNTRY: "USA", WEIGHT: 1.0, "A1": [1, 6], "A2": [6, np.nan]})
    assert t.positions(people)[0] == 10 and np.isnan(t.positions(people)[1])


def test_targets_are_checked():
    with pytest.raises(ScenarioError, match="nominal|ordinal"):
        parse_targets(["Q1" if not CB["Q1"].ordinal else "Q223"], CB, "targets")
    with pytest.raises(ScenarioError, match="not an item"):
        parse_targets(["Q9999"], CB, "targets")
    with pytest.raises(ScenarioError, match="reverse-keyed"):
        parse_targets([{"scale": "s", "items": ["Q1"], "reverse": ["Q2"]}], CB, "targets")


def test_noise_floor_shrinks_with_more_respondents():
    (t,) = parse_targets(["Q164"], CB, "t")
    small = noise_floor(observe([t], population({2: 1.0}, n=50), POOLED), 0)
    large = noise_floor(observe([t], population({2: 1.0}, n=2000), POOLED), 0)
    assert 0 < large < small


# ---- crafting ------------------------------------------------------------------------------

def test_leak_check():
    (t,) = parse_targets(["Q46"], CB, "t")   # 1 Very happy .. 4 Not at all happy, scale order as listed
    assert leaks("You are very happy with your life.", t, 0)
    assert leaks("Answer 1 to everything.", t, 0)
    assert not leaks("You are content and grateful for your family.", t, 0)
    assert leaks("You would pick option three.", t, 2) and not leaks("You would pick option three.", t, 0)
    assert not leaks("You are 31 years old.", t, 0)          # a 1 inside another number is not the answer
    bfi = load_codebook("configs/surveys/bfi.yaml")
    (s,) = parse_targets([{"scale": "agreeableness", "items": ["A1", "A2"]}], bfi, "t")
    assert leaks("You score 7 on agreeableness.", s, 5) and not leaks("You score high.", s, 5)


def test_crafting_rejects_and_counts_leaking_prompts():
    (t,) = parse_targets(["Q46"], CB, "t")
    req = [CraftRequest(t, 1, key="a"), CraftRequest(t, 2, key="b")]
    made = craft(StandIn(leak=True), req, attempts=2)
    assert made.prompts == [None, None]
    assert made.rejected_leak == 4 and made.attempts == 4 and made.examples
    clean = craft(StandIn(), req, attempts=2)
    assert clean.prompts == ["You are a calm person of the birch kind.", "You are a calm person of the cedar kind."]
    assert clean.rejected_leak == 0 and clean.attempts == 2
    assert parse_prompt('System prompt: "You are a careful, quiet person."') == "You are a careful, quiet person."
    assert parse_prompt("ok") is None


# ---- EM and gradient boosting --------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["em", "gb"])
def test_search_lowers_the_distance_monotonically_to_a_known_mixture(algorithm):
    people = population({1: 0.6, 6: 0.4}, n=3000)
    (t,) = parse_targets(["Q164"], CB, "t")
    observed = observe([t], people, POOLED)
    backend = StandIn()
    search = Search([t], observed, backend, seed=1)
    found = search.em(k=2, iterations=10) if algorithm == "em" else search.boost("You are a person.", rounds=4)
    values = [h["objective"] for h in found.history]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:])), values
    assert values[-1] < values[0] or values[0] < 0.01
    floor = noise_floor(observed, 0)
    assert values[-1] < 3 * floor + 0.01, (values, floor)
    words = {w for p in found.prompts for w in WORDS if w in p}
    assert {"birch", "grove"} <= words, found.prompts     # positions 1 and 6 were found
    assert abs(sum(found.weights) - 1) < 1e-9
    if algorithm == "em":
        assert found.stopped


def test_search_is_deterministic_given_its_seed():
    people = population({2: 0.5, 7: 0.5}, n=500)
    (t,) = parse_targets(["Q164"], CB, "t")
    runs = [Search([t], observe([t], people, POOLED), StandIn(), seed=4).em(k=3, iterations=5) for _ in range(2)]
    assert runs[0].prompts == runs[1].prompts and np.array_equal(runs[0].weights, runs[1].weights)


def test_each_prompt_is_asked_once():
    people = population({3: 1.0}, n=200)
    (t,) = parse_targets(["Q164"], CB, "t")
    backend = StandIn()
    found = Search([t], observe([t], people, POOLED), backend, seed=0).em(k=2, iterations=5)
    assert backend.calls <= len(found.history) * 2 + 4


# ---- the fitter on a stand-in context, and the kind that simulates with its artefact ---------

class _Context:
    """A FitContext without Ray: the stand-in model, SLSQP standing in for the Tune search."""

    def __init__(self, people: pd.DataFrame, qids: tuple[str, ...]) -> None:
        self.codebook, self.qids, self.respondents, self.answer_mode = CB, qids, people, "logprob"

    def answer(self) -> pd.DataFrame:
        return pd.DataFrame()

    def prompt_backend(self, crafter):
        from contextlib import nullcontext

        return nullcontext(StandIn())

    def search_weights(self, components, observed, samples, seed):
        w = slsqp(components, observed)
        return w, objective(components, observed, w)


def test_fitter_reports_fitted_and_heldout_targets_and_the_kind_draws_from_it(tmp_path):
    from raysim.fits import FITTERS, load_fit, write_fit
    from raysim.fits.mixture import MixtureParams
    from raysim.methods.kinds.base import MethodError, Setup
    from raysim.methods.kinds.mixture import MixtureKind
    from raysim.methods.spec import get_method

    people = population({1: 0.5, 6: 0.5}, n=600)
    people["Q158"] = population({1: 0.5, 6: 0.5}, qid="Q158", n=600, seed=1)["Q158"]   # same structure: held out
    fitter = FITTERS.get("mixture", "t")(MixtureParams(algorithm="gb", k=3, heldout=["Q158"], tune_samples=4))
    result = fitter.fit(_Context(people, ("Q164", "Q158")))
    assert len(result["prompts"]) == len(result["weights"]) >= 2
    assert set(result["summary"]) == {"fitted", "heldout"}
    for role in ("fitted", "heldout"):
        s = result["summary"][role]
        assert s["mixture"] < s["default prompt"], s     # the mixture generalises to the held-out item
    assert "weights_tune" in result and result["scenario"]["heldout"] == ["Q158"]
    values = [h["objective"] for h in result["objective"]]
    assert values == sorted(values, reverse=True)

    fit = write_fit(tmp_path / "fit", fitter="mixture", params={}, run={}, result=result)
    kind = MixtureKind(get_method("mixture"), None, Setup(CB, ("Q164",), resources={"fit": load_fit(fit.path)}))
    drawn = [kind.prompt_for({ID: i, COUNTRY: "DEU"}) for i in range(4000)]
    assert drawn == [kind.prompt_for({ID: i, COUNTRY: "DEU"}) for i in range(4000)]   # a function of (seed, id)
    for prompt, weight in zip(result["prompts"], result["weights"]):
        assert abs(drawn.count(prompt) / len(drawn) - weight) < 0.03
    other = write_fit(tmp_path / "t", fitter="temperature", params={}, run={}, result={"temperature": 1.0})
    with pytest.raises(MethodError, match="not by mixture"):
        MixtureKind(get_method("mixture"), None, Setup(CB, ("Q164",), resources={"fit": load_fit(other.path)}))


def test_scores_split_a_mixture_runs_questions_into_fitted_and_held_out_items(tmp_path):
    from raysim.fits import write_fit
    from raysim.report.scorecard import FITTED, HELD_OUT, fit_item_sets

    result = {"scenario": {"targets": ["Q1", {"scale": "trait", "items": ["Q2", "Q3"], "reverse": ["Q3"]},
                                       {"scale": "other", "items": ["Q4", "Q5"], "reverse": []}],
                           "heldout": ["other"]}}
    fit = write_fit(tmp_path / "m", fitter="mixture", params={}, run={}, result=result)
    sets = fit_item_sets(fit, ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"])
    assert sets == {FITTED: ["Q1", "Q2", "Q3"], HELD_OUT: ["Q4", "Q5", "Q6"]}
    temperature = write_fit(tmp_path / "t", fitter="temperature", params={}, run={}, result={"temperature": 1.0})
    assert fit_item_sets(temperature, ["Q1"]) is None and fit_item_sets(None, ["Q1"]) is None
