"""A failure as one line: bad input says what to fix; a fault (an actor that died, a bug) says
its first cause and where its full traceback went.

Ray wraps an exception raised in an actor or task (``RayTaskError``, ``ActorDiedError``, Ray
Data's own wrappers) and carries the original's traceback as text; the line shown is the
original's ``Type: message`` line, found through ``.cause``/``__cause__`` or in that text.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

from .logs import note_log_used

# "SomethingError: message" / "Exception: message" as the last line of a traceback's text
_RAISED = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt))(?::\s*(.*))?$")


def describe(e: BaseException, bad_input: tuple[type[BaseException], ...]) -> tuple[int, str]:
    """(exit code, line): 2 and the message for bad input, 1 and the cause and log for a fault."""
    cause = root_cause(e)
    if isinstance(e, bad_input) or (cause is not e and isinstance(cause, bad_input) and not _remote(e)):
        return 2, _message(cause)
    log = write_log(e)
    return 1, f"{cause_line(e)} (traceback and logs: {log})"


def root_cause(e: BaseException) -> BaseException:
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        inner = getattr(e, "cause", None)
        if isinstance(inner, BaseException):
            e = inner
        elif e.__cause__ is not None and str(e.__cause__):   # (Ray Data chains empty markers)
            e = e.__cause__
        else:
            break
    return e


def _remote(e: BaseException) -> bool:
    return type(e).__module__.startswith("ray.")


def _message(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, KeyError) and len(e.args) == 1:
        text = str(e.args[0])
    first = text.splitlines()[0] if text else ""
    return first or type(e).__name__


def cause_line(e: BaseException) -> str:
    """The first cause of a fault, one line: ``Type: message``."""
    cause = root_cause(e)
    if not _remote(cause):
        return f"{type(cause).__name__}: {_message(cause)}"
    # A Ray error whose cause is only text: the last "Type: message" line of the remote traceback.
    lines = [line for line in str(cause).splitlines() if line.strip()]
    for line in reversed(lines):
        m = _RAISED.match(line)
        if m and not m.group(1).startswith(("Ray", "Actor")):
            return f"{m.group(1)}: {m.group(2) or ''}".rstrip(": ")
    return f"{type(cause).__name__}: {lines[0].strip() if lines else ''}"



def write_log(e: BaseException) -> Path:
    """The fault's full traceback (Ray's remote ones and the notes added on the way, such as
    where Ray's own logs are), appended to this command's log file."""
    path = note_log_used()
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(e)))
    return path
