"""The sync facade of a store: the async store, driven from sync code on one loop thread.

Nothing here re-implements storage or ledger logic: every call is sent with
:func:`chatsvg_core._sync.run_sync` to the library's one event-loop thread
per process, where the async store lives. Threads may share one
:class:`SyncStore`; their calls interleave on that loop exactly as async
tasks would, under the store's own locks.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, TypeVar

from chatsvg_core._sync import portal, run_sync
from chatsvg_core.storage._protocol import Store, StoreTransaction

__all__ = ["SyncStore", "SyncTransaction"]

P = ParamSpec("P")
T = TypeVar("T")


class SyncTransaction:
    """An open transaction, used from sync code: ``tx(operation, *args, **kwargs)``.

    ``operation`` is any async function whose first parameter is a
    :class:`~chatsvg_core.storage.StoreTransaction`: a job operation
    (``claim_next``), a ledger operation (``charge``), or a lambda for a
    primitive (``tx(lambda t: t.get_job(job_id))``; not
    ``StoreTransaction.get_job``, which is the protocol's empty stub)::

        with store.transaction() as tx:
            job = tx(claim_next, now=now, worker_id="w1", lease=lease)
            if job is not None:
                tx(charge, job.owner, 3, ref=job.id, now=now)
    """

    def __init__(self, tx: StoreTransaction) -> None:
        self.async_transaction = tx

    def __call__(
        self,
        operation: Callable[Concatenate[StoreTransaction, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``await operation(tx, *args, **kwargs)`` on the loop thread; return its result."""
        return run_sync(functools.partial(operation, self.async_transaction, *args, **kwargs))


class SyncStore:
    """A :class:`~chatsvg_core.storage.Store` for sync hosts (Celery, Django, scripts).

    >>> from chatsvg_core.storage import MemoryStore
    >>> from chatsvg_core.ledger import grant
    >>> from datetime import datetime, UTC
    >>> with SyncStore(MemoryStore()) as store:
    ...     entry = store.run(grant, "alice", 5, now=datetime(2026, 1, 1, tzinfo=UTC))
    ...     entry.amount
    5
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, opener: Callable[[], Awaitable[Store]]) -> SyncStore:
        """Create the async store on the loop thread (so its connections live there)."""
        return cls(run_sync(opener))

    @contextmanager
    def transaction(self) -> Iterator[SyncTransaction]:
        """A transaction held open across sync calls; commit on exit, roll back on exception."""
        with portal().wrap_async_context_manager(self.store.transaction()) as tx:
            yield SyncTransaction(tx)

    def run(
        self,
        operation: Callable[Concatenate[StoreTransaction, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run one operation in its own transaction, in a single trip to the loop thread."""

        async def once() -> T:
            async with self.store.transaction() as tx:
                return await operation(tx, *args, **kwargs)

        return run_sync(once)

    def close(self) -> None:
        """Close the async store (``aclose``). Idempotent."""
        run_sync(self.store.aclose)

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
