"""Synthetic WVS-7-shaped populations: any N over the 66 WVS-7 countries, seeded.

The population is a stand-in for the real one wherever the real files are not at hand
(tests, demos, benchmarks at any scale). It is built so that identity matters:

- Countries get respondents in proportion to their real WVS-7 sample sizes (largest
  remainder; N = 97,220 gives the real sizes). Ids follow ``D_INTERVIEW``: country
  numeric code × 10^5 + k. Weights are lognormal with mean exactly 1 per country.
- Demographics are drawn from the country's marginals (``countries.py``), each conditioned
  on the ones before it: sex and age; marital status by age; children by age, partnership
  and the country's fertility; household from both; education by cohort and the country's
  tertiary share; employment by age, sex, education and settlement; occupation by
  employment and education; income by education and work; class by income and education;
  religion from the country's shares, tilted by age and education.
- Six latent factors (``FACTORS``) per respondent: a country mean (the Inglehart-Welzel
  position for the first two) plus demographic effects plus noise.
- Opinion items load on the factors. An item's loadings, thresholds and option intercepts
  come from a hash of its id (and per-country shifts from a hash of id and country), not
  from the random stream, so they are the same in every run, on every machine and numpy
  version. Ordinal items answer through ordered-logit thresholds, nominal items through a
  softmax (first/second-choice pairs as a draw without replacement), coded items (party)
  through proximity on the economic left-right factor.
- Item nonresponse of a few percent (more on political and corruption items, clustered on
  reticent respondents), a few items not asked in some countries (all null there), and
  rare off-scale ``extra_codes``.

Randomness: every block of ``BLOCK`` respondents of a country draws from its own streams,
seeded by (seed, country, block, stream), so output depends on seed and N but not on the
chunk size frames are cut into; memory is bounded by one chunk plus one block.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, gammaincinv, gammainc, logit, ndtri

from .codebook import Codebook, CodebookError, Item, id_sort_key, load_codebook
from .countries import Country, get_country, load_countries
from .population import COUNTRY, ID, WEIGHT, write_population

BLOCK = 1024
"""Respondents per random stream: fixed, so results do not depend on the chunk size."""

NA = -1
"""Null marker inside the generator's int arrays (every WVS missing code ends up null)."""

FACTORS = ("trad_secular", "surv_selfexp", "religiosity", "inst_trust", "pol_engagement", "econ_right")
TS, SE, RE, IT, PE, ER = range(len(FACTORS))

COVARIATES = ("age", "education", "female", "income", "urban", "religious")
"""Standardised covariates that shift the factors (and each item directly)."""

# Covariate (row) effects on factor (column) means, in factor SDs per covariate unit.
_EFFECTS = np.array([
    # TS     SE     RE     IT     PE     ER
    [-0.20, -0.20, +0.20, +0.10, +0.15, +0.05],  # age, (age-45)/17
    [+0.25, +0.30, -0.15, +0.05, +0.30, +0.05],  # education, (ISCED-3.5)/2
    [-0.05, +0.10, +0.20, +0.00, -0.15, -0.10],  # female, ±0.5
    [+0.05, +0.15, -0.05, +0.10, +0.10, +0.30],  # income, (decile-5.5)/2.5
    [+0.15, +0.10, -0.10, +0.00, +0.05, +0.00],  # urban, ±0.5
    [-0.40, -0.10, +1.20, +0.10, +0.00, +0.05],  # belongs to a denomination, ±0.5
])
# Extra shifts (TS, SE, RE) by Q289 denomination beyond belonging to one.
_DENOMINATION = {3: (0.0, -0.1, 0.0), 4: (0.2, 0.1, -0.2), 5: (-0.3, -0.3, 0.3),
                 6: (-0.1, -0.1, 0.1), 7: (0.0, 0.0, -0.3)}
_FACTOR_NOISE = 0.8

# Which factors an item's answers mostly reflect, by codebook topic.
_TOPIC_FACTORS = {
    "social values": {TS: 0.6, SE: 0.6},
    "happiness and well-being": {SE: 0.8, ER: 0.2},
    "social capital and trust": {IT: 0.9, PE: 0.3},
    "economic values": {ER: 1.0},
    "corruption": {IT: -0.9},
    "migration": {SE: 0.8, TS: 0.2},
    "security": {SE: 0.6, TS: 0.4},
    "postmaterialist index": {SE: 1.0},
    "science and technology": {TS: -0.4, SE: 0.3},
    "religious values": {RE: 1.2},
    "ethical values and norms": {TS: 0.6, RE: -0.5, SE: 0.4},
    "political interest and participation": {PE: 1.0},
    "political culture and regimes": {SE: 0.6, IT: 0.4, PE: 0.3},
}
# Nonresponse multipliers for sensitive topics; base rates are 0.5%-3% per item.
_SENSITIVE = {"corruption": 2.0, "political interest and participation": 2.0,
              "political culture and regimes": 2.5, "migration": 1.5, "religious values": 1.2}
_CODED_MISS = 0.12          # e.g. party choice: refusals and "no party" are common
_NOT_ASKED = 0.03           # share of (item, country) pairs not asked
_RETICENCE = 0.7            # SD of the person-level log-propensity to not answer


class SyntheticError(ValueError):
    """Invalid arguments to the synthetic population generator."""


# --- hash-derived constants (stable across runs, machines and numpy versions) -----------

def _unit(key: str, n: int) -> np.ndarray:
    """n uniforms in (0, 1) from BLAKE2b of ``key`` in counter mode."""
    words: list[int] = []
    for i in range(-(-n // 4)):
        digest = hashlib.blake2b(f"raysim-synth|{key}|{i}".encode(), digest_size=32).digest()
        words += [int.from_bytes(digest[j:j + 8], "little") for j in range(0, 32, 8)]
    return (np.array(words[:n], dtype=np.float64) + 0.5) / 2.0**64


def _normal(key: str, n: int) -> np.ndarray:
    return ndtri(_unit(key, n))


def _random_shares(key: str, k: int, evenness: float = 2.0) -> np.ndarray:
    """Random shares of k categories: normalised Exp(1) draws (a flat Dirichlet) raised to
    1/evenness, so larger ``evenness`` gives less lopsided shares."""
    g = (-np.log(_unit(key, k))) ** (1.0 / evenness)
    return g / g.sum()


def _key64(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


# --- allocation and ids -------------------------------------------------------------------

def allocate(n: int, countries: Sequence[str] | None = None) -> dict[str, int]:
    """Respondents per country (alpha3 order), proportional to the real WVS-7 sizes by
    largest remainder (ties go to the larger country, then alphabetically); N = 97,220
    gives the real sizes. Small N covers as many countries as it can: a country left
    with none takes one from the country furthest above its quota, largest quota first."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise SyntheticError(f"population size must be a non-negative integer, got {n!r}")
    chosen = [get_country(a) for a in countries] if countries is not None else list(load_countries().values())
    if not chosen:
        raise SyntheticError("no countries to allocate respondents to")
    if len({c.alpha3 for c in chosen}) != len(chosen):
        raise SyntheticError(f"countries listed twice in {list(countries or [])}")
    chosen.sort(key=lambda c: c.alpha3)
    total = sum(c.n for c in chosen)
    quotas = [int(n) * c.n for c in chosen]  # exact integer arithmetic: quota = q / total
    sizes = [q // total for q in quotas]
    order = sorted(range(len(chosen)), key=lambda i: (-(quotas[i] % total), -chosen[i].n, chosen[i].alpha3))
    for i in order[: int(n) - sum(sizes)]:
        sizes[i] += 1
    for i in sorted((i for i, s in enumerate(sizes) if s == 0), key=lambda i: (-chosen[i].n, chosen[i].alpha3)):
        donors = [j for j, s in enumerate(sizes) if s >= 2]
        if not donors:
            break
        j = max(donors, key=lambda j: (sizes[j] * total - quotas[j], chosen[j].n, chosen[j].alpha3))
        sizes[j] -= 1
        sizes[i] += 1
    return {c.alpha3: s for c, s in zip(chosen, sizes)}


def _id_base(sizes: dict[str, int]) -> int:
    """10^5 as in D_INTERVIEW, widened when a country has that many respondents (ids stay unique)."""
    return 10 ** max(5, len(str(max(sizes.values(), default=0))))


# --- random streams -----------------------------------------------------------------------

def _stream(seed: int, country: Country, block: int, key: str) -> np.random.Generator:
    """The random stream ``key`` (an item id, "demographics", ...) of one block of a country."""
    return np.random.default_rng(np.random.SeedSequence([seed, country.numeric, block, _key64(key)]))


def _pick(rng: np.random.Generator, logp: np.ndarray, codes: Sequence[int],
          allowed: np.ndarray | None = None) -> np.ndarray:
    """One code per row of ``logp`` (n, K) by Gumbel-max, over the allowed codes only."""
    logp = np.where(allowed, logp, -np.inf) if allowed is not None else logp
    g = logp + rng.gumbel(size=logp.shape)
    return np.asarray(codes)[np.argmax(g, axis=1)]


def _ordered(latent: np.ndarray, cum_shares: Sequence[float], sd: float) -> np.ndarray:
    """Positions 0..K-1 of a Gaussian latent cut at the quantiles of the given shares."""
    return np.searchsorted(sd * ndtri(np.asarray(cum_shares)), latent)


# --- demographics ---------------------------------------------------------------------------

_MARITAL_BY_AGE = (  # (min age, shares of Q273 codes 1..6: married, together, divorced, separated, widowed, single)
    (18, (0.12, 0.07, 0.005, 0.005, 0.0, 0.80)),
    (25, (0.45, 0.12, 0.03, 0.01, 0.005, 0.385)),
    (35, (0.66, 0.09, 0.08, 0.03, 0.01, 0.13)),
    (50, (0.68, 0.05, 0.10, 0.03, 0.07, 0.07)),
    (65, (0.55, 0.02, 0.08, 0.02, 0.29, 0.04)),
)
_EMPLOYMENT = (0.50, 0.08, 0.10, 0.02, 0.10, 0.03, 0.06, 0.02)  # Q279 codes 1..8 at working age
_OCCUPATION = (0.0, 0.12, 0.04, 0.12, 0.10, 0.14, 0.15, 0.12, 0.11, 0.06, 0.04)  # Q281 codes 0..10 (0: set per person)
_INCOME = (0.06, 0.07, 0.11, 0.14, 0.20, 0.16, 0.12, 0.08, 0.03, 0.03)  # Q288 deciles 1..10
_CLASS = (0.02, 0.20, 0.38, 0.28, 0.12)  # Q287 upper .. lower class
_SAVINGS = (0.30, 0.45, 0.15, 0.10)  # Q286 saved .. spent savings and borrowed
_SETTLEMENT = ((0.0, 0.0, 0.10, 0.20, 0.70), (0.30, 0.30, 0.15, 0.25, 0.0))  # H_SETTLEMENT 1..5: rural, urban
_SECTOR = (0.25, 0.68, 0.07)  # Q284 public, private, non-profit


def _log(p: Sequence[float]) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=np.float64))


@dataclass
class _Demographics:
    """One block's demographics: ``codes`` by item id (NA where not applicable) and the
    standardised covariates (n, len(COVARIATES)) plus Q289 denomination."""

    codes: dict[str, np.ndarray]
    covariates: np.ndarray
    religion: np.ndarray


class _DemographicDrawer:
    """Draws demographics for one country, restricting every categorical draw to the codes
    the codebook's item accepts (an item absent from the codebook accepts all)."""

    def __init__(self, country: Country, codebook: Codebook):
        self.c = country
        self.codebook = codebook
        self.fertility = 1.5 + 0.15 * max(0.0, 38 - country.median_age)
        # Adults 18-90: 18 + Gamma(2) truncated at 72 years, its median set by the country's.
        self.age_scale = (0.55 * country.median_age + 22 - 18) / 1.678  # 1.678: median of Gamma(2, 1)
        self.age_mean = 18 + 2 * self.age_scale
        t = country.tertiary
        at_least = [expit(logit(t) + 4.0), expit(logit(t) + 3.0), expit(logit(t) + 1.7)]
        self.edu_at_least = np.array(at_least + [t + 0.1 * (at_least[2] - t), t, 0.88 * t, 0.33 * t, 0.03 * t])
        """P(ISCED >= 1..8) in the country."""
        self.edu_mean_z = (self.edu_at_least.sum() - 3.5) / 2
        self.others = [x.numeric for x in load_countries().values() if x.alpha3 != country.alpha3]

    def _allowed(self, qid: str, codes: Sequence[int]) -> np.ndarray | None:
        if qid not in self.codebook:
            return None
        item = self.codebook[qid]
        ok = np.array([item.valid_code(int(c)) for c in codes])
        if not ok.any():
            raise CodebookError(f"synthetic {qid}: none of the codes {list(codes)} is valid for the codebook's item")
        return ok

    def pick(self, rng: np.random.Generator, qid: str, logp: np.ndarray, codes: Sequence[int]) -> np.ndarray:
        return _pick(rng, np.atleast_2d(logp), codes, self._allowed(qid, codes))

    def age(self, rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n) * gammainc(2, 72 / self.age_scale)
        return np.minimum(18 + np.floor(gammaincinv(2, u) * self.age_scale), 90).astype(np.int64)

    def education(self, rng: np.random.Generator, age: np.ndarray, urban: np.ndarray) -> np.ndarray:
        # Younger cohorts and city dwellers are more educated; centred so the country's
        # shares hold overall (sd: that of the latent's three terms).
        latent = rng.normal(size=age.size) - 0.025 * (age - self.age_mean) + 0.25 * (urban - self.c.urban)
        return _ordered(latent, 1 - self.edu_at_least, sd=1.09).astype(np.int64)

    def employment(self, rng: np.random.Generator, qid: str, age: np.ndarray, female: np.ndarray,
                   edu_z: np.ndarray, urban: np.ndarray) -> np.ndarray:
        n = age.size
        lp = np.tile(_log(_EMPLOYMENT), (n, 1))
        young, old = age < 25, age >= 60
        lp[:, 5] += np.where(young, 3.0 + 0.8 * edu_z, np.where(age < 30, 0.5, -3.0))
        lp[:, 0] -= 0.6 * young + 1.5 * old + 1.0 * (age >= 65)
        lp[:, 3] += np.where(old, 2.0 + 1.5 * (age >= 65), -5.0 * (age < 45))
        trad = 1.5 - 0.6 * self.c.surv_selfexp - 0.3 * self.c.trad_secular
        lp[:, 4] += np.where(female, trad, -3.0) - young
        lp[:, 1] += 0.7 * female
        lp[:, 0] += 0.3 * edu_z
        lp[:, 6] -= 0.3 * edu_z
        lp[:, 2] += 0.6 * (1 - urban) - 0.1 * edu_z
        return self.pick(rng, qid, lp, range(1, 9))

    def occupation(self, rng: np.random.Generator, qid: str, employment: np.ndarray,
                   edu_z: np.ndarray, urban: np.ndarray) -> np.ndarray:
        n = employment.size
        lp = np.tile(_log(_OCCUPATION), (n, 1))
        never = np.select([employment == 6, employment == 5, employment == 7], [0.75, 0.35, 0.15], 0.01)
        lp[:, 0] = np.log(never / (1 - never))
        lp[:, 1:] += np.outer(edu_z, [1.0, 0.8, 0.3, 0.0, 0.0, -0.1, -0.4, -0.7, -0.6, -0.3])
        lp[:, 9:] += 2.0 * (1 - urban)[:, None] - 1.0
        lp[:, 3] += 1.0 * (employment == 3)  # self-employed: more in sales
        return self.pick(rng, qid, lp, range(0, 11))

    def draw(self, rng: np.random.Generator, n: int) -> _Demographics:
        c, q = self.c, {}
        female = rng.random(n) < 0.52
        q["Q260"] = np.where(female, 2, 1)
        age = self.age(rng, n)
        q["Q262"] = age
        q["Q261"] = c.year - age - (rng.random(n) < 0.5)  # birthday not yet reached this year
        urban = (rng.random(n) < c.urban).astype(np.int64)
        q["H_URBRURAL"] = np.where(urban == 1, 1, 2)
        q["H_SETTLEMENT"] = self.pick(rng, "H_SETTLEMENT", _log(_SETTLEMENT)[urban], range(1, 6))

        # Migration background.
        immigrant = rng.random(n) < c.immigrant
        q["Q263"] = np.where(immigrant, 2, 1)
        birth = np.where(immigrant, rng.choice(self.others, size=n), c.numeric)
        q["Q266"] = birth
        for qid_imm, qid_birth in (("Q264", "Q267"), ("Q265", "Q268")):
            parent_imm = np.where(immigrant, rng.random(n) < 0.9, rng.random(n) < 0.5 * c.immigrant)
            q[qid_imm] = np.where(parent_imm, 2, 1)
            same = immigrant & (rng.random(n) < 0.9)
            q[qid_birth] = np.where(parent_imm, np.where(same, birth, rng.choice(self.others, size=n)), c.numeric)
        q["Q269"] = np.where(rng.random(n) < np.where(immigrant, 0.45, 0.995), 1, 2)
        lang_lp = np.tile(np.arange(len(c.languages)) * np.log(0.25), (n, 1))
        lang_lp[:, 1:] += np.log(2.0) * immigrant[:, None]
        lang = np.argmax(lang_lp + rng.gumbel(size=lang_lp.shape), axis=1)
        q["Q272"] = c.numeric * 1000 + 1 + lang
        n_ethnic = max(2, len(c.languages)) + 1
        q["Q290"] = c.numeric * 1000 + 1 + np.where(rng.random(n) < 0.8, lang, rng.integers(0, n_ethnic, n))

        # Family.
        band = np.searchsorted([b for b, _ in _MARITAL_BY_AGE], age, side="right") - 1
        lp = _log([p for _, p in _MARITAL_BY_AGE])[band]
        lp[:, 1] += 0.5 * c.surv_selfexp  # cohabitation is commoner where self-expression is
        lp[:, 2] += 0.3 * c.trad_secular
        marital = self.pick(rng, "Q273", lp, range(1, 7))
        q["Q273"] = marital
        partnered = (marital == 1) | (marital == 2)
        ever = marital != 6
        mean_kids = self.fertility * np.clip((age - 18) / 17, 0, 1) * np.where(ever, 1.0, 0.25)
        children = np.minimum(rng.poisson(mean_kids), 24)
        q["Q274"] = children
        p_parents = expit(1.2 - 0.18 * (age - 22) - 0.4 * c.trad_secular - 1.0 * partnered)
        lives_with = rng.random(n) < p_parents
        in_law = partnered & (rng.random(n) < 0.25 - 0.1 * c.trad_secular)
        q["Q271"] = np.where(lives_with, np.where(in_law, np.where(rng.random(n) < 0.15, 4, 3), 2), 1)
        kids_home = np.where(age < 55, children, rng.binomial(children, 0.2))
        extra = rng.poisson(0.2 + 0.05 * max(0.0, 38 - c.median_age), n)
        q["Q270"] = np.minimum(1 + partnered + kids_home + lives_with * (1 + (rng.random(n) < 0.7)) + extra, 89)

        # Education, work, income, class.
        edu = self.education(rng, age, urban)
        q["Q275"] = edu
        edu_z = (edu - 3.5) / 2
        q["Q276"] = np.where(partnered, np.clip(np.rint(edu + rng.normal(0, 1.2, n)), 0, 8), NA)
        for qid in ("Q277", "Q278"):
            parent = edu - 1.2 - 0.02 * (age - 45) + rng.normal(0, 1.3, n)
            q[qid] = np.clip(np.rint(parent), 0, 8)
        employment = self.employment(rng, "Q279", age, female, edu_z, urban)
        q["Q279"] = employment
        spouse_age = np.clip(age + np.where(female, 2, -2) + rng.integers(-4, 5, n), 18, 90)
        spouse_emp = self.employment(rng, "Q280", spouse_age, ~female, (q["Q276"] - 3.5) / 2, urban)
        q["Q280"] = np.where(partnered, spouse_emp, NA)
        occupation = self.occupation(rng, "Q281", employment, edu_z, urban)
        q["Q281"] = occupation
        spouse_occ = self.occupation(rng, "Q282", spouse_emp, (q["Q276"] - 3.5) / 2, urban)
        q["Q282"] = np.where(partnered, spouse_occ, NA)
        q["Q283"] = self.occupation(rng, "Q283", np.ones(n, np.int64), (q["Q278"] - 3.5) / 2, urban)
        lp = np.tile(_log(_SECTOR), (n, 1))
        lp[:, 0] += 0.4 * edu_z - 3.0 * (employment == 3)
        lp[:, 2] += 0.2 * edu_z
        q["Q284"] = np.where(occupation == 0, NA, self.pick(rng, "Q284", lp, (1, 2, 3)))
        working = np.isin(employment, (1, 2, 3))
        chief = expit(-0.8 + 1.5 * working + 0.6 * ~female - 0.8 * (female & partnered)
                      - 2.0 * lives_with * (age < 30) + 0.4 * (employment == 4))
        q["Q285"] = np.where(rng.random(n) < chief, 1, 2)
        # Income deciles are relative to the country: the latent is centred on its means.
        rel_edu = edu_z - self.edu_mean_z
        inc = (0.45 * rel_edu + 0.3 * (working - 0.55) - 0.5 * ((employment == 7) - 0.08)
               + 0.2 * (urban - c.urban) + rng.normal(size=n))
        income = 1 + _ordered(inc, np.cumsum(_INCOME)[:-1], sd=1.1)
        q["Q288"] = income
        q["Q286"] = 1 + _ordered(-0.9 * inc + rng.normal(0, 0.8, n), np.cumsum(_SAVINGS)[:-1], sd=1.27)
        q["Q287"] = 1 + _ordered(-(0.6 * inc + 0.3 * rel_edu) + rng.normal(0, 0.7, n),
                                 np.cumsum(_CLASS)[:-1], sd=1.06)

        # Religion: the country's shares, the young and educated a little less affiliated.
        codes = sorted(c.religion)
        lp = np.tile(_log([c.religion[k] for k in codes]), (n, 1))
        if 0 in c.religion:
            lp[:, codes.index(0)] += 0.3 * edu_z - 0.3 * (age - 45) / 17
        religion = self.pick(rng, "Q289", lp, codes)
        q["Q289"] = religion

        covariates = np.column_stack([
            (age - 45) / 17, edu_z, female - 0.5, (income - 5.5) / 2.5, urban - 0.5, (religion != 0) - 0.5,
        ])
        return _Demographics({k: np.asarray(v, dtype=np.int64) for k, v in q.items()}, covariates, religion)


def _generic_demographic(item: Item, country: Country, rng: np.random.Generator, n: int) -> np.ndarray:
    """A demographic item the generator has no model for: drawn by kind, independently."""
    if item.kind == "numeric":
        lo, hi = item.range
        return rng.integers(lo, hi + 1, n)
    if item.kind == "coded":
        return country.numeric * 1000 + 1 + rng.integers(0, 4, n)
    shares = _random_shares(f"{item.id}|{country.alpha3}", len(item.codes))
    return rng.choice(np.asarray(item.codes), size=n, p=shares)


# --- latent factors ----------------------------------------------------------------------------

def _factor_means(country: Country) -> np.ndarray:
    z = _normal(f"country|{country.alpha3}", len(FACTORS))
    m = np.empty(len(FACTORS))
    m[TS], m[SE] = country.trad_secular, country.surv_selfexp
    m[RE] = -0.6 * country.trad_secular - 0.2 * country.surv_selfexp + 0.3 * z[RE]
    m[IT] = 0.5 * z[IT]
    m[PE] = 0.2 * country.surv_selfexp + 0.4 * z[PE]
    m[ER] = 0.4 * z[ER]
    return m


def _factors(rng: np.random.Generator, means: np.ndarray, demo: _Demographics) -> np.ndarray:
    f = means + demo.covariates @ _EFFECTS + rng.normal(0, _FACTOR_NOISE, (demo.religion.size, len(FACTORS)))
    for code, (ts, se, re) in _DENOMINATION.items():
        hit = demo.religion == code
        f[hit, TS] += ts
        f[hit, SE] += se
        f[hit, RE] += re
    return f


# --- opinion items --------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Model:
    """An opinion item's fixed parameters, all derived from a hash of its id."""

    item: Item
    codes: np.ndarray      # option codes in scale order (ordinal) or option order
    loadings: np.ndarray   # (F,) or, nominal, (F, K)
    direct: np.ndarray     # (C,) or, nominal, (C, K): covariate effects beyond the factors
    base: np.ndarray       # ordinal: thresholds (K-1,); nominal: log shares (K,)
    miss_rate: float
    extra_rate: float


@dataclass(frozen=True, eq=False)
class _Local:
    """An opinion item's country-specific terms."""

    asked: bool
    shift: np.ndarray      # (1,) or, nominal, (K,)
    parties: np.ndarray | None = None  # coded items: positions of the country's options


def _primary(item: Item) -> np.ndarray:
    w = np.zeros(len(FACTORS))
    for f, v in _TOPIC_FACTORS.get(item.topic or "", {}).items():
        w[f] = v
    return w


def _shares(item: Item) -> np.ndarray:
    k = len(item.codes)
    if k <= 5:
        return _random_shares(f"{item.id}|shares", k)
    # Long scales: a discretised Beta, skewed or U-shaped as real 10-point items are.
    a, b = 0.6 + 2.4 * _unit(f"{item.id}|beta", 2)
    x = (np.arange(k) + 0.5) / k
    p = x ** (a - 1) * (1 - x) ** (b - 1)
    return p / p.sum()


def _model(item: Item) -> _Model:
    nf, nc = len(FACTORS), len(COVARIATES)
    primary = _primary(item)
    sign = 1.0 if _unit(f"{item.id}|sign", 1)[0] < 0.5 else -1.0
    k = max(len(item.codes), 1)
    rate = 0.005 + 0.025 * _unit(f"{item.id}|miss", 1)[0]
    miss = _CODED_MISS if item.kind == "coded" else rate * _SENSITIVE.get(item.topic or "", 1.0)
    extra = (0.003 + 0.012 * _unit(f"{item.id}|extra", 1)[0]) if item.extra_codes else 0.0
    if item.kind == "nominal":
        loadings = 0.6 * primary[:, None] * _normal(f"{item.id}|optload", k)[None, :] \
            + 0.15 * _normal(f"{item.id}|noise", nf * k).reshape(nf, k)
        direct = 0.15 * _normal(f"{item.id}|direct", nc * k).reshape(nc, k)
        base = np.log(_random_shares(f"{item.id}|shares", k))
        codes = np.asarray(item.codes)
    else:
        if primary.any():
            strength = 0.7 + 0.6 * _unit(f"{item.id}|strength", 1)[0]
            loadings = sign * strength * primary + 0.25 * _normal(f"{item.id}|noise", nf)
        else:  # a topic without a known profile: random loadings
            loadings = 0.6 * _normal(f"{item.id}|load", nf)
        direct = 0.15 * _normal(f"{item.id}|direct", nc)
        codes = np.asarray([c for c, _ in sorted(item.scale_positions().items(), key=lambda kv: kv[1])])
        # Thresholds at the logits of the cumulative shares, widened for the spread of the
        # latent predictor, so the pooled marginal stays near the item's shares.
        base = logit(np.cumsum(_shares(item))[:-1]) * 1.25 if item.kind == "ordinal" else np.zeros(0)
    return _Model(item, codes, loadings, direct, base, miss, extra)


def _local(m: _Model, country: Country) -> _Local:
    key = f"{m.item.id}|{country.alpha3}"
    asked = bool(_unit(f"{key}|asked", 1)[0] >= _NOT_ASKED)
    k = len(m.codes) if m.item.kind == "nominal" else 1
    parties = None
    if m.item.kind == "coded":
        count = 3 + int(5 * _unit(f"{key}|nparties", 1)[0])
        parties = np.sort(_normal(f"{key}|parties", count))
    return _Local(asked, 0.5 * _normal(f"{key}|shift", k), parties)


def _eta(m: _Model, loc: _Local, f: np.ndarray, x: np.ndarray) -> np.ndarray:
    return f @ m.loadings + x @ m.direct + loc.shift


def _answer(m: _Model, loc: _Local, f: np.ndarray, x: np.ndarray, rng: np.random.Generator,
            country: Country) -> np.ndarray:
    n = f.shape[0]
    kind = m.item.kind
    if kind == "ordinal":
        return m.codes[np.searchsorted(m.base, _eta(m, loc, f, x) + rng.logistic(0, 0.8, n))]
    if kind == "nominal":
        return _pick(rng, m.base + _eta(m, loc, f, x), m.codes)
    if kind == "numeric":
        lo, hi = m.item.range
        u = expit(_eta(m, loc, f, x) + rng.logistic(0, 0.8, n))
        return np.minimum(lo + np.floor(u * (hi - lo + 1)), hi).astype(np.int64)
    # coded (e.g. party): the option nearest on the economic left-right factor, with noise.
    dist = (f[:, ER, None] - loc.parties[None, :]) ** 2
    return country.numeric * 1000 + 1 + np.argmax(-dist + 0.5 * rng.gumbel(size=dist.shape), axis=1)


def _answer_pair(m: _Model, loc: _Local, f: np.ndarray, x: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """First and second choice: the top two of one set of perturbed softmax utilities
    (a draw without replacement), so they always differ."""
    g = m.base + _eta(m, loc, f, x) + rng.gumbel(size=(f.shape[0], len(m.codes)))
    top2 = np.argsort(-g, axis=1)[:, :2]
    return m.codes[top2[:, 0]], m.codes[top2[:, 1]]


def _pairs(codebook: Codebook, models: dict[str, _Model]) -> dict[str, str]:
    """first id -> second id for nominal first/second-choice pairs with the same options."""
    out = {}
    for qid, m in models.items():
        other = m.item.pair
        if other and other in models and id_sort_key(qid) < id_sort_key(other):
            a, b = m.item, codebook[other]
            if a.kind == b.kind == "nominal" and set(a.codes) == set(b.codes):
                out[qid] = other
    return out


def _finish(m: _Model, codes: np.ndarray, rng: np.random.Generator, reticence: np.ndarray,
            edu_z: np.ndarray) -> np.ndarray:
    """Rare off-scale extra codes, then item nonresponse (null)."""
    n = codes.size
    if m.extra_rate:
        extras = np.asarray([c for c, _ in m.item.extra_codes])
        codes = np.where(rng.random(n) < m.extra_rate, rng.choice(extras, size=n), codes)
    p = np.minimum(m.miss_rate * reticence * np.exp(-0.2 * edu_z), 0.9)
    return np.where(rng.random(n) < p, NA, codes)


# --- assembling frames -------------------------------------------------------------------------------

def _column(values: np.ndarray) -> pd.arrays.IntegerArray:
    values = np.asarray(values, dtype=np.int64)
    return pd.arrays.IntegerArray(values.astype(np.int32), values == NA)


@dataclass
class _CountryPlan:
    country: Country
    size: int
    means: np.ndarray
    local: dict[str, _Local]
    weights: np.ndarray
    drawer: _DemographicDrawer


class _Generator:
    def __init__(self, seed: int, codebook: Codebook):
        self.seed = seed
        self.codebook = codebook
        self.models = {q: _model(it) for q, it in codebook.items.items() if it.is_opinion}
        self.pairs = _pairs(codebook, self.models)
        self.second = set(self.pairs.values())

    def plan(self, alpha3: str, size: int) -> _CountryPlan:
        c = get_country(alpha3)
        w = _stream(self.seed, c, 0, "weights").lognormal(0.0, 0.35, size)  # whole country: exact mean 1
        return _CountryPlan(c, size, _factor_means(c), {q: _local(m, c) for q, m in self.models.items()},
                            w / w.mean(), _DemographicDrawer(c, self.codebook))

    def block(self, p: _CountryPlan, b: int, id_base: int) -> pd.DataFrame:
        c, start = p.country, b * BLOCK
        n = min(BLOCK, p.size - start)
        demo = p.drawer.draw(_stream(self.seed, c, b, "demographics"), n)
        rng = _stream(self.seed, c, b, "factors")
        f = _factors(rng, p.means, demo)
        reticence = np.exp(_RETICENCE * rng.normal(size=n) - _RETICENCE**2 / 2)
        x, edu_z = demo.covariates, demo.covariates[:, 1]
        cols: dict[str, object] = {
            ID: c.numeric * id_base + np.arange(start + 1, start + n + 1, dtype=np.int64),
            COUNTRY: np.full(n, c.alpha3, dtype=object),
            WEIGHT: p.weights[start:start + n],
        }
        answers: dict[str, np.ndarray] = {}
        for qid, m in self.models.items():
            if qid in self.second:
                continue
            loc, rng = p.local[qid], _stream(self.seed, c, b, qid)
            if qid in self.pairs:
                first, second = _answer_pair(m, loc, f, x, rng)
                pair = {qid: first, self.pairs[qid]: second}
            else:
                pair = {qid: _answer(m, loc, f, x, rng, c)}
            for q, codes in pair.items():
                answers[q] = _finish(self.models[q], codes, rng, reticence, edu_z) if p.local[q].asked \
                    else np.full(n, NA)
        for qid, item in self.codebook.items.items():
            if item.is_opinion:
                cols[qid] = _column(answers[qid])
            elif qid in demo.codes:
                cols[qid] = _column(_checked(item, demo.codes[qid]))
            else:
                cols[qid] = _column(_generic_demographic(item, c, _stream(self.seed, c, b, qid), n))
        return pd.DataFrame(cols)


def _checked(item: Item, codes: np.ndarray) -> np.ndarray:
    """Numeric demographics are clipped to the item's range; any other code the codebook
    rejects is a disagreement between the generator and the codebook: an error."""
    if item.kind == "numeric" and item.range:
        return np.where(codes == NA, NA, np.clip(codes, *item.range))
    present = np.unique(codes[codes != NA])
    bad = [int(v) for v in present if not item.valid_code(int(v))]
    if bad:
        raise CodebookError(f"synthetic {item.id}: generated code(s) {bad} are not valid for the codebook's item")
    return codes


def synth_frames(n: int, seed: int, *, chunk_rows: int = 20_000, countries: Sequence[str] | None = None,
                 codebook: Codebook | None = None) -> Iterator[pd.DataFrame]:
    """A synthetic WVS-7 population of ``n`` respondents as canonical frames of
    ``chunk_rows`` rows (the last one shorter), countries in alpha3 order.

    ``countries`` restricts it to those alpha3 codes (sizes stay proportional);
    ``codebook`` defaults to the shipped ``wvs7``. The same (n, seed, countries, codebook)
    gives the same rows whatever ``chunk_rows``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise SyntheticError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise SyntheticError(f"the number of respondents must be a positive integer, got {n!r}")
    if not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise SyntheticError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    sizes = allocate(n, countries)
    gen = _Generator(int(seed), codebook or load_codebook("wvs7"))
    return _chunks(gen, sizes, int(chunk_rows))


def _chunks(gen: _Generator, sizes: dict[str, int], chunk_rows: int) -> Iterator[pd.DataFrame]:
    id_base = _id_base(sizes)
    buf: list[pd.DataFrame] = []
    buffered = 0
    for alpha3, size in sizes.items():
        if size == 0:
            continue
        plan = gen.plan(alpha3, size)
        for b in range(-(-size // BLOCK)):
            frame = gen.block(plan, b, id_base)
            buf.append(frame)
            buffered += len(frame)
            while buffered >= chunk_rows:
                whole = pd.concat(buf, ignore_index=True) if len(buf) > 1 else buf[0]
                yield whole.iloc[:chunk_rows].reset_index(drop=True)
                rest = whole.iloc[chunk_rows:].reset_index(drop=True)
                buf, buffered = ([rest] if len(rest) else []), len(rest)
    if buffered:
        yield pd.concat(buf, ignore_index=True) if len(buf) > 1 else buf[0]


def write_synthetic(n: int, out: str | Path, *, seed: int = 0, overwrite: bool = False,
                    shard_rows: int = 20_000, progress: Callable[[int], object] | None = None,
                    countries: Sequence[str] | None = None, codebook: Codebook | None = None) -> Path:
    """Generate and write a synthetic population: ``out`` ending in ``.parquet`` gives one
    file, anything else a directory of ``part-NNNNN.parquet`` shards of ``shard_rows`` rows.
    ``progress(rows)`` is called with each shard's row count once it is written (so a
    ``tqdm(total=n).update`` fits). Atomic: nothing is left at ``out`` if generation fails."""
    cb = codebook or load_codebook("wvs7")
    frames = synth_frames(n, seed, chunk_rows=shard_rows, countries=countries, codebook=cb)

    def reported() -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield frame
            if progress is not None:
                progress(len(frame))

    return write_population(reported(), out, cb, overwrite=overwrite)
