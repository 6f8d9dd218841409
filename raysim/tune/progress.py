"""A search's progress: trials done of those asked for, running, stopped early by the scheduler,
and the best objective so far, as a bar on a terminal or lines in a log
(raysim.pipeline.progress.Progress)."""

from __future__ import annotations

import math
from typing import Callable

from ray.tune import Callback

from ..pipeline.progress import Progress, log


class TrialProgress(Callback):
    def __init__(self, total: int, metric: str, rungs: int, emit: Callable[[str], None] = log) -> None:
        self.total, self.metric, self.rungs, self.emit = total, metric, rungs, emit
        self.running: set[str] = set()
        self.stopped = 0
        self.failed = 0
        self.best = math.inf
        self._progress: Progress | None = None

    def __getstate__(self) -> dict:
        # Tune keeps its run config, callbacks included, to resume a search: a bar is not state.
        return {**self.__dict__, "_progress": None}

    def _shown(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(self.total, unit="trial", desc="trials", emit=self.emit, every_s=0,
                                      describe=self.state)
        return self._progress

    def state(self) -> str:
        best = f"best {self.metric} {self.best:.4f}" if math.isfinite(self.best) else "no result yet"
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{len(self.running)} running, {self.stopped} stopped early{failed}; {best}"

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)
        self._shown()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and \
                result.get("training_iteration", self.rungs) >= self.rungs:   # a trial's final answer only
            self.best = min(self.best, float(value))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        if (trial.last_result or {}).get("training_iteration", self.rungs) < self.rungs:
            self.stopped += 1
        self._shown().update(1)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        self._shown().update(1)

    def on_experiment_end(self, trials, **info) -> None:
        self._shown().close()
