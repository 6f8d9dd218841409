"""``run.json``: what produced a run, experiment, search or fit directory.

Each invocation that writes into such a directory records the raysim version and the git commit of
its source (when it runs from a checkout), the versions of the libraries results depend on, the
command line, its start and end times, its status, and the rows it produced per second. A rerun
into the directory (a resumed run) becomes the record's head; the earlier invocations stay under
``history``, newest first.
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from ..atomic import write_text_atomic
from ..logs import log_home, log_in_use

RUN_FILE = "run.json"
PACKAGES = ("torch", "transformers", "ray", "vllm", "pyarrow", "pandas", "numpy", "scipy", "pot",
            "scikit-learn", "matplotlib")
_command: list[str] = []


def set_command(argv: list[str]) -> None:
    """The command line recorded (the CLI gives its own; otherwise the process's argv)."""
    _command[:] = argv


def command_line() -> str:
    return shlex.join(_command or sys.argv)


@cache
def git_commit() -> dict[str, Any] | None:
    """The commit of the checkout raysim runs from, and whether it had uncommitted changes; None
    for an installed package or where git is missing."""
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


@cache
def provenance() -> dict[str, Any]:
    from .. import __version__

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"raysim": __version__, "git": git_commit(), "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions}


def read_run_json(directory: str | Path) -> dict[str, Any] | None:
    """The directory's record, or None where there is none (or it is unreadable: it only
    describes, so a damaged one must not stop a report)."""
    path = Path(directory) / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


@contextmanager
def recording(directory: str | Path, kind: str) -> Iterator[dict[str, Any]]:
    """Record this invocation in ``directory/run.json`` when the block ends (finished, failed or
    interrupted), if the directory exists then. The block may put ``rows`` (result rows it
    produced; rows/s follows) and other facts into the dict it gets."""
    directory = Path(directory)
    facts: dict[str, Any] = {}
    started = time.time()
    status = "failed"
    with log_home(directory):   # the outermost directory receives the log when the block ends
        try:
            yield facts
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if directory.is_dir():
                _write(directory, kind, started, time.time(), status, facts)


def _write(directory: Path, kind: str, started: float, ended: float, status: str, facts: dict[str, Any]) -> None:
    seconds = ended - started
    record: dict[str, Any] = {"kind": kind, "status": status, "command": command_line(),
                              "started": _stamp(started), "ended": _stamp(ended), "seconds": round(seconds, 3)}
    rows = facts.get("rows")
    if isinstance(rows, int):
        record["rows"] = rows
        record["rows_per_s"] = round(rows / seconds, 3) if seconds > 0 else None
    record.update({k: v for k, v in facts.items() if k != "rows"})
    if log_in_use() is not None:
        record["log"] = str(log_in_use())   # Ray's and the libraries' output of this invocation
    record.update(provenance())
    old = read_run_json(directory)
    if old is not None:
        record["history"] = [{k: v for k, v in old.items() if k != "history"}] + list(old.get("history", []))
    write_text_atomic(directory / RUN_FILE, json.dumps(record, indent=1, default=str) + "\n")


def describe(record: dict[str, Any]) -> list[str]:
    """A few lines for a terminal: version and commit, command, times, rows/s."""
    git = record.get("git") or {}
    commit = f", git {git['commit'][:10]}{' (uncommitted changes)' if git.get('dirty') else ''}" if git else ""
    packages = record.get("packages", {})
    libs = ", ".join(f"{k} {packages[k]}" for k in ("torch", "transformers", "ray") if k in packages)
    lines = [f"produced by raysim {record.get('raysim', '?')}{commit}; {libs}",
             f"command: {record.get('command', '?')}",
             f"{record.get('status', '?')}: {record.get('started', '?')} .. {record.get('ended', '?')} "
             f"({record.get('seconds', 0):.0f} s)"]
    if record.get("rows_per_s") is not None:
        lines[-1] += f", {record['rows']} rows at {record['rows_per_s']:.2f} rows/s"
    if record.get("log"):
        lines.append(f"Ray's and the libraries' logs: {record['log']}")
    return lines
