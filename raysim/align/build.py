"""An aligned persona set made from population sources: what ``raysim personas align`` and the
``aligned`` population source (``population: {aligned: {...}}``) both do."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs.results import read_results
from ..runs.rundir import results_dir
from ..survey.codebook import CODEBOOKS, Codebook, load_codebook
from ..survey.population import codebook_of, read_population
from ..survey.sources import parse_source, source_from_text
from ..yamlfile import load_yaml
from .aligned_set import METHODS, Alignment, align_parts, load_marginals, write_aligned_set
from .importance import AlignError
from .quality import QualityCheck, quality_check

MARGINALS = "marginals"
"""The target key of a marginals-only target: ``target: {marginals: FILE}``."""


@dataclass(frozen=True)
class AlignSpec:
    pool: dict[str, Any]
    """A population source (``{path: DIR}``, ``{synthetic: {n: N}}``, ``{cardata: true}``)."""
    target: dict[str, Any]
    """A population source, or ``{marginals: FILE}``."""
    by: list[str]
    method: str = "ipf"
    per_country: bool = False
    size: int | None = None
    cap: float | None = None
    reg: float = 0.01
    stay: float = 0.1
    cost_weights: dict[str, float] | None = None
    """OT: each attribute's weight in the ground cost (default 1 each)."""
    seed: int = 0
    check: str | None = None
    """A run of the pool asking its attribute items: personas it contradicts are dropped first
    (raysim.align.quality)."""
    tolerance: int = 0
    """Contradictions a persona may have and stay."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AlignError(f"method {self.method!r} is not one of {list(METHODS)}")
        if not self.by:
            raise AlignError("by names no attribute")
        if self.size is not None and self.size < 1:
            raise AlignError(f"size must be positive, got {self.size}")
        if self.cap is not None and self.cap <= 1:
            raise AlignError(f"cap must be > 1 (× the mean weight), got {self.cap}")
        if self.cost_weights is not None and not all(w >= 0 for w in self.cost_weights.values()):
            raise AlignError(f"cost weights must be ≥ 0, got {self.cost_weights}")

    def to_config(self) -> dict[str, Any]:
        """Sources resolved (absolute paths; a marginals file by content too), as a run's hash needs."""
        d = dataclasses.asdict(self)
        d["pool"] = parse_source(self.pool, "pool").to_mapping()
        if MARGINALS in self.target:
            path = Path(self.target[MARGINALS])
            if not path.is_file():
                raise AlignError(f"target.{MARGINALS}: {path} is not a file")
            d["target"] = {MARGINALS: str(path.resolve()),
                           "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        else:
            d["target"] = parse_source(self.target, "target").to_mapping()
        if self.check is not None:
            d["check"] = str(Path(self.check).resolve())
        return d


def target_from_text(text: str) -> dict[str, Any]:
    """``--target``: a marginals YAML file, or any population source's text."""
    if text.endswith((".yaml", ".yml")) and Path(text).is_file():
        return {MARGINALS: text}
    return source_from_text(text).to_mapping()


def _marginals_codebook(path: str, default: Codebook) -> Codebook:
    raw = load_yaml(path)
    name = raw.get("codebook") if isinstance(raw, dict) else None
    if name is None:
        return default
    if not isinstance(name, str):
        raise AlignError(f"{path}: codebook must name a codebook (cardata, wvs7 or a YAML path), got {name!r}")
    # a relative codebook path is the marginals file's neighbour
    return load_codebook(name if name in CODEBOOKS or Path(name).is_absolute() else str(Path(path).parent / name))


def make_aligned_set(spec: AlignSpec, out: str | Path) -> tuple[dict[str, Alignment], QualityCheck | None]:
    """Align the pool to the target and write the set to ``out`` (raysim.align.aligned_set); the
    alignments per country and the quality check, if one was asked for."""
    with tempfile.TemporaryDirectory(prefix="raysim-align-") as tmp:   # generated sources are written here
        if MARGINALS in spec.target and len(spec.target) != 1:
            raise AlignError(f"target {{{MARGINALS}: FILE}} takes no other key, got {sorted(spec.target)}")
        pool_path = parse_source(spec.pool, "pool").ensure(Path(tmp) / "pool")
        pool, check = read_population(pool_path), None
        about: dict[str, Any] = {"pool": spec.pool, "target": spec.target, "per_country": spec.per_country}
        if spec.check is not None:
            check = quality_check(read_results(results_dir(spec.check)), pool, codebook_of(pool_path),
                                  tolerance=spec.tolerance)
            pool = check.pool[~check.dropped].reset_index(drop=True)
            about["quality"] = {"run": str(spec.check), "tolerance": spec.tolerance, **check.summary()}
        if MARGINALS in spec.target:
            file = str(spec.target[MARGINALS])
            if not Path(file).is_file():
                raise AlignError(f"target.{MARGINALS}: {file} is not a file")
            codebook = _marginals_codebook(file, codebook_of(pool_path))
            target, humans = load_marginals(file, codebook), None
        else:
            target_path = parse_source(spec.target, "target").ensure(Path(tmp) / "target")
            codebook, humans = codebook_of(target_path), read_population(target_path)
            target = humans
        parts = align_parts(pool, target, list(spec.by), codebook, per_country=spec.per_country,
                            method=spec.method, cap=spec.cap, reg=spec.reg, stay=spec.stay,
                            cost_weights=spec.cost_weights, seed=spec.seed)
        write_aligned_set(pool, parts, codebook, out, size=spec.size, seed=spec.seed, humans=humans, about=about)
    return parts, check
