"""The vector library on disk: everything PSII injects for one model.

A library is a directory holding ``vectors.safetensors`` — one tensor [n_layers+1, hidden] per
(attribute, value) under ``demographic/<attribute>/<value>`` (row ℓ = the vector for layer ℓ in
hidden_states indexing; row 0, the embeddings, is kept for completeness) and one tensor [hidden]
per language under ``language/<code>`` — and ``manifest.json`` naming the model it was built for.
No pickle: safetensors and JSON only. A library is written into a staging directory and renamed
into place, so a reader never sees half of one and a failed build leaves the old one intact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from ..atomic import publish_dir, staging_dir

FORMAT_VERSION = 1
VECTORS = "vectors.safetensors"
MANIFEST = "manifest.json"
DEMOGRAPHIC = "demographic"
LANGUAGE = "language"


class LibraryError(ValueError):
    """A library that is missing, malformed, incomplete or built for another model."""


@dataclass(frozen=True)
class Manifest:
    model: str
    fingerprint: str
    hidden_size: int
    n_layers: int
    dtype: str
    dataset_hash: str
    attributes: dict[str, list[int]]
    """attribute → its value codes, in codebook order."""
    languages: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    """How the vectors were made (generation settings, counts, language training), for the record."""
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> Manifest:
        try:
            m = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise LibraryError(f"{where}: malformed manifest ({exc})") from None
        if m.format_version != FORMAT_VERSION:
            raise LibraryError(f"{where}: library format {m.format_version}, this raysim reads {FORMAT_VERSION}")
        attrs = {str(a): [int(v) for v in vals] for a, vals in m.attributes.items()}
        return replace(m, attributes=attrs, languages=list(m.languages))


def _key(attribute: str, value: int) -> str:
    return f"{DEMOGRAPHIC}/{attribute}/{int(value)}"


class VectorLibrary:
    """Demographic and language vectors of one model, with their manifest."""

    def __init__(self, manifest: Manifest, demographic: Mapping[tuple[str, int], np.ndarray],
                 languages: Mapping[str, np.ndarray] | None = None) -> None:
        self.manifest = manifest
        self._demographic = {(a, int(v)): np.asarray(t, dtype=np.float32) for (a, v), t in demographic.items()}
        self._languages = {k: np.asarray(t, dtype=np.float32) for k, t in (languages or {}).items()}
        self._check()

    def _check(self) -> None:
        m = self.manifest
        rows = (m.n_layers + 1, m.hidden_size)
        for attribute, values in m.attributes.items():
            for value in values:
                t = self._demographic.get((attribute, value))
                if t is None:
                    raise LibraryError(f"library lists {attribute}={value} but holds no vector for it")
                if t.shape != rows:
                    raise LibraryError(f"vector {attribute}={value} has shape {t.shape}, expected {rows}")
        extra = set(self._demographic) - {(a, v) for a, vals in m.attributes.items() for v in vals}
        if extra:
            raise LibraryError(f"vectors not listed in the manifest: {sorted(extra)}")
        if sorted(self._languages) != sorted(m.languages):
            raise LibraryError(f"language vectors {sorted(self._languages)} differ from the manifest's "
                               f"{sorted(m.languages)}")
        for code, t in self._languages.items():
            if t.shape != (m.hidden_size,):
                raise LibraryError(f"language vector {code!r} has shape {t.shape}, expected ({m.hidden_size},)")

    # ------------------------------------------------------------------ lookup

    @property
    def attributes(self) -> dict[str, list[int]]:
        return self.manifest.attributes

    @property
    def languages(self) -> list[str]:
        return list(self.manifest.languages)

    def vector(self, attribute: str, value: int, layer: int | None = None) -> np.ndarray:
        """The [n_layers+1, hidden] vectors of ``attribute = value``, or one layer's row."""
        if attribute not in self.manifest.attributes:
            raise LibraryError(f"no attribute {attribute!r} in the library (has {sorted(self.attributes)})")
        t = self._demographic.get((attribute, int(value)))
        if t is None:
            raise LibraryError(f"no vector for {attribute}={value}: the library has values "
                               f"{self.attributes[attribute]} for {attribute}")
        if layer is None:
            return t
        if not 0 <= layer <= self.manifest.n_layers:
            raise LibraryError(f"layer {layer} out of range 0..{self.manifest.n_layers}")
        return t[layer]

    def language(self, code: str) -> np.ndarray:
        try:
            return self._languages[code]
        except KeyError:
            raise LibraryError(f"no language vector {code!r} in the library (has {self.languages})") from None

    def with_languages(self, vectors: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> VectorLibrary:
        """A copy holding these language vectors (replacing any of the same codes)."""
        langs = {**self._languages, **{k: np.asarray(v, np.float32) for k, v in vectors.items()}}
        params = {**self.manifest.parameters, "languages": dict(parameters)}
        return VectorLibrary(replace(self.manifest, languages=sorted(langs), parameters=params),
                             self._demographic, langs)

    def check_model(self, name: str, fingerprint: str, n_layers: int, hidden_size: int) -> None:
        """Refuse a model other than the one the library was built for."""
        m = self.manifest
        if (n_layers, hidden_size) != (m.n_layers, m.hidden_size):
            raise LibraryError(
                f"vector library built for {m.model} ({m.n_layers} layers, hidden {m.hidden_size}); "
                f"model {name} has {n_layers} layers, hidden {hidden_size}")
        if fingerprint != m.fingerprint:
            raise LibraryError(
                f"vector library built for {m.model} (fingerprint {m.fingerprint}); model {name} has "
                f"fingerprint {fingerprint}: other weights. Build a library for it with "
                "`raysim identity build --model ...`")

    def norms(self) -> pd.DataFrame:
        """Per (attribute, value) the L2 norm of the vector at every layer: columns
        attribute, value, layer, norm."""
        rows = []
        for attribute, values in self.attributes.items():
            for value in values:
                norms = np.linalg.norm(self._demographic[(attribute, value)].astype(np.float64), axis=1)
                rows += [(attribute, value, layer, float(n)) for layer, n in enumerate(norms)]
        return pd.DataFrame(rows, columns=["attribute", "value", "layer", "norm"])

    # ------------------------------------------------------------------ disk

    def save(self, path: str | Path) -> Path:
        """Write the library directory atomically (a staging directory renamed into place)."""
        path = Path(path)
        staging = staging_dir(path)
        try:
            tensors = {_key(a, v): np.ascontiguousarray(t) for (a, v), t in self._demographic.items()}
            tensors |= {f"{LANGUAGE}/{k}": np.ascontiguousarray(t) for k, t in self._languages.items()}
            save_file(tensors, str(staging / VECTORS), metadata={"format": "raysim-vector-library"})
            (staging / MANIFEST).write_text(json.dumps(asdict(self.manifest), indent=2, sort_keys=True) + "\n")
            for f in (staging / VECTORS, staging / MANIFEST, staging):
                f.chmod(0o755 if f.is_dir() else 0o644)   # readable by every user of a shared install
            publish_dir(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VectorLibrary:
        path = Path(path)
        if not (path / MANIFEST).is_file() or not (path / VECTORS).is_file():
            raise LibraryError(f"{path} is not a vector library (needs {MANIFEST} and {VECTORS})")
        try:
            manifest = Manifest.from_json(json.loads((path / MANIFEST).read_text()), str(path))
        except json.JSONDecodeError as exc:
            raise LibraryError(f"{path / MANIFEST}: not valid JSON ({exc})") from None
        try:
            tensors = load_file(str(path / VECTORS))
        except Exception as exc:   # safetensors raises its own error types for corrupt files
            raise LibraryError(f"{path / VECTORS}: unreadable ({exc})") from None
        demographic, languages = {}, {}
        for key, t in tensors.items():
            kind, _, rest = key.partition("/")
            if kind == DEMOGRAPHIC:
                attribute, _, value = rest.partition("/")
                demographic[(attribute, int(value))] = t
            elif kind == LANGUAGE:
                languages[rest] = t
            else:
                raise LibraryError(f"{path / VECTORS}: unexpected tensor {key!r}")
        return cls(manifest, demographic, languages)


def embedded_library_path() -> Path:
    """The library of the embedded default model that ships inside the package."""
    return Path(str(resources.files("raysim.identity") / "data" / "smollm2-135m"))


def load_library(path: str | Path | None = None) -> VectorLibrary:
    """A library by path; None or "embedded" = the packaged library of the embedded default."""
    if path is None or str(path) == "embedded":
        return VectorLibrary.load(embedded_library_path())
    return VectorLibrary.load(path)
