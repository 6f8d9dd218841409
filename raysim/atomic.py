"""Atomic writes, the one way raysim writes what it keeps: build a temporary sibling, fsync it,
rename it into place, fsync the directory. Readers see all or nothing, a crash leaves the old
content (or none), and after the call returns the new content survives a power cut.

Temporary siblings are hidden and named ``.<name>.tmp-<host>-<pid>-<hex>``, so a reader that
lists a directory never sees one, and the next writer of ``<name>`` removes those whose writer
died (same host, process gone; from another host, a day old).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Callable

_TMP = re.compile(r"\.tmp-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}")
FOREIGN_STALE_S = 24 * 3600   # a writer on another host cannot be asked whether it lives


def temporary_sibling(path: Path, suffix: str = "") -> Path:
    """A hidden name next to ``path`` for building it (``suffix`` for writers that need one)."""
    return path.parent / f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def remove_stale(path: Path) -> list[Path]:
    """Remove the temporary siblings of ``path`` that writers which died left behind."""
    removed = []
    host, now = socket.gethostname(), time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        m = _TMP.match(tmp.name[len(path.name) + 1:])
        try:
            if m and m["host"] == host:
                stale = not _alive(int(m["pid"]))
            else:   # another host's writer, or one from before names held their writer
                stale = now - tmp.lstat().st_mtime > FOREIGN_STALE_S
        except FileNotFoundError:   # its writer published or removed it meanwhile
            continue
        if stale:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def fsync(path: Path) -> None:
    """Flush a file's or a directory's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[Path], object], *, suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then make it ``path``; if ``write``
    fails, ``path`` is untouched and the temporary file removed."""
    path = Path(path)
    remove_stale(path)
    tmp = temporary_sibling(path, suffix)
    try:
        write(tmp)
        fsync(tmp)
        os.replace(tmp, path)
        fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def staging_dir(target: str | Path) -> Path:
    """A new hidden directory next to ``target`` to build it in (``publish_dir`` moves it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    staging = temporary_sibling(target)
    staging.mkdir()
    return staging


def publish_dir(staging: Path, target: str | Path, *, replace: bool = True) -> bool:
    """Make the built directory ``staging`` the directory ``target``: its files fsynced, then one
    rename (an existing ``target`` is moved aside first and removed after, with ``replace``).
    Without ``replace`` an existing ``target`` wins: ``staging`` is removed and False returned
    (two processes building the same cache entry)."""
    target = Path(target)
    for f in sorted(staging.rglob("*"), reverse=True):   # files before the directories holding them
        fsync(f)
    fsync(staging)
    old = None
    if target.exists():
        if not replace:
            shutil.rmtree(staging, ignore_errors=True)
            return False
        old = temporary_sibling(target, ".old")
        os.replace(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.replace(old, target)   # put the previous content back
        elif not replace and target.is_dir():   # another process published it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
            return False
        raise
    fsync(target.parent)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    return True
