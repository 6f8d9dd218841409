"""Where a command's noise goes: one log file per invocation, ``$RAYSIM_LOGS`` (default: the
cache's ``logs`` directory), holding what Ray and the libraries under it print while a session
runs and the traceback of a failure. The terminal keeps raysim's own lines; ``--verbose``
(``RAYSIM_VERBOSE=1``) keeps everything on the terminal instead, as does a driver that
``ray job submit`` runs (whose output already goes to the job's log).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Iterator


def verbose() -> bool:
    return os.environ.get("RAYSIM_VERBOSE") == "1"


def log_dir() -> Path:
    from .engine.loading import cache_root

    return Path(os.environ.get("RAYSIM_LOGS") or cache_root() / "logs")


@cache
def log_path() -> Path:
    """This process's log file (created on first use)."""
    directory = log_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"raysim-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


_used: list[Path] = []   # the log file, once a block has sent output to it


def log_in_use() -> Path | None:
    """This process's log file if anything was sent to it (what run.json records)."""
    return _used[0] if _used else None


@contextmanager
def stderr_to_log() -> Iterator[None]:
    """Send file descriptor 2 (Python's and native libraries' stderr, and that of the processes
    started meanwhile, such as a local Ray instance's) to the log file for the block."""
    if verbose() or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        # (a `ray job submit` driver: its output already is a log, `ray job logs`, off the terminal)
        yield
        return
    if not _used:
        _used.append(log_path())
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(log_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
