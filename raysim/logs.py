"""Where a command's noise goes: one log file per run, experiment, search or fit, holding what Ray
and the libraries under it print while the command runs and the traceback of a failure. The
terminal keeps raysim's own lines; ``--verbose`` (``RAYSIM_VERBOSE=1``) keeps everything on the
terminal instead, as does a driver that ``ray job submit`` runs (whose output already goes to the
job's log).

While a command runs its log is staged in ``$RAYSIM_LOGS`` (default: the cache's ``logs``
directory); when the outermost directory it writes (``raysim.runs.metadata.recording``) is done,
the log moves into that directory's ``logs/``. Moving it only then keeps "bad input leaves no
directory": a command that fails before its directory exists, or removes the directory it made in
vain, leaves its log in the staging place, whose path the error line names.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

LOGS_DIR = "logs"   # a run directory's own logs


def verbose() -> bool:
    return os.environ.get("RAYSIM_VERBOSE") == "1"


def log_dir() -> Path:
    from .engine.loading import cache_root

    return Path(os.environ.get("RAYSIM_LOGS") or cache_root() / "logs")


class _Log:
    path: Path | None = None   # the current log file, once named
    used = False               # whether anything was sent to it
    redirects = 0              # open stderr_to_log blocks: file descriptor 2 is the log
    home: Path | None = None   # the directory the log moves into when its block ends
    terminal: TextIO | None = None   # the stderr the outermost block took from the terminal


_log = _Log()


def log_path() -> Path:
    """The current log file (named on first use, staged until a directory receives it)."""
    if _log.path is None:
        directory = log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        _log.path = directory / f"raysim-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return _log.path


def log_in_use() -> Path | None:
    """Where the log of the directory being recorded ends up, if anything was sent to it (what
    run.json records): its home directory's ``logs/`` once one is claimed."""
    if not _log.used:
        return None
    if _log.home is not None:
        return _log.home / LOGS_DIR / log_path().name
    return log_path()


def _point_stderr_at(path: Path) -> None:
    if _log.redirects:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stderr.flush()
        os.dup2(fd, 2)
        os.close(fd)


@contextmanager
def log_home(directory: Path) -> Iterator[None]:
    """The block whose directory receives the log: the outermost one (an experiment's runs leave
    theirs to the experiment). A log that an earlier block's directory received is not
    continued: this block starts a fresh one."""
    if _log.home is not None:
        yield
        return
    if _log.path is not None and _log.path.parent != log_dir():
        _log.path, _log.used = None, bool(_log.redirects)
        _point_stderr_at(log_path())
    _log.home = Path(directory)
    try:
        yield
    finally:
        _log.home = None
        path = log_path()
        if directory.is_dir() and _log.used and path.exists():
            target = directory / LOGS_DIR / path.name
            target.parent.mkdir(exist_ok=True)
            sys.stderr.flush()
            with open(path, "rb") as staged, open(target, "ab") as kept:   # (appends to a same-named one)
                shutil.copyfileobj(staged, kept)
            path.unlink()
            _log.path = target
            _point_stderr_at(target)


@contextmanager
def stderr_to_log() -> Iterator[None]:
    """Send file descriptor 2 (Python's and native libraries' stderr, and that of the processes
    started meanwhile, such as a local Ray instance's) to the log file for the block."""
    if verbose() or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        # (a `ray job submit` driver: its output already is a log, `ray job logs`, off the terminal)
        yield
        return
    _log.used = True
    sys.stderr.flush()
    outermost = _log.terminal is None
    if outermost:   # the terminal's stderr: restored at the end, and where progress bars draw
        saved = os.dup(2)
        _log.terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding,
                                  errors="backslashreplace")
    _log.redirects += 1
    _point_stderr_at(log_path())
    try:
        yield
    finally:
        sys.stderr.flush()
        _log.redirects -= 1
        if outermost:
            os.dup2(saved, 2)
            os.close(saved)
            _log.terminal.close()
            _log.terminal = None
        else:   # (the log may have moved meanwhile: the outer block goes on writing where it is now)
            _point_stderr_at(log_path())


def terminal() -> TextIO:
    """Where a progress bar draws: the terminal's stderr, also while file descriptor 2 is the log."""
    return _log.terminal or sys.stderr


def note_log_used() -> Path:
    """The current log file, marked as holding something (a failure's traceback)."""
    _log.used = True
    return log_path()


def print_log_line() -> None:
    """The line at the end of a command that wrote a directory: where its log went."""
    if (path := log_in_use()) is not None:
        print(f"Ray's and the libraries' logs: {path}")
