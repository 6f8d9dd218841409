"""Answers as distributions over an item's substantive options, in scale order: a method's result
rows (their option probabilities) and real respondents' answers (weighted counts)."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from ..survey.codebook import Item


def simulated_matrix(option_codes: Iterable, probs: Iterable, item: Item) -> np.ndarray:
    """[rows, K] probabilities over the item's options in scale order; mass on codes off the scale
    dropped (a row may sum to less than 1, to 0 if it put nothing on the scale)."""
    where = item.scale_positions()
    rows = list(zip(option_codes, probs))
    out = np.zeros((len(rows), len(where)))
    for i, (codes, p) in enumerate(rows):
        for c, v in zip(codes, p):
            j = where.get(c)
            if j is not None:
                out[i, j] += v
    return out


def human_distribution(answers: Iterable, weights: Iterable[float], item: Item) -> np.ndarray:
    """Weighted counts of the substantive answers over the item's options in scale order
    (unnormalised; missing and off-scale answers left out)."""
    where = item.scale_positions()
    out = np.zeros(len(where))
    for a, w in zip(answers, weights):
        if a is None or pd.isna(a):
            continue
        j = where.get(int(a))
        if j is not None:
            out[j] += w
    return out
