"""Sync hosts' view of the engine, and a one-call helper for notebooks."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal

from chatsvg_core._sync import portal as library_portal
from chatsvg_core._sync import run_sync
from chatsvg_core.engine._engine import (
    Engine,
    ProcessOutcome,
    PurgeReport,
    RecoveryReport,
    SubmitResult,
)
from chatsvg_core.engine._wait import JobUpdate
from chatsvg_core.generate import GenerationRequest, Provider
from chatsvg_core.jobs import Job
from chatsvg_core.queues import JobQueue
from chatsvg_core.storage import JobResult, Store, open_storage

__all__ = ["SyncEngine"]

T = TypeVar("T")


class SyncEngine:
    """The :class:`Engine`'s methods, callable from sync code (Celery, Django, scripts).

    Every call runs on the library's one event-loop thread per process, so
    the async store and provider keep their connection pools across calls,
    and any number of threads may share one ``SyncEngine``. Open one from a
    storage URL with :meth:`open`::

        engine = SyncEngine.open("sqlite:///chatsvg.db", provider=OfflineSketchProvider())
        job = engine.submit("alice", "key-1", {"prompt": "a lighthouse"}).job
        engine.process_next("worker-1")
        engine.close()

    or wrap an engine built on that loop with :meth:`build` (async resources
    such as PostgreSQL pools bind to the loop that created them). Never call
    it from inside that loop (an ``async def`` run by the library); async
    code awaits the :class:`Engine` directly.

    ``portal`` runs the calls on another loop instead: an anyio
    ``BlockingPortal`` opened on the loop that owns ``engine`` (a host that
    runs its own loop and hands work to sync threads, or
    :meth:`QueueConformance.sync_engine
    <chatsvg_core.testing.conformance.QueueConformance.sync_engine>`).
    """

    def __init__(self, engine: Engine, *, portal: BlockingPortal | None = None) -> None:
        self.engine = engine
        self._portal = portal

    @property
    def portal(self) -> BlockingPortal:
        """The portal every call goes through (the library's own unless one was given)."""
        return self._portal if self._portal is not None else library_portal()

    @classmethod
    def build(cls, factory: Callable[[], Engine]) -> SyncEngine:
        """Call ``factory`` on the library's loop thread and wrap what it returns."""

        async def make() -> Engine:
            return factory()

        return cls(run_sync(make))

    @classmethod
    def open(
        cls,
        url: str,
        *,
        provider: Provider | Callable[[], Provider],
        queue: JobQueue | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **engine_options: Any,
    ) -> SyncEngine:
        """Open the store ``url`` names and build an :class:`Engine` on it, in one call.

        ``provider`` is a provider, or a callable that makes one (called on
        the loop thread, for providers whose HTTP client binds to a loop).
        ``storage_options`` go to :func:`~chatsvg_core.storage.open_storage`;
        ``engine_options`` (``lease``, ``policy``, ``daily_cap``...) to the
        :class:`Engine`. Raises what ``open_storage`` raises
        (``ConfigurationError``, ``StorageUnavailable``...).
        """

        async def make() -> Engine:
            store = await open_storage(url, **dict(storage_options or {}))
            try:
                made = provider() if callable(provider) else provider
                return Engine(store, queue, made, **engine_options)
            except BaseException:
                await store.aclose()
                raise

        return cls(run_sync(make))

    @property
    def store(self) -> Store:
        """The async store (wrap it in ``SyncLedger`` or ``SyncStore`` for sync use)."""
        return self.engine.store

    def _call(self, coro_fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        result: T = self.portal.call(functools.partial(coro_fn, *args, **kwargs))
        return result

    def submit(
        self,
        owner: str,
        idempotency_key: str | None,
        request: GenerationRequest | Mapping[str, Any],
        *,
        rate_key: str | None = None,
    ) -> SubmitResult:
        """See :meth:`Engine.submit`."""
        return self._call(self.engine.submit, owner, idempotency_key, request, rate_key=rate_key)

    def process(self, job_id: str, worker_id: str) -> Job | None:
        """See :meth:`Engine.process`."""
        return self._call(self.engine.process, job_id, worker_id)

    def process_next(self, worker_id: str) -> Job | None:
        """See :meth:`Engine.process_next`."""
        return self._call(self.engine.process_next, worker_id)

    def recover(self, now: datetime | None = None, *, limit: int = 500) -> RecoveryReport:
        """See :meth:`Engine.recover`."""
        return self._call(self.engine.recover, now, limit=limit)

    def sweep(self, now: datetime | None = None, **options: Any) -> int:
        """See :meth:`Engine.sweep`."""
        return self._call(self.engine.sweep, now, **options)

    def cancel(self, job_id: str, owner: str, *, reason: str | None = None) -> Job:
        """See :meth:`Engine.cancel`."""
        return self._call(self.engine.cancel, job_id, owner, reason=reason)

    def wait(self, job_id: str, *, timeout: float | None = None, owner: str | None = None) -> Job:
        """See :meth:`Engine.wait` (the calling thread blocks; the loop thread sleeps)."""
        return self._call(self.engine.wait, job_id, timeout=timeout, owner=owner)

    def updates(
        self, job_id: str, *, timeout: float | None = None, owner: str | None = None
    ) -> Iterator[JobUpdate]:
        """See :meth:`Engine.updates`: a plain iterator, each step run on the loop thread."""
        stream: AsyncIterator[JobUpdate] = self.engine.updates(job_id, timeout=timeout, owner=owner)

        async def step() -> JobUpdate:
            return await anext(stream)

        async def close() -> None:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()

        try:
            while True:
                try:
                    yield self._call(step)
                except StopAsyncIteration:
                    return
        finally:
            self._call(close)

    def run_once(self, job_id: str | None, worker_id: str) -> ProcessOutcome:
        """See :meth:`Engine.run_once`."""
        return self._call(self.engine.run_once, job_id, worker_id)

    def purge(self, older_than: timedelta, **options: Any) -> PurgeReport:
        """See :meth:`Engine.purge`."""
        return self._call(self.engine.purge, older_than, **options)

    def get(self, job_id: str) -> Job:
        """See :meth:`Engine.get`."""
        return self._call(self.engine.get, job_id)

    def result(self, job_id: str) -> JobResult | None:
        """See :meth:`Engine.result`."""
        return self._call(self.engine.result, job_id)

    def close(self) -> None:
        """Close the store (and the provider, if it has ``aclose``) on the loop thread."""

        async def shut() -> None:
            closer = getattr(self.engine.provider, "aclose", None)
            if closer is not None:
                await closer()
            await self.engine.store.aclose()

        self.portal.call(shut)

    def __enter__(self) -> SyncEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
