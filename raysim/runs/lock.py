"""One writer per run directory: an exclusive advisory lock on RUN_DIR/.lock.

``flock`` locks belong to the open file, so a second run in the same process, in another
process or (on NFS, where Linux maps them to POSIX locks) on another host is refused while the
first holds it; the kernel drops the lock when its holder dies, so a killed run never leaves the
directory locked. The file records the holder (host, pid, start) for the refusal's message.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".lock"


class RunDirBusy(ValueError):
    """The run directory is held by another run."""


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold RUN_DIR's lock for the block (the directory is created if needed)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise RunDirBusy(f"{run_dir} is in use by {holder}; wait for that run to end or "
                             "choose another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)   # releases the lock
