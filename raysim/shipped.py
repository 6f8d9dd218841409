"""Where raysim's shipped configs are: ``methods/``, ``models/``, ``experiments/``, ``tune/``,
``surveys/``, ... (every subdirectory of ``configs/``).

One copy, nothing generated: the repository's ``configs/`` directory, which setup.py maps
to the package ``raysim.configs``. A wheel installs it as ``raysim/configs/``; in a checkout (the
editable install ``make`` makes, a Ray job's ``working_dir``, ``PYTHONPATH``) it is the
``configs/`` beside ``raysim/``. It is found beside the raysim that was imported, so code and
configs come from the same copy (``importlib.resources.files("raysim.configs")`` would find the
installed copy even where a job imports raysim from its working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

# Environment variables that point one kind at another directory.
OVERRIDES = {"methods": "RAYSIM_METHOD_CONFIGS", "models": "RAYSIM_MODEL_CONFIGS"}

_PACKAGE = Path(__file__).resolve().parent


def configs_root() -> Path:
    """``raysim/configs`` in an installed wheel, else the checkout's ``configs/``."""
    installed = _PACKAGE / "configs"
    return installed if installed.is_dir() else _PACKAGE.parent / "configs"


def config_dir(kind: str) -> Path:
    """The directory of one kind of shipped config (``$RAYSIM_METHOD_CONFIGS`` /
    ``$RAYSIM_MODEL_CONFIGS`` override methods / models)."""
    override = os.environ.get(OVERRIDES.get(kind, ""))
    return Path(override) if override else configs_root() / kind


def shipped_config(kind: str, name: str) -> Path:
    """One shipped config file, e.g. ``shipped_config("experiments", "demo.yaml")``."""
    return config_dir(kind) / name
