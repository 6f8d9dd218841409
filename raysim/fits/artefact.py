"""A fitted artefact on disk: ``FIT/fit.yaml``, versioned, named by run configs (``fit: FIT``).

    format: raysim-fit/1
    fitter: temperature          # the registered fitter that wrote it
    params: {...}                # the fitter's parameters
    run: {...}                   # the run config the fit simulated with (its hash and method)
    result: {...}                # what the fitter found (its own keys)

A run that names a fit records the file's sha256 in its hash: a refitted artefact is another run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..atomic import write_text_atomic

FORMAT = "raysim-fit/1"
FIT_FILE = "fit.yaml"


class FitError(ValueError):
    """A fit artefact that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Fit:
    path: Path
    fitter: str
    params: dict[str, Any]
    run: dict[str, Any]
    result: dict[str, Any]
    sha256: str


def write_fit(out: str | Path, *, fitter: str, params: dict[str, Any], run: dict[str, Any],
              result: dict[str, Any]) -> Fit:
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / FIT_FILE
    text = yaml.safe_dump({"format": FORMAT, "fitter": fitter, "params": params, "run": run, "result": result},
                          sort_keys=True)
    write_text_atomic(path, text)
    return load_fit(out)


def load_fit(location: str | Path) -> Fit:
    """The artefact in directory ``location`` (or the ``fit.yaml`` itself)."""
    path = Path(location)
    if path.is_dir():
        path = path / FIT_FILE
    if not path.is_file():
        raise FitError(f"{location}: no fit artefact ({FIT_FILE}; write one with raysim fit)")
    raw = path.read_bytes()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise FitError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else None
        raise FitError(f"{path}: format {got!r} is not {FORMAT!r}")
    missing = sorted({"fitter", "params", "run", "result"} - set(doc))
    if missing:
        raise FitError(f"{path}: lacks {missing}")
    return Fit(path=path.resolve(), fitter=doc["fitter"], params=doc["params"] or {}, run=doc["run"] or {},
               result=doc["result"] or {}, sha256=hashlib.sha256(raw).hexdigest())
