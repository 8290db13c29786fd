"""The engine: submit, process and recover, written once against the protocols."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from chatsvg_core._clock import Clock, SystemClock
from chatsvg_core.engine._events import EngineEvent, EventHook, EventKind, emit
from chatsvg_core.errors import (
    DailyCapExceeded,
    InsufficientCredits,
    InvalidTransition,
    JobNotFound,
    RefundWithoutCharge,
    TransientError,
    UnknownAccount,
)
from chatsvg_core.generate import (
    GenerationRequest,
    Pricing,
    PromptPolicy,
    Provider,
    extract_svg,
)
from chatsvg_core.idempotency import (
    Created,
    create_or_replay,
    idempotency_scope,
    request_hash,
)
from chatsvg_core.jobs import Job, JobErrorInfo, JobStatus, new_job
from chatsvg_core.ledger import DayBoundary, charge, refund
from chatsvg_core.queues import JobQueue
from chatsvg_core.retry import GiveUp, RetryPolicy, get_on_retry_hooks
from chatsvg_core.sanitize import SanitizePolicy, Sanitizer
from chatsvg_core.storage import (
    EntryKind,
    JobResult,
    Store,
    StoreTransaction,
    claim_job,
    claim_next,
    complete_job,
    expire_leases,
    fail_job,
    heartbeat_job,
    retry_job,
)

__all__ = ["Checkpoint", "Engine", "RecoveryReport", "SubmitResult"]

log = logging.getLogger("chatsvg_core.engine")

Checkpoint = Callable[[str, str], Awaitable[None]]
"""``await checkpoint(step, job_id)`` at each named step of :meth:`Engine.process`.

Steps: ``claimed`` (claim + charge committed), ``generated`` (the model
answered and the SVG is sanitized, nothing written yet), ``finished`` (the
final transition committed). Crash tests pause or kill a worker here.
"""

OPERATION = "generate"
"""The idempotency operation name submits are scoped by."""


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What :meth:`Engine.submit` returns: the job, and whether the key replayed it."""

    job: Job
    replayed: bool


@dataclass(slots=True)
class RecoveryReport:
    """What one :meth:`Engine.recover` pass did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)


class _LeaseLost(Exception):
    """Raised inside a worker when its heartbeat learns the lease is gone."""


def _uuid() -> str:
    return uuid4().hex


class Engine:
    """Ties the state machine, idempotency, ledger, retries, provider and sanitizer together.

    Args:
        store: the storage backend (jobs, idempotency records, ledger, results).
        queue: where due job ids are announced; ``None`` for hosts that only
            poll (``process_next``) or drive ``process`` themselves.
        provider: the model provider.
        policy: the job-level retry policy (re-enqueue delays, attempts); its
            ``max_attempts`` becomes each new job's ``max_attempts``.
        call_policy: the in-process retry policy around one provider call;
            default: the same rules with at most 2 tries, so short blips are
            absorbed without spending a job attempt.
        sanitizer_policy: how the model's SVG is sanitized (default preset).
        pricing: what a request costs.
        prompt_policy: prompt validation and normalisation rules.
        clock: the time source (inject a ``FakeClock`` in tests).
        lease: how long a claim lasts before recovery may take the job back.
        heartbeat_every: seconds between lease extensions while generating
            (default: a third of the lease).
        idempotency_ttl: how long a client key stays bound to its job.
        daily_cap: credits one owner may spend per day (``None``: no cap), or
            a callable ``owner -> cap``.
        day: where a day begins for caps (UTC midnight by default).
        on_event: one hook that sees every transition, charge and refund.
        new_id: job id factory. ``rng``: randomness for retry jitter.
        checkpoint: test hook awaited at named steps (see :data:`Checkpoint`).
    """

    def __init__(
        self,
        store: Store,
        queue: JobQueue | None,
        provider: Provider,
        *,
        policy: RetryPolicy | None = None,
        call_policy: RetryPolicy | None = None,
        sanitizer_policy: SanitizePolicy | None = None,
        pricing: Pricing | None = None,
        prompt_policy: PromptPolicy | None = None,
        clock: Clock | None = None,
        lease: timedelta = timedelta(seconds=120),
        heartbeat_every: float | None = None,
        idempotency_ttl: timedelta = timedelta(hours=24),
        daily_cap: int | Callable[[str], int | None] | None = None,
        day: DayBoundary | None = None,
        on_event: EventHook | None = None,
        new_id: Callable[[], str] = _uuid,
        rng: random.Random | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        self.store = store
        self.queue = queue
        self.provider = provider
        self.policy = policy or RetryPolicy()
        self.call_policy = call_policy or self.policy.model_copy(update={"max_attempts": 2})
        self.sanitizer = Sanitizer(sanitizer_policy)
        self.pricing = pricing or Pricing()
        self.prompt_policy = prompt_policy or PromptPolicy()
        self.clock = clock or SystemClock()
        self.lease = lease
        self.heartbeat_every = heartbeat_every or lease.total_seconds() / 3
        self.idempotency_ttl = idempotency_ttl
        self._daily_cap = daily_cap
        self.day = day or DayBoundary()
        self.on_event = on_event
        self.new_id = new_id
        self.rng = rng or random.Random()
        self.checkpoint = checkpoint

    # --- helpers ------------------------------------------------------------

    def _emit(self, kind: EventKind, job: Job, **fields: Any) -> None:
        emit(
            self.on_event,
            EngineEvent(
                kind=kind,
                job_id=job.id,
                owner=job.owner,
                at=self.clock.now(),
                attempt=job.attempt,
                fields=fields,
            ),
        )

    def daily_cap(self, owner: str) -> int | None:
        """The cap that applies to ``owner`` (``None``: none)."""
        cap = self._daily_cap
        return cap(owner) if callable(cap) else cap

    async def _step(self, name: str, job_id: str) -> None:
        if self.checkpoint is not None:
            await self.checkpoint(name, job_id)

    # --- submit -------------------------------------------------------------

    def prepare(self, request: GenerationRequest | Mapping[str, Any]) -> GenerationRequest:
        """Validate and normalise a request (raises ``PromptRejected`` or pydantic errors)."""
        if not isinstance(request, GenerationRequest):
            request = GenerationRequest.model_validate(request)
        return self.prompt_policy.check(request)

    async def submit(
        self,
        owner: str,
        idempotency_key: str | None,
        request: GenerationRequest | Mapping[str, Any],
    ) -> SubmitResult:
        """Create a QUEUED job for ``request`` (or return the one this key already made).

        The prompt is validated first (``PromptRejected``). With a key, the
        job and the key's record are written in one transaction: a retry with
        the same key and payload returns the original job (``replayed=True``);
        the same key with another payload raises ``IdempotencyConflict``.
        Nothing is charged here: credits are taken when a worker claims it.
        """
        req = self.prepare(request)
        payload = req.model_dump(mode="json")
        scope = idempotency_scope(owner, operation=OPERATION)
        now = self.clock.now()
        job = new_job(
            job_id=self.new_id(),
            owner=owner,
            request=payload,
            request_hash=request_hash(payload, scope=scope),
            idempotency_key=idempotency_key,
            now=now,
            max_attempts=self.policy.max_attempts,
        )
        async with self.store.transaction() as tx:
            if idempotency_key is None:
                await tx.insert_job(job)
                replayed = False
            else:
                outcome = await create_or_replay(
                    tx,
                    job=job,
                    scope=scope,
                    key=idempotency_key,
                    now=now,
                    ttl=self.idempotency_ttl,
                )
                replayed = not isinstance(outcome, Created)
                assert outcome.job is not None  # create_or_replay always sets it
                job = outcome.job
        if replayed:
            self._emit(EventKind.REPLAYED, job)
        else:
            self._emit(EventKind.SUBMITTED, job)
            if self.queue is not None:
                # After commit: a crash here leaves a QUEUED job that sweep() finds.
                await self.queue.enqueue(job.id)
        return SubmitResult(job=job, replayed=replayed)

    # --- process ------------------------------------------------------------

    async def process(self, job_id: str, worker_id: str) -> Job | None:
        """Run one attempt of ``job_id``; return the job as this attempt left it.

        Returns ``None`` when there was nothing to do: the job is unknown,
        not QUEUED (a duplicate delivery), or not yet due (re-announced for
        its ``run_at``). Every expected failure becomes a transition; only
        storage faults propagate (and leave the job to recovery).
        """
        claimed = await self._claim_and_charge(job_id, worker_id)
        if claimed is None or claimed.status is not JobStatus.RUNNING:
            return claimed
        return await self._run_claimed(claimed, worker_id)

    async def process_next(self, worker_id: str) -> Job | None:
        """Claim the next due job straight from the store and run one attempt of it.

        For hosts that use the database as the queue (no ``JobQueue``):
        concurrent workers get distinct jobs (``next_due_job`` skips rows
        others hold). Returns ``None`` when nothing is due.
        """
        claimed = await self._claim_and_charge(None, worker_id)
        if claimed is None or claimed.status is not JobStatus.RUNNING:
            return claimed
        return await self._run_claimed(claimed, worker_id)

    async def _run_claimed(self, claimed: Job, worker_id: str) -> Job | None:
        job_id = claimed.id
        await self._step("claimed", job_id)
        try:
            outcome = await self._run_with_heartbeat(claimed)
        except _LeaseLost:
            self._emit(EventKind.LEASE_LOST, claimed, worker_id=worker_id)
            return None
        except asyncio.CancelledError:
            # Shutdown: hand the job back now rather than after the lease lapses.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._finish_failure(claimed, TransientError("worker shut down mid-job"))
                )
            raise
        if isinstance(outcome, BaseException):
            return await self._finish_failure(claimed, outcome)
        await self._step("generated", job_id)
        return await self._finish_success(claimed, *outcome)

    async def _claim_and_charge(self, job_id: str | None, worker_id: str) -> Job | None:
        now = self.clock.now()
        async with self.store.transaction() as tx:
            if job_id is None:
                next_job = await claim_next(tx, now=now, worker_id=worker_id, lease=self.lease)
                if next_job is None:
                    return None
                job = next_job
            else:
                current = await tx.get_job(job_id, for_update=True)
                if current is None:
                    log.warning("delivered unknown job %s", job_id)
                    return None
                if current.status is not JobStatus.QUEUED:
                    return None
                if current.run_at > now:
                    if self.queue is not None:
                        wait = (current.run_at - now).total_seconds()
                        await self.queue.enqueue(job_id, delay=wait)
                    return None
                if current.attempt >= current.max_attempts:
                    return None
                job = await claim_job(tx, job_id, now=now, worker_id=worker_id, lease=self.lease)
            request = GenerationRequest.model_validate(job.request)
            cost = self.pricing.cost(request)
            entry_id = _uuid()
            try:
                entry = await charge(
                    tx,
                    job.owner,
                    cost,
                    ref=job.id,
                    now=now,
                    daily_cap=self.daily_cap(job.owner),
                    day=self.day,
                    new_id=lambda: entry_id,
                )
            except (InsufficientCredits, DailyCapExceeded, UnknownAccount) as exc:
                job = await fail_job(
                    tx,
                    job.id,
                    now=now,
                    token=job.lease_token,
                    error=JobErrorInfo.from_exception(exc),
                )
                charged_now = False
            else:
                # A later attempt gets the first attempt's entry back.
                charged_now = entry.id == entry_id
        self._emit(EventKind.CLAIMED, job, worker_id=worker_id)
        if job.status is JobStatus.FAILED:
            assert job.last_error is not None
            self._emit(EventKind.FAILED, job, error_code=job.last_error.code, transient=False)
        elif charged_now:
            self._emit(EventKind.CHARGED, job, amount=cost)
        return job

    async def _run_with_heartbeat(self, job: Job) -> tuple[str, dict[str, Any]] | BaseException:
        lost = asyncio.Event()
        assert job.lease_token is not None
        token = job.lease_token

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_every)
                try:
                    async with self.store.transaction() as tx:
                        await heartbeat_job(
                            tx, job.id, token=token, now=self.clock.now(), lease=self.lease
                        )
                except InvalidTransition:
                    lost.set()
                    return

        async def work() -> tuple[str, dict[str, Any]] | BaseException:
            try:
                return await self._generate(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return exc

        beater = asyncio.create_task(beat())
        worker = asyncio.create_task(work())
        waiter = asyncio.create_task(lost.wait())
        try:
            done, _ = await asyncio.wait({worker, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if worker not in done:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
                raise _LeaseLost
            return worker.result()
        finally:
            for task in (beater, waiter, worker):
                task.cancel()
            await asyncio.gather(beater, waiter, return_exceptions=True)

    async def _generate(self, job: Job) -> tuple[str, dict[str, Any]]:
        request = GenerationRequest.model_validate(job.request)
        async for attempt in self.call_policy.async_retrying(rng=self.rng, name="provider"):
            with attempt:
                output = await self.provider.generate(request)
                raw = extract_svg(output.text)
        clean = self.sanitizer.sanitize(raw)
        metadata: dict[str, Any] = {
            "model": output.model,
            "provider": output.provider,
            "latency_s": output.latency_s,
            "usage": output.usage.model_dump(mode="json"),
            "sanitizer_changed": clean.changed,
        }
        self._emit(EventKind.GENERATED, job, model=output.model)
        return clean.svg, metadata

    async def _finish_success(self, job: Job, svg: str, metadata: dict[str, Any]) -> Job | None:
        now = self.clock.now()
        assert job.lease_token is not None
        try:
            async with self.store.transaction() as tx:
                done, _ = await complete_job(
                    tx, job.id, token=job.lease_token, now=now, svg=svg, metadata=metadata
                )
        except InvalidTransition:
            self._emit(EventKind.LEASE_LOST, job)
            return None
        self._emit(EventKind.SUCCEEDED, done)
        await self._step("finished", job.id)
        return done

    async def _finish_failure(self, job: Job, error: BaseException) -> Job | None:
        now = self.clock.now()
        assert job.lease_token is not None
        info = JobErrorInfo.from_exception(error)
        elapsed = max(0.0, (now - job.created_at).total_seconds())
        decision = self.policy.decide(
            error,
            job.attempt,
            elapsed,
            rng=self.rng,
            now=now,  # an HTTP-date Retry-After is read against the injected clock
            hooks=get_on_retry_hooks(),
            name="job",
        )
        refunded = None
        try:
            async with self.store.transaction() as tx:
                if not isinstance(decision, GiveUp) and job.attempt < job.max_attempts:
                    delay = decision.delay
                    new = await retry_job(
                        tx,
                        job.id,
                        token=job.lease_token,
                        now=now,
                        run_at=now + timedelta(seconds=delay),
                        error=info,
                    )
                else:
                    delay = None
                    new = await fail_job(tx, job.id, now=now, token=job.lease_token, error=info)
                    refunded = await self._refund(tx, job.id, now)
        except InvalidTransition:
            self._emit(EventKind.LEASE_LOST, job)
            return None
        if delay is not None:
            self._emit(EventKind.RETRY_SCHEDULED, new, delay=delay, error_code=info.code)
            if self.queue is not None:
                await self.queue.enqueue(job.id, delay=delay)
        else:
            reason = decision.reason.value if isinstance(decision, GiveUp) else "attempts_exhausted"
            self._emit(
                EventKind.FAILED, new, error_code=info.code, transient=info.transient, reason=reason
            )
            if refunded is not None:
                self._emit(EventKind.REFUNDED, new, amount=refunded)
        await self._step("finished", job.id)
        return new

    @staticmethod
    async def _refund(tx: StoreTransaction, job_id: str, now: datetime) -> int | None:
        try:
            entry = await refund(tx, job_id, now=now)
        except RefundWithoutCharge:
            return None
        return entry.amount

    # --- recovery -----------------------------------------------------------

    async def recover(self, now: datetime | None = None, *, limit: int = 500) -> RecoveryReport:
        """Finish what crashed workers left: expired leases, and unrefunded failures.

        A RUNNING job whose lease ended is put back in the queue (its attempt
        counted as a transient failure) or, with no attempts left, failed and
        refunded in the same transaction. A FAILED job that was charged but
        not refunded (possible only with stores that split the job and the
        ledger across systems) is refunded. Safe to run concurrently and
        repeatedly: every step is a compare-and-set or keyed by job id.
        """
        now = now or self.clock.now()
        report = RecoveryReport()
        delays: dict[str, float] = {}

        def run_at_for(job: Job) -> datetime:
            delays[job.id] = self.policy.delay(max(1, job.attempt), rng=self.rng)
            return now + timedelta(seconds=delays[job.id])

        refunded: dict[str, int] = {}
        async with self.store.transaction() as tx:
            # Expiry and the refund of a job it fails commit together.
            expired = await expire_leases(tx, now=now, run_at_for=run_at_for, limit=limit)
            for job in expired:
                if job.status is JobStatus.FAILED:
                    amount = await self._refund(tx, job.id, now)
                    if amount is not None:
                        refunded[job.id] = amount
        for job in expired:
            self._emit(EventKind.LEASE_EXPIRED, job)
            if job.status is JobStatus.QUEUED:
                report.requeued.append(job.id)
                if self.queue is not None:
                    await self.queue.enqueue(job.id, delay=delays.get(job.id, 0.0))
                continue
            report.failed.append(job.id)
            assert job.last_error is not None
            self._emit(EventKind.FAILED, job, error_code=job.last_error.code, transient=True)
            if job.id in refunded:
                report.refunded.append(job.id)
                self._emit(EventKind.REFUNDED, job, amount=refunded[job.id])
        for job_id in await self._unrefunded_failures(limit):
            async with self.store.transaction() as tx:
                failed = await tx.get_job(job_id)
                amount = await self._refund(tx, job_id, now)
            if amount is not None and failed is not None:
                report.refunded.append(job_id)
                self._emit(EventKind.REFUNDED, failed, amount=amount)
        return report

    async def _unrefunded_failures(self, limit: int) -> list[str]:
        async with self.store.transaction() as tx:
            failed = await tx.list_jobs(status=JobStatus.FAILED, limit=limit)
            out = []
            for job in failed:
                if await tx.find_entry(EntryKind.CHARGE, job.id) is None:
                    continue
                if await tx.find_entry(EntryKind.REFUND, job.id) is None:
                    out.append(job.id)
        return out

    async def sweep(
        self,
        now: datetime | None = None,
        *,
        limit: int = 1000,
        overdue: float | None = None,
    ) -> int:
        """Re-announce QUEUED jobs to the queue (after a restart or a broker lost messages).

        Without ``overdue``, every QUEUED job is announced with the delay left
        until its ``run_at`` (the in-process queue coalesces repeats). With
        ``overdue=s``, only jobs due at least ``s`` seconds ago are announced:
        the ones whose message was lost, or whose delay was longer than the
        queue engine holds; a job waiting in a healthy queue is left alone, so
        a backlog is not doubled. Pages through every QUEUED job (oldest
        first), announcing at most ``limit``; returns how many it announced.
        """
        if self.queue is None:
            return 0
        now = now or self.clock.now()
        chosen: list[tuple[str, float]] = []
        async with self.store.transaction() as tx:
            before: datetime | None = None
            before_id: str | None = None
            while True:
                page = await tx.list_jobs(
                    status=JobStatus.QUEUED, limit=500, before=before, before_id=before_id
                )
                for job in page:
                    wait = (job.run_at - now).total_seconds()
                    if overdue is None or -wait >= overdue:
                        chosen.append((job.id, max(0.0, wait)))
                if len(page) < 500:
                    break
                before, before_id = page[-1].created_at, page[-1].id
        # Newest first from the store: announce the oldest first, up to the limit.
        chosen.reverse()
        for job_id, wait in chosen[:limit]:
            await self.queue.enqueue(job_id, delay=wait)
        return min(len(chosen), limit)

    # --- reading ------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job (raises ``JobNotFound``)."""
        async with self.store.transaction() as tx:
            job = await tx.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        return job

    async def result(self, job_id: str) -> JobResult | None:
        """The sanitized SVG and metadata of a SUCCEEDED job, else ``None``."""
        async with self.store.transaction() as tx:
            return await tx.get_result(job_id)
