"""The library's event loop inside a gevent-patched process (Celery's gevent pool, gevent servers).

Under ``gevent.monkey.patch_all()`` a "thread" is a greenlet, so the loop that
:mod:`chatsvg_core._sync` starts runs in a greenlet of the main thread, and
asyncio's default selector is gevent's ``GeventSelector``. That works, but it
is dear for a loop that waits on a database: every ``add_reader`` /
``remove_reader`` (psycopg does both around every round trip) makes and
closes a libev watcher, and every ``select`` starts one watcher per ready
file, waits on an ``Event`` with a ``Timeout`` and stops them again. In a
Celery worker that was about a sixth of the process's CPU per job.

:class:`GreenEpollSelector` keeps the loop's files in an epoll set of its
own (the original, unpatched ``select.epoll``): registering is one
``epoll_ctl``, and a ``select`` that finds work returns at once. Only when
the loop has nothing to do does it sleep in gevent's hub, on one long-lived
watcher of the epoll descriptor itself (readable when any file in the set
is) and a timer for the loop's next scheduled callback. When the loop has
callbacks ready (``select(0)``) it still yields to the hub once, so the
other greenlets (Celery's consumer, the tasks waiting on the loop) run as
they did with gevent's selector.
"""

from __future__ import annotations

import selectors
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["GreenEpollSelector", "green_loop_factory"]


def _gevent_patched_select() -> bool:
    """True when gevent has patched ``select``/``selectors`` in this process."""
    if "gevent" not in sys.modules:
        return False
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent in sys.modules but not importable
        return False
    return bool(monkey.is_module_patched("select") or monkey.is_module_patched("selectors"))


def green_loop_factory() -> Callable[[], Any] | None:
    """A loop factory for the library's loop under gevent, or ``None`` (the default loop).

    ``None`` unless gevent has patched ``select`` in this process and the
    original epoll is there (Linux).
    """
    if not _gevent_patched_select():
        return None
    from gevent.monkey import get_original

    try:
        get_original("select", "epoll")
    except (AttributeError, ImportError):  # not Linux: keep gevent's own selector
        return None

    def make() -> Any:
        import asyncio

        return asyncio.SelectorEventLoop(GreenEpollSelector())

    return make


class GreenEpollSelector(selectors._PollLikeSelector):
    """An epoll selector whose blocking waits are gevent waits (see the module docs).

    Made and used in one greenlet (the loop's); its waits let every other
    greenlet of the thread run.
    """

    # Set by the stdlib base classes (not in typeshed's stubs).
    _selector: Any
    _fd_to_key: dict[int, selectors.SelectorKey]

    def __init__(self) -> None:
        import select

        from gevent import get_hub
        from gevent.monkey import get_original

        self._selector_cls = get_original("select", "epoll")
        self._EVENT_READ = select.EPOLLIN
        self._EVENT_WRITE = select.EPOLLOUT
        super().__init__()
        self._hub = get_hub()
        loop = self._hub.loop
        # One watcher of the epoll descriptor for the selector's life: started
        # only while the loop sleeps.
        self._io = loop.io(self._selector.fileno(), 1)  # 1: libev's EV_READ
        self._timer_factory = loop.timer
        from gevent.hub import Waiter

        self._waiter_cls = Waiter
        self._epollin = select.EPOLLIN
        self._epollout = select.EPOLLOUT

    def fileno(self) -> int:
        fd: int = self._selector.fileno()
        return fd

    def _ready(self) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = []
        max_ev = max(len(self._fd_to_key), 1)
        try:
            fd_event_list = self._selector.poll(0, max_ev)
        except InterruptedError:
            return ready
        for fd, event in fd_event_list:
            events = 0
            if event & ~self._epollin:
                events |= selectors.EVENT_WRITE
            if event & ~self._epollout:
                events |= selectors.EVENT_READ
            key = self._fd_to_key.get(fd)
            if key:
                ready.append((key, events & key.events))
        return ready

    def _sleep(self, timeout: float | None) -> None:
        """Wait in the hub until a file in the set is ready or ``timeout`` s pass."""
        waiter = self._waiter_cls(self._hub)
        self._io.start(waiter.switch, None)
        timer = None
        if timeout is not None:
            timer = self._timer_factory(timeout)
            timer.start(waiter.switch, None)
        try:
            waiter.get()
        finally:
            self._io.stop()
            if timer is not None:
                timer.close()

    def _yield(self) -> None:
        waiter = self._waiter_cls(self._hub)
        self._hub.loop.run_callback(waiter.switch, None)
        waiter.get()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            # The loop has callbacks ready: let the other greenlets have a turn,
            # then take whatever is ready without waiting.
            self._yield()
            return self._ready()
        ready = self._ready()
        if ready:
            return ready
        self._sleep(timeout)
        return self._ready()

    def close(self) -> None:
        io, self._io = self._io, None
        if io is not None:
            io.close()
        super().close()
