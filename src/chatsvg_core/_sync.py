"""Run the async core from sync code: one event-loop thread per process.

Sync hosts (Celery, Django, scripts, Jupyter cells) call async parts of the
library through :func:`run_sync`. It does not use ``asyncio.run`` per call,
which fails inside a running loop (Jupyter) and would give every call a fresh
loop, defeating connection pools; instead one daemon thread runs an anyio
``BlockingPortal`` for the life of the process, and every sync call is sent
to it. Async resources (stores, HTTP clients) created through the portal stay
bound to that one loop, so they can be reused across calls.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from chatsvg_core._green import green_loop_factory

__all__ = ["portal", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_state: dict[str, Any] = {}


def portal() -> BlockingPortal:
    """The process-wide portal, started on first use (and again after ``fork``)."""
    with _lock:
        pid = os.getpid()
        if _state.get("pid") != pid:
            # A forked child inherits the parent's dict but not its loop thread.
            cm: AbstractContextManager[BlockingPortal] = _start_portal()
            _state.update(pid=pid, cm=cm, portal=cm.__enter__())
            atexit.register(_shutdown, pid)
        result: BlockingPortal = _state["portal"]
        return result


def _start_portal() -> AbstractContextManager[BlockingPortal]:
    # Under gevent the loop runs in a greenlet: give it a selector that waits
    # in gevent's hub only when it has nothing to do (see chatsvg_core._green).
    factory = green_loop_factory()
    if factory is None:
        return start_blocking_portal()
    return start_blocking_portal(backend_options={"loop_factory": factory})


def _shutdown(pid: int) -> None:
    with _lock:
        if _state.get("pid") == pid:
            cm = _state.pop("cm")
            _state.clear()
            cm.__exit__(None, None, None)


def run_sync(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Call ``await func(*args)`` on the library's loop thread and return its result.

    Must not be called from that loop thread itself (it would deadlock);
    async code should await the async API directly.
    """
    return portal().call(func, *args)
