"""Choosing respondents and questions for a run: seeded samples per country and question
sets spread evenly over the analysis categories."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .codebook import Codebook
from .population import COUNTRY, ID


def questions_evenly(codebook: Codebook, n: int) -> list[str]:
    """``n`` scored questions drawn evenly across the categories: round robin over the
    categories, each walked at an even stride, returned in questionnaire order."""
    if n <= 0 or n >= len(codebook.question_ids):
        return list(codebook.question_ids)
    by_cat = [[q for q in codebook.question_ids if codebook[q].category == c] for c in codebook.categories]
    by_cat = [qs for qs in by_cat if qs]
    share = [n // len(by_cat) + (i < n % len(by_cat)) for i in range(len(by_cat))]
    picked: set[str] = set()
    for qs, k in zip(by_cat, share):
        idx = np.linspace(0, len(qs) - 1, num=min(k, len(qs))).round().astype(int)
        picked.update(qs[i] for i in idx)
    return [q for q in codebook.question_ids if q in picked]


def sample_per_country(population: pd.DataFrame, per_country: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``per_country`` respondents of every country, drawn without replacement, seeded
    (a country's draw does not depend on the others)."""
    parts = []
    for country, group in population.groupby(COUNTRY, sort=True):
        rng = np.random.default_rng([seed, int.from_bytes(str(country).encode(), "little")])
        take = rng.choice(len(group), size=min(per_country, len(group)), replace=False)
        parts.append(group.iloc[np.sort(take)])
    return pd.concat(parts).sort_values([COUNTRY, ID], kind="stable").reset_index(drop=True)


def sample_n(population: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` respondents drawn without replacement from the whole population (seeded), in
    (country, id) order; all of them if there are fewer."""
    ordered = population.sort_values([COUNTRY, ID], kind="stable").reset_index(drop=True)
    take = np.random.default_rng(seed).choice(len(ordered), size=min(n, len(ordered)), replace=False)
    return ordered.iloc[np.sort(take)].reset_index(drop=True)
