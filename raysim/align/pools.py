"""Persona pools that are not survey respondents: a fitted prompt mixture's prompts (raysim.fits,
fitter ``mixture``), one persona per prompt with its mixture weight and the prompt as its
narrative (``persona``), so ``method: narrative`` simulates it. A prompt has no recorded
attributes: a run asking them (``personas align --check RUN``, raysim.align.quality) gives it the
model's answers, over which the pool is then aligned."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..fits.artefact import Fit
from ..survey.columns import COUNTRY, ID, PERSONA, WEIGHT
from .importance import AlignError

_ALPHA3 = re.compile(r"^[A-Z]{3}$")


def mixture_pool(fit: Fit, country: str | None = None) -> tuple[pd.DataFrame, int]:
    """The prompts with positive weight as personas (per group for a per-country fit, under
    ``country`` for a pooled one), and how many zero-weight prompts were left out."""
    if fit.fitter != "mixture":
        raise AlignError(f"a persona pool is made from a prompt mixture's fit; this fit's fitter is {fit.fitter!r}")
    groups = fit.result.get("groups")
    if groups is None:
        if country is None:
            raise AlignError("a pooled mixture fit names no country: give --country ISO3 for its personas")
        groups = {country: fit.result}
    elif country is not None:
        raise AlignError("a per-country mixture fit labels its personas with its groups: --country is not needed")
    rows, left_out = [], 0
    for group, part in groups.items():
        if not _ALPHA3.match(str(group)):
            raise AlignError(f"mixture group {group!r} is not an ISO alpha-3 country code")
        for prompt, weight in zip(part["prompts"], part["weights"]):
            if weight > 0:
                rows.append({COUNTRY: str(group), WEIGHT: float(weight), PERSONA: str(prompt)})
            else:
                left_out += 1
    if not rows:
        raise AlignError("every prompt of the mixture has weight 0: no persona")
    frame = pd.DataFrame(rows)
    frame.insert(0, ID, np.arange(1, len(frame) + 1))
    return frame, left_out
