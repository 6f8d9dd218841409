"""Respondents done per country, logged as batches complete (the job log's progress; Ray
Data's own bars show the operators)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ..survey.population import COUNTRY


def log(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


@dataclass
class CountryProgress:
    total: dict[str, int]            # sampled respondents per country
    done: dict[str, int]             # complete before this run started (resumption)
    every_s: float = 10.0            # at most one line per interval, plus the last
    emit: Callable[[str], None] = log
    _last: float = field(default=0.0, init=False)

    def update(self, manifest: pd.DataFrame) -> None:
        for country, n in manifest[COUNTRY].value_counts().items():
            self.done[country] = self.done.get(country, 0) + int(n)
        now = time.monotonic()
        if now - self._last >= self.every_s or self.finished:
            self._last = now
            self.emit(self.line())

    @property
    def finished(self) -> bool:
        return all(self.done.get(c, 0) >= n for c, n in self.total.items())

    def line(self) -> str:
        done, total = sum(self.done.values()), sum(self.total.values())
        per = " ".join(f"{c} {self.done.get(c, 0)}/{n}" for c, n in sorted(self.total.items()))
        return f"respondents done: {done}/{total} | {per}"
