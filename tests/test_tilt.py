"""Mean-preserving exponential tilting (step ``tilt``) and its fitter ``variance`` (issue 18, item 4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from raysim.fits.artefact import Fit
from raysim.fits.variance import Params as VarianceParams
from raysim.fits.variance import VarianceFitter
from raysim.metrics.distributions import norm_variance
from raysim.postprocess import parse_steps
from raysim.postprocess.temperature import temper
from raysim.postprocess.tilt import tilt, tilt_batch
from raysim.survey.codebook import load_codebook

RNG = np.random.default_rng(7)


def random_distributions(k: int, n: int = 300, sparse: bool = True) -> np.ndarray:
    p = RNG.dirichlet(np.full(k, 0.4), size=n)
    if sparse:
        p[p < 0.03] = 0.0
        p[np.arange(n), RNG.integers(0, k, n)] += 0.05   # every row keeps some mass
        p /= p.sum(axis=1, keepdims=True)
    return p


@pytest.mark.parametrize("k", [3, 4, 5, 10])
@pytest.mark.parametrize("t", [0.05, 0.3, 0.8, 1.7, 6.0, 20.0])
def test_the_mean_is_preserved(k, t):
    p = random_distributions(k)
    r = np.arange(k, dtype=float)
    q = tilt_batch(p, r, t)
    np.testing.assert_allclose(q @ r, p @ r, rtol=0, atol=1e-9)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)
    assert (q[p == 0] == 0).all()   # no mass where there was none


def unimodal(k: int, n: int) -> np.ndarray:
    """Log-concave distributions (discretised normals), the shape a model's answers take."""
    centre, width = RNG.uniform(0, k - 1, (n, 1)), RNG.uniform(0.3, 3.0, (n, 1))
    logp = -((np.arange(k) - centre) ** 2) / (2 * width ** 2)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def test_t_1_is_the_identity_and_normalised_variance_rises_with_t():
    p = unimodal(5, 200)
    r = np.arange(5, dtype=float)
    np.testing.assert_allclose(tilt_batch(p, r, 1.0), p, atol=1e-15)
    nv = np.array([norm_variance(tilt_batch(p, r, t)) for t in np.geomspace(0.05, 20, 40)])
    assert (np.diff(nv, axis=0) >= -1e-12).all()          # monotone in T, every distribution
    assert (nv[-1] > nv[0]).all() and (nv[-1] - nv[0]).mean() > 0.1   # and it moves


def test_a_bimodal_distribution_is_widest_at_small_t():
    """Why the fitter searches the running maximum: with the mean held, a small T splits the mass
    between the two modes, which is wider than the distribution itself."""
    p, r = np.array([0.45, 0.05, 0.05, 0.45]), np.arange(4, dtype=float)
    assert norm_variance(tilt(p, r, 0.05)) > norm_variance(p) > norm_variance(tilt(p, r, 2.0))


def test_one_hot_and_two_point_distributions_cannot_move_without_moving_their_mean():
    r = np.arange(4, dtype=float)
    for p in ([0, 1.0, 0, 0], [0.5, 0, 0, 0.5], [0.9, 0.1, 0, 0]):
        for t in (0.1, 3.0):
            np.testing.assert_array_equal(tilt(np.array(p), r, t), p)
    q = tilt(np.array([0.2, 0.5, 0.3, 0.0]), r, 3.0)     # three points: it widens, mean kept
    assert norm_variance(q) > norm_variance(np.array([0.2, 0.5, 0.3, 0.0]))


def test_plain_temperature_scaling_moves_the_mean_where_the_tilt_does_not():
    p = np.array([0.6, 0.25, 0.1, 0.05])
    r = np.arange(4, dtype=float)
    assert abs(temper(p, 3.0) @ r - p @ r) > 0.1
    assert abs(tilt(p, r, 3.0) @ r - p @ r) < 1e-12


# ---- the fitter, on a sample whose real and simulated answers are made here ------------------

CB = load_codebook("wvs7")
ORDINAL = ["Q1", "Q2", "Q3", "Q4", "Q46", "Q164"]
NOMINAL = ["Q8"]


@dataclass
class Sample:
    """A FitContext: respondents with real answers, and the method's (peaked) distributions."""
    respondents: pd.DataFrame
    rows: pd.DataFrame
    codebook = CB
    answer_mode = "logprob"

    @property
    def qids(self):
        return tuple(ORDINAL + NOMINAL)

    def answer(self) -> pd.DataFrame:
        return self.rows


def make_sample(planted_spread: float = 1.0, n: int = 120, seed: int = 0) -> Sample:
    """Real answers spread over the scale; simulated answers peaked near each respondent's real
    one (too narrow: T > 1 is needed). ``planted_spread`` widens the real answers of Q164 only."""
    rng = np.random.default_rng(seed)
    people = pd.DataFrame({"respondent_id": np.arange(n), "country": np.where(np.arange(n) % 2, "DEU", "USA"),
                           "weight": rng.uniform(0.5, 1.5, n)})
    rows = []
    for qid in ORDINAL + NOMINAL:
        item = CB[qid]
        scale = list(item.scale or item.codes)
        k = len(scale)
        centre = rng.normal(k / 2, 0.6, n)
        spread = planted_spread if qid == "Q164" else 1.0
        real = np.clip(np.round(centre + rng.normal(0, spread * k / 4, n)), 0, k - 1).astype(int)
        people[qid] = [scale[i] for i in real]
        for rid, c in zip(people["respondent_id"], centre):
            logits = -((np.arange(k) - c) ** 2) / 0.3
            p = np.exp(logits - logits.max())
            rows.append({"respondent_id": rid, "qid": qid, "option_codes": list(item.codes),
                         "probs": list((p / p.sum())[[scale.index(code) for code in item.codes]])})
    return Sample(people, pd.DataFrame(rows))


def fit_of(sample: Sample, **params) -> dict:
    return VarianceFitter(VarianceParams(**params)).fit(sample)


def test_the_fit_widens_too_narrow_answers_and_leaves_nominal_items_out():
    result = fit_of(make_sample())
    assert result["questions"] == len(ORDINAL) and result["nominal_left_out"] == 1
    assert result["temperature"]["ALL"] > 1.5
    assert set(result["temperatures"]["ALL"]) == set(ORDINAL)


def test_leave_one_question_out_never_sees_the_question_it_is_applied_to():
    """Plant a question whose real answers are far wider: its own T must not change (it is fitted
    on the others), every other question's T does (the planted one is among their others)."""
    plain, planted = fit_of(make_sample(1.0)), fit_of(make_sample(4.0))
    own = plain["temperatures"]["ALL"]["Q164"], planted["temperatures"]["ALL"]["Q164"]
    assert own[0] == pytest.approx(own[1], rel=1e-12)
    for qid in ORDINAL[:-1]:
        assert planted["temperatures"]["ALL"][qid] > plain["temperatures"]["ALL"][qid] * 1.02


def test_per_country_fits_each_country_and_the_step_applies_them():
    sample = make_sample()
    result = fit_of(sample, per="country")
    assert set(result["temperatures"]) == {"DEU", "USA"}
    fit = Fit(path=None, fitter="variance", params={}, result=result, run={}, sha256="x")
    rows = sample.rows.assign(country=sample.rows["respondent_id"].map(sample.respondents.set_index(
        "respondent_id")["country"]))
    (step,) = parse_steps(["tilt"])
    out = step.apply(rows, CB, fit)
    assert step.passed == (rows["qid"] == "Q8").sum()    # the nominal item, left as it was
    for (_, row), q in zip(rows.iterrows(), out):
        item = CB[row["qid"]]
        if item.kind != "ordinal":
            np.testing.assert_array_equal(q, np.asarray(row["probs"], dtype=np.float32))
            continue
        r = np.array([item.scale_positions()[c] for c in row["option_codes"]], dtype=float)
        assert abs(q @ r - np.asarray(row["probs"]) @ r) < 1e-5          # float32 results
    wider = np.mean([norm_variance(np.asarray(q, dtype=float)) for q, qid in zip(out, rows["qid"]) if qid == "Q1"])
    before = np.mean([norm_variance(np.asarray(p)) for p, qid in zip(rows["probs"], rows["qid"]) if qid == "Q1"])
    assert wider > before


def test_the_step_refuses_without_a_temperature_or_fit():
    from raysim.postprocess import StepError

    (step,) = parse_steps(["tilt"])
    with pytest.raises(StepError, match="no temperature given"):
        step.apply(make_sample().rows.assign(country="DEU"), CB, None)
