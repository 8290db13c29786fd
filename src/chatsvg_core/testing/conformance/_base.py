"""The base every conformance suite shares: how a host hands over its store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, TypeVar
from uuid import uuid4

from hypothesis.stateful import RuleBasedStateMachine

from chatsvg_core.jobs import Job, new_job
from chatsvg_core.storage import EntryKind, LedgerEntry, MemoryStore, Store

__all__ = ["T0", "Capability", "ConformanceBase", "HostMachine", "entry", "job"]

T = TypeVar("T")

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
"""The time the suite's scenarios start at (whole seconds, so every backend stores it exactly)."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


class Capability(StrEnum):
    """Optional promises a backend declares; tests that need one run only when declared."""

    THREADS = "threads"
    """Several stores opened with ``open_peer`` on one database may be used at once from
    different threads, each thread with its own event loop (SQL backends)."""

    PROCESSES = "processes"
    """Stores opened in other processes by the picklable callable from ``peer_factory``
    may be used at once on one database (SQL backends)."""


class ConformanceBase:
    """What a host provides: ``open_store`` (and, for declared capabilities, ``open_peer``).

    Subclass one of the suites (usually
    :class:`~chatsvg_core.testing.conformance.StoreConformance`) in a
    ``Test*`` class; pytest collects the inherited tests. The tests are plain
    synchronous pytest tests that run their async bodies with
    :func:`asyncio.run`, so no pytest plugin is needed.

    Knobs (class attributes, or environment variables for the defaults):

    * ``examples``: hypothesis examples per property/stateful test
      (``CHATSVG_CONFORMANCE_EXAMPLES``, default 40);
    * ``steps``: steps per stateful run (``CHATSVG_CONFORMANCE_STEPS``, default 30);
    * ``concurrency``: tasks (and threads) in the concurrency tests
      (``CHATSVG_CONFORMANCE_CONCURRENCY``, default 16).
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    examples: ClassVar[int] = _env_int("CHATSVG_CONFORMANCE_EXAMPLES", 40)
    steps: ClassVar[int] = _env_int("CHATSVG_CONFORMANCE_STEPS", 30)
    concurrency: ClassVar[int] = _env_int("CHATSVG_CONFORMANCE_CONCURRENCY", 16)

    def open_store(self) -> AbstractAsyncContextManager[Store]:
        """Open a store on a NEW, EMPTY database; closing the context closes (and may drop) it.

        Called once per test (and once per hypothesis example), from inside
        the event loop the test runs on.
        """
        raise NotImplementedError("a conformance suite subclass must implement open_store()")

    def open_peer(self, store: Store) -> AbstractAsyncContextManager[Store]:
        """Open a second store on the same database as ``store`` (for ``Capability.THREADS``).

        Called from another thread, inside that thread's own event loop.
        """
        raise NotImplementedError("declare Capability.THREADS only with open_peer()")

    def state_machine_settings(self) -> Any:
        """The hypothesis ``settings`` of the state machines (override to tune further)."""
        from hypothesis import HealthCheck, Phase, settings

        return settings(
            max_examples=self.examples,
            stateful_step_count=self.steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            # The explain phase re-runs a failing machine many times; the
            # shrunk steps are what a backend author needs, sooner.
            phases=[p for p in Phase if p is not Phase.explain],
        )

    def peer_factory(self, store: Store) -> Callable[[], AbstractAsyncContextManager[Store]]:
        """A picklable zero-argument callable that opens a store on ``store``'s database.

        For ``Capability.PROCESSES``: it is sent to worker processes (started
        with ``spawn``) and called there, inside their own event loop. A
        module-level function or a ``functools.partial`` of one works.
        """
        raise NotImplementedError("declare Capability.PROCESSES only with peer_factory()")

    def run(self, body: Callable[[Store], Awaitable[T]]) -> T:
        """Open a fresh store, ``await body(store)``, close the store; all on a new loop."""

        async def main() -> T:
            async with self.open_store() as store:
                return await body(store)

        return asyncio.run(main())

    def needs(self, capability: Capability) -> None:
        """Skip the calling test unless the backend declared ``capability``."""
        if capability not in self.capabilities:
            import pytest

            pytest.skip(f"backend does not declare the {capability.value!r} capability")


def job(
    job_id: str | None = None,
    *,
    owner: str = "owner-1",
    now: datetime = T0,
    run_at: datetime | None = None,
    max_attempts: int = 3,
    **request: Any,
) -> Job:
    """A fresh QUEUED job for the tests."""
    return new_job(
        job_id=job_id or uuid4().hex,
        owner=owner,
        request={"prompt": "a red circle", **request},
        request_hash="h-" + (job_id or "x"),
        now=now,
        run_at=run_at,
        max_attempts=max_attempts,
    )


def entry(
    owner: str,
    kind: EntryKind,
    amount: int,
    *,
    ref: str | None = None,
    at: datetime = T0,
    seconds: float = 0,
) -> LedgerEntry:
    """A ledger entry for the primitive tests (``seconds`` after ``at``)."""
    return LedgerEntry(
        id=uuid4().hex,
        owner=owner,
        kind=kind,
        amount=amount,
        ref=ref,
        created_at=at + timedelta(seconds=seconds),
    )


class HostMachine(RuleBasedStateMachine):
    """A state machine that runs each step on the host's store and on the reference store.

    ``loop`` runs the async steps; the host store comes from the suite and is
    closed, with the reference :class:`MemoryStore`, in ``teardown``.
    """

    def __init__(self, suite: ConformanceBase) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        self.host: Store = self.loop.run_until_complete(
            self.stack.enter_async_context(suite.open_store())
        )
        self.reference = MemoryStore()
        self.now = T0

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.stack.aclose())
            self.loop.run_until_complete(self.reference.aclose())
        finally:
            self.loop.close()
