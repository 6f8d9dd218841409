"""The Ray session of a command: connected once, logs kept off the terminal, shut down after.

``ray_session(lazy=True)`` connects only when a job first needs the cluster (``ray_connect``),
so a command whose input is bad, or whose runs are already complete, never starts Ray.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from ..logs import stderr_to_log, verbose

_started: list[bool] = []   # per open session (innermost last): whether it started Ray


@contextmanager
def ray_session(*, lazy: bool = False) -> Iterator[None]:
    """Ray for a job: the cluster RAY_ADDRESS names (set by `ray job submit`), a running local
    one, or a new local instance; shut down afterwards if this session connected."""
    import ray

    with stderr_to_log():   # Ray's and the libraries' logging: the log file unless --verbose
        _started.append(False)
        try:
            if not lazy:
                ray_connect()
            yield
        except Exception as e:
            if ray.is_initialized():
                e.add_note(f"Ray's logs of this session (the actors' output among them): {ray_logs()}")
            raise
        finally:
            if _started.pop():
                ray.shutdown()


def ray_connect() -> None:
    """Connect to Ray if not yet connected (inside a session: shut down when it ends)."""
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=verbose())   # the actors' output stays in Ray's session logs
        if _started:
            _started[-1] = True


def ray_logs() -> str:
    """The connected Ray session's log directory."""
    import ray

    try:   # (not public API: where the session lives is only reachable through the node)
        return os.path.join(ray._private.worker.global_worker.node.get_session_dir_path(), "logs")
    except AttributeError:
        return "the logs directory of the Ray session (ray start's --temp-dir; default /tmp/ray/session_latest)"
