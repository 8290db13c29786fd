"""One lease keeper per engine and event loop: every held lease extended by one statement.

A model call lasts 10 to 120 seconds, and a worker process may hold hundreds
at once. Giving each job its own heartbeat task would cost one transaction
per job per interval; the keeper instead wakes once per interval and extends
every lease this process holds with one :func:`~chatsvg_core.storage.heartbeat_jobs`
call (one statement on the SQL backends). A job whose lease is gone (expired
and taken by recovery, or re-claimed under another token) is told through
its own :class:`asyncio.Event`, and its worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from chatsvg_core._clock import Clock
from chatsvg_core.errors import StorageError
from chatsvg_core.storage import Store, heartbeat_jobs

__all__ = ["LeaseKeeper"]

log = logging.getLogger("chatsvg_core.engine")


class LeaseKeeper:
    """Keeps the leases of one process's running jobs alive, in batches.

    ``hold(job_id, token)`` registers a lease and returns the event that is
    set if the lease is found lost; ``release(job_id)`` forgets it (before the
    job's final write, so a batch that races with the completion does not
    report the finished job as lost). The keeper runs while at least one
    lease is held (a timer between rounds, a task during one) and stops when
    the last one is released.

    A storage error in one round is logged and the next round tries again:
    the lease is three intervals long by default, so one failed round costs
    nothing, and a lease that does lapse is reported lost by the next round
    that reaches the database.
    """

    def __init__(self, store: Store, *, lease: timedelta, every: float, clock: Clock) -> None:
        self.store = store
        self.lease = lease
        self.every = every
        self.clock = clock
        self._held: dict[str, tuple[int, asyncio.Event | None, Callable[[], object] | None]] = {}
        self._task: asyncio.Task[None] | None = None
        # Between rounds the keeper is a timer, not a sleeping task: a worker
        # that runs one short job at a time would otherwise start and cancel
        # a task per job, which costs more than the job's own statements.
        self._timer: asyncio.TimerHandle | None = None
        self.rounds = 0
        """Heartbeat rounds that reached the store (each one transaction, one statement)."""

    @property
    def held(self) -> int:
        """How many leases the keeper holds now."""
        return len(self._held)

    def hold(
        self, job_id: str, token: int, on_lost: Callable[[], object] | None = None
    ) -> asyncio.Event:
        """Keep ``job_id``'s lease (fencing ``token``) alive; the event fires if it is lost.

        ``on_lost`` is called then too (the engine cancels the job's task with
        it, rather than running a second task per job to wait on the event).
        """
        lost = asyncio.Event()
        self._keep(job_id, token, lost, on_lost)
        return lost

    def _keep(
        self,
        job_id: str,
        token: int,
        lost: asyncio.Event | None,
        on_lost: Callable[[], object] | None,
    ) -> None:
        """:meth:`hold`; the engine, told through ``on_lost``, passes no event
        (building one per job cost more than the rest of holding the lease)."""
        self._held[job_id] = (token, lost, on_lost)
        if self._task is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.every, self._wake)

    def release(self, job_id: str) -> None:
        """Stop keeping ``job_id``'s lease (its worker is about to write its outcome).

        With no lease left a running round is cancelled now rather than after
        its statement, but the timer stays armed: a worker running one short
        job at a time would otherwise arm and cancel one per job (a timer
        handle, a heap entry and its cleanup cost more than holding the
        lease). The next job reuses it; if it fires with nothing held it ends
        there. A lease held after it was armed is extended early at worst.
        """
        self._held.pop(job_id, None)
        if not self._held and self._task is not None:
            self._stop()

    def _stop(self) -> asyncio.Task[None] | None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def aclose(self) -> None:
        """Stop the keeper (the leases it held simply stop being extended)."""
        task = self._stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _wake(self) -> None:
        self._timer = None
        if self._held and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._round(), name="chatsvg-lease-keeper"
            )

    async def _round(self) -> None:
        try:
            await self.beat()
        finally:
            if self._task is asyncio.current_task():
                self._task = None
                if self._held and self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(self.every, self._wake)

    async def beat(self) -> None:
        """One round: extend every held lease now; tell the holders of the lost ones."""
        batch = {job_id: held[0] for job_id, held in self._held.items()}
        try:
            async with self.store.transaction() as tx:
                kept = await heartbeat_jobs(tx, batch, now=self.clock.now(), lease=self.lease)
        except StorageError as exc:
            log.warning(
                "lease heartbeat of %d jobs failed; next round retries: %s", len(batch), exc
            )
            return
        except Exception:
            # Never let one bad round end the task every running job relies on.
            log.exception("heartbeat of %d leases failed; next round retries", len(batch))
            return
        self.rounds += 1
        for job_id, token in batch.items():
            if job_id in kept:
                continue
            held = self._held.get(job_id)
            # Released or re-held meanwhile: that worker has moved on.
            if held is not None and held[0] == token:
                del self._held[job_id]
                if held[1] is not None:
                    held[1].set()
                if held[2] is not None:
                    held[2]()
