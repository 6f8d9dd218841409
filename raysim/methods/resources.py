"""The resources a method kind may declare, by name, and how a model replica loads each.

A run config gives a resource under the same key (``vectors:``, ``preset:``, ``translations:``,
``fit:``); the run passes its location to every actor, which loads it once however many methods
use it and hands the loaded object to the kinds in ``Setup.resources``.
"""

from __future__ import annotations

from typing import Any, Callable


def _vectors(location: str) -> Any:
    from ..identity.library import load_library

    return load_library(location)


def _preset(location: str) -> Any:
    from ..identity.injection import load_preset

    return load_preset(location)


def _translations(location: str) -> Any:
    from .translation import Translations

    return Translations.load(location)


def _fit(location: str) -> Any:
    from ..fits.artefact import load_fit

    return load_fit(location)


LOADERS: dict[str, Callable[[str], Any]] = {
    "vectors": _vectors,          # a vector library directory, or "embedded"
    "preset": _preset,            # a model preset name (configs/models) or YAML file
    "translations": _translations,  # the cache of `raysim translate`
    "fit": _fit,                  # the directory `raysim fit` wrote
}


def load_resource(name: str, location: str) -> Any:
    if name not in LOADERS:
        raise ValueError(f"unknown resource {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name](location)
