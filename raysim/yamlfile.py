"""YAML files as users write them: loaded safely (no tags that build Python objects), and a
syntax error or a ``!!python/...`` tag is a one-line error naming the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YAMLFileError(ValueError):
    """A file that is not valid YAML (or uses tags safe loading refuses)."""


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise YAMLFileError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise YAMLFileError(f"{where}: not valid YAML{at}: {problem}") from None
