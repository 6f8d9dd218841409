"""Progress of a job: a bar with rate and ETA on a terminal, a line every few seconds in a log (a
job's, CI's), where a bar would be noise. Simulations count respondents per country, vector
builds count units, Tune searches count trials (raysim.tune.progress)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ..logs import terminal
from ..survey.population import COUNTRY


def log(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class Progress:
    """``total`` things, ``initial`` of them done before this run (resumption). ``bar`` None: a bar
    where stderr (the terminal's, while a Ray session sends fd 2 to the log) is a terminal.
    ``describe()`` gives the state beside the count (per-country
    counts, the best trial so far)."""

    def __init__(self, total: int, *, initial: int = 0, unit: str = "", desc: str = "",
                 emit: Callable[[str], None] = log, every_s: float = 10.0, bar: bool | None = None,
                 describe: Callable[[], str] = lambda: "") -> None:
        self.total, self.n, self.unit, self.desc = total, initial, unit, desc
        self.emit, self.every_s, self.describe = emit, every_s, describe
        self._last = 0.0
        self._bar = None
        screen = terminal()   # (stderr itself is the log during a Ray session)
        if bar if bar is not None else screen.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, file=screen,
                             dynamic_ncols=True)

    @property
    def finished(self) -> bool:
        return self.n >= self.total

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.set_postfix_str(self.describe(), refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or self.finished:
            self._last = now
            self.emit(self.line())

    def line(self) -> str:
        state = self.describe()
        return f"{self.desc} done: {self.n}/{self.total}" + (f" | {state}" if state else "")

    def close(self) -> None:
        """End the bar (a limited or failed run stops before everything is done)."""
        if self._bar is not None:
            self._bar.close()


@dataclass
class CountryProgress:
    total: dict[str, int]            # sampled respondents per country
    done: dict[str, int]             # complete before this run started (resumption)
    every_s: float = 10.0            # at most one line per interval, plus the last
    emit: Callable[[str], None] = log
    bar: bool | None = None          # None: a bar where stderr is a terminal
    _progress: Progress = field(init=False)

    def __post_init__(self) -> None:
        self._progress = Progress(sum(self.total.values()), initial=sum(self.done.values()), unit="resp",
                                  desc="respondents", emit=self.emit, every_s=self.every_s, bar=self.bar,
                                  describe=self._per_country)

    def update(self, manifest: pd.DataFrame) -> None:
        for country, n in manifest[COUNTRY].value_counts().items():
            self.done[country] = self.done.get(country, 0) + int(n)
        self._progress.update(len(manifest))

    @property
    def finished(self) -> bool:
        return all(self.done.get(c, 0) >= n for c, n in self.total.items())

    def _per_country(self) -> str:
        return " ".join(f"{c} {self.done.get(c, 0)}/{n}" for c, n in sorted(self.total.items()))

    def line(self) -> str:
        return self._progress.line()

    def close(self) -> None:
        self._progress.close()
