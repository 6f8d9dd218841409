"""``raysim plan CONFIG``: what a run will cost, before it starts.

A probe of the run's respondents (spread over its countries) goes through the run's own method
on the ``dry`` engine (raysim.engine.dry: the model's tokenizer and chat template, no weights),
which counts the requests, prefixes and tokens a real backend would compute; the counts scale to
the whole sample. GPU-hours come from a measured rate (``rate``: respondent-questions per second
per GPU, e.g. from bench/engine_throughput.py) or, without one, from the model's FLOPs (2 × its
parameters per token) at an assumed fraction of the device's dense peak, stated in the output.
The shards (one per actor batch) and their size come from the probe's own result rows (with
random probabilities, which compress as real ones do), written as a shard is. Tokens are counted
as fed before the engine's option trie shares them: an upper bound on what it computes.
"""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..engine.backends import EngineSpec
from ..runs.results import results_table
from ..survey.codebook import load_codebook
from ..survey.population import BASE_COLUMNS, ID, read_population
from .actor import ModelActor, Task, Work
from .config import RunConfig
from .simulate import sample

H100_BF16_TFLOPS = 989.0
"""NVIDIA H100 SXM dense bf16 peak (the default device of the FLOPs estimate)."""


@dataclass(frozen=True)
class Plan:
    respondents: int
    questions: int
    requests: int
    prefixes: int
    tokens: int
    parameters: int | None
    """The model's parameter count (None: the method needs no model)."""
    shards: int
    bytes: int
    gpu_hours: float | None
    basis: str
    """How ``gpu_hours`` was reached (the rate measured or assumed)."""

    def lines(self, gpus: int) -> list[str]:
        out = [f"respondents: {self.respondents:,}", f"questions: {self.questions}",
               f"requests: {self.requests:,} ({self.prefixes:,} shared prefixes)", f"tokens: {self.tokens:,}"]
        if self.parameters is not None:
            out.append(f"model parameters: {self.parameters:,}")
        if self.gpu_hours is None:
            out.append("gpu-hours: 0 (the method needs no model)")
        else:
            out.append(f"gpu-hours: {self.gpu_hours:,.3g} ({self.basis}); on {gpus} GPU(s): "
                       f"{self.gpu_hours / gpus:,.3g} h wall-clock")
        out.append(f"shards: {self.shards:,} ({self.bytes / 2**30:,.3f} GiB of results)")
        return out


def plan_run(config: RunConfig, *, probe: int = 16, rate: float | None = None,
             peak_tflops: float = H100_BF16_TFLOPS, utilisation: float = 0.5) -> Plan:
    if probe < 1:
        raise ValueError(f"--probe must be at least 1 respondent, got {probe}")
    if rate is not None and not rate > 0:
        raise ValueError(f"--rate must be positive (respondent-questions per second per GPU), got {rate}")
    if not 0 < utilisation <= 1:
        raise ValueError(f"--utilisation must be in (0, 1], got {utilisation}")
    config.check_model()
    with tempfile.TemporaryDirectory(prefix="raysim-plan-") as tmp:   # a generated population goes here
        population = config.population.ensure(tmp)
        resolved = config.resolved(tmp)
        chosen = sample(population, config)
        qids = resolved["questions"]
        codebook = load_codebook(resolved["codebook"])
        picked = chosen.sample(n=min(probe, len(chosen)), random_state=config.sampling.seed)[ID].to_numpy()
        columns = list(dict.fromkeys([*BASE_COLUMNS, *config.spec.columns(codebook)]))
        people = read_population(population, columns=columns, ids=picked)
        task = Task(method=config.spec, run_id="plan", config_hash="plan", results_dir=str(Path(tmp) / "results"),
                    todo=picked, answer=config.answer, seed=config.sampling.seed,
                    resources=config.resource_locations())
        actor = ModelActor(Work(model=config.model, engine=EngineSpec("dry"), codebook=codebook.name,
                                qids=tuple(qids), tasks=(task,)))
        rows = actor.simulators[0](people, "plan", "plan")
    # sized with random probabilities: the dry engine's uniform ones would compress unlike real ones
    rng = np.random.default_rng(0)
    rows["probs"] = [None if p is None else rng.dirichlet(np.ones(len(p))).astype(np.float32) for p in rows["probs"]]
    buffer = io.BytesIO()
    pq.write_table(results_table(rows), buffer)
    scale = len(chosen) / len(people)
    shards = math.ceil(len(chosen) / config.actors.batch_size)
    size = int(buffer.tell() / len(rows) * len(chosen) * len(qids))
    engine = actor.engine
    if engine is None:
        return Plan(len(chosen), len(qids), len(chosen) * len(qids), 0, 0, None, shards, size, None, "")
    counts = engine.counts
    requests, tokens = round(counts.requests * scale), round(counts.tokens * scale)
    if rate is not None:
        hours, basis = len(chosen) * len(qids) / rate / 3600, f"at the given rate of {rate:g} respondent-questions/s per GPU"
    else:
        hours = 2 * engine.parameters * tokens / (peak_tflops * 1e12 * utilisation) / 3600
        basis = (f"assumed: 2 FLOPs per parameter per token at {utilisation:.0%} of a {peak_tflops:g} TFLOP/s dense "
                 "peak (an H100's bf16 by default); give --rate to use a measured one")
    return Plan(len(chosen), len(qids), requests, round(counts.groups * scale), tokens, engine.parameters,
                shards, size, hours, basis)
