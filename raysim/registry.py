"""Registries of named parts (population sources, method kinds, fits, post-processing steps).

Each registry holds classes by name. Built-in parts register when their package is imported;
third-party parts through an entry-point group, whose modules are imported on the first lookup
(they register themselves on import, as lm-evaluation-harness's ``@register_model`` does).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, group: str, builtins: str | tuple[str, ...],
                 error: type[ValueError] = ValueError) -> None:
        """``what`` names a part in messages ("method kind"); ``group`` is the entry-point group;
        ``builtins`` the package(s) whose import registers the built-in parts (a part built on
        a higher layer, e.g. the aligned persona set source, is imported by name on first lookup)."""
        self.what, self.group, self.error = what, group, error
        self.builtins = (builtins,) if isinstance(builtins, str) else builtins
        self._parts: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make the part available as ``name``."""
        def add(part: T) -> T:
            if name in self._parts and self._parts[name] is not part:
                raise ValueError(f"{self.what} {name!r} is registered twice "
                                 f"({self._parts[name].__module__} and {part.__module__})")
            self._parts[name] = part
            return part
        return add

    def all(self) -> dict[str, T]:
        """Every part by name, the built-in ones and the entry-point group's."""
        if not self._loaded:
            self._loaded = True
            for module in self.builtins:
                import_module(module)
            for ep in entry_points(group=self.group):
                ep.load()   # the module registers its parts on import
        return dict(self._parts)

    def get(self, name: str, where: str = "") -> T:
        parts = self.all()
        if name not in parts:
            prefix = f"{where}: " if where else ""
            raise self.error(f"{prefix}unknown {self.what} {name!r}; known: {sorted(parts)}")
        return parts[name]
