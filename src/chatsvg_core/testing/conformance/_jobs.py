"""Job transitions through the store: a state machine beside the reference store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from chatsvg_core.errors import ChatSVGError, InvalidTransition
from chatsvg_core.jobs import Job, JobErrorInfo, JobStatus, new_job
from chatsvg_core.storage import (
    JobResult,
    Store,
    StoreTransaction,
    claim_job,
    claim_next,
    claim_next_reference,
    complete_job,
    complete_job_reference,
    expire_leases,
    fail_job,
    heartbeat_job,
    heartbeat_jobs,
    heartbeat_jobs_reference,
    retry_job,
)
from chatsvg_core.testing.conformance._base import T0, ConformanceBase, HostMachine
from chatsvg_core.testing.conformance._base import job as new_test_job

__all__ = ["JobConformance"]

IDS = tuple(f"job-{i}" for i in range(5))
WORKERS = ("w1", "w2", "w3")
LEASE = timedelta(seconds=30)
ERROR = JobErrorInfo(code="provider_transient", type="X", message="boom", transient=True)

Outcome = tuple[Any, ...]


def _describe(value: object) -> object:
    if isinstance(value, tuple | list):
        return tuple(_describe(v) for v in value)
    return value


async def _outcome(store: Store, op: Callable[[StoreTransaction], Awaitable[object]]) -> Outcome:
    try:
        async with store.transaction() as tx:
            return ("ok", _describe(await op(tx)))
    except InvalidTransition as exc:
        return ("error", type(exc).__name__, exc.fields.get("reason"))
    except ChatSVGError as exc:
        return ("error", type(exc).__name__)
    except ValueError:
        return ("error", "ValueError")


async def _run_steps(
    store: Store, steps: list[Callable[[StoreTransaction], Awaitable[object]]]
) -> tuple[list[Outcome], list[Job]]:
    """Each step's outcome in its own transaction, then every job and its result."""
    outcomes: list[Outcome] = [await _outcome(store, step) for step in steps]
    async with store.transaction() as tx:
        jobs = sorted(await tx.list_jobs(limit=100), key=lambda j: j.id)
        outcomes.append(("results", tuple([await tx.get_result(j.id) for j in jobs])))
    return outcomes, jobs


class JobConformance(ConformanceBase):
    """Every job operation, in random order, gives the reference store's answer."""

    def test_batched_heartbeat_matches_one_by_one(self) -> None:
        """``heartbeat_jobs`` on the host equals ``heartbeat_jobs_reference`` on the host."""

        async def scenario(store: Store, batched: bool) -> tuple[frozenset[str], list[Job]]:
            t0 = T0
            async with store.transaction() as tx:
                for i in range(6):
                    await tx.insert_job(new_test_job(f"hb-{i}", now=t0))
            async with store.transaction() as tx:
                for i in range(5):
                    await claim_job(tx, f"hb-{i}", now=t0, worker_id="w", lease=LEASE)
                await complete_job(tx, "hb-1", token=1, now=t0, svg="<svg/>")
                await fail_job(tx, "hb-2", now=t0, error=ERROR, token=1)
                # hb-3 keeps a long lease: a short heartbeat must not shorten it.
                await heartbeat_job(tx, "hb-3", token=1, now=t0, lease=LEASE * 10)
            leases = {f"hb-{i}": 1 for i in range(6)} | {"hb-4": 2, "hb-none": 1}
            later = t0 + timedelta(seconds=45)  # hb-0's lease lapsed; it is still held
            async with store.transaction() as tx:
                op = heartbeat_jobs if batched else heartbeat_jobs_reference
                kept = await op(tx, leases, now=later, lease=LEASE)
            async with store.transaction() as tx:
                jobs = sorted(await tx.list_jobs(limit=100), key=lambda j: j.id)
            return kept, jobs

        batched = self.run(lambda store: scenario(store, True))
        reference = self.run(lambda store: scenario(store, False))
        assert batched == reference
        assert batched[0] == {"hb-0", "hb-3"}
        by_id = {j.id: j for j in batched[1]}
        assert by_id["hb-0"].lease_expires_at == T0 + timedelta(seconds=45) + LEASE
        assert by_id["hb-3"].lease_expires_at == T0 + LEASE * 10

    def test_coarse_claim_and_finish_match_the_fine_primitives(self) -> None:
        """``claim_next`` and ``complete_job`` on the host equal their references on the host.

        A backend's ``claim_due`` / ``succeed_job`` (``JobClaimer``,
        ``JobFinisher``), if it has them, against ``claim_next_reference`` /
        ``complete_job_reference`` over its fine primitives: the same jobs
        claimed in the same order, the same refusals (stale token, wrong
        status, unknown job), the same rows and results afterwards.
        """

        async def scenario(store: Store, coarse: bool) -> tuple[list[Outcome], list[Job]]:
            claim_op = claim_next if coarse else claim_next_reference

            async def finish(tx: StoreTransaction, job_id: str, token: int, at: Any) -> object:
                if coarse:
                    return await complete_job(
                        tx, job_id, token=token, now=at, svg="<svg/>", metadata={"n": 1}
                    )
                result = JobResult(job_id=job_id, svg="<svg/>", metadata={"n": 1}, created_at=at)
                return await complete_job_reference(tx, job_id, token=token, now=at, result=result)

            t0 = T0
            async with store.transaction() as tx:
                for i, delay in enumerate([5, 0, 0, 60, 0]):
                    await tx.insert_job(
                        new_test_job(f"cf-{i}", now=t0, run_at=t0 + timedelta(seconds=delay))
                    )
            later = t0 + timedelta(seconds=10)
            steps: list[Callable[[StoreTransaction], Awaitable[object]]] = [
                lambda tx: claim_op(tx, now=later, worker_id="w1", lease=LEASE),
                lambda tx: claim_op(tx, now=later, worker_id="w2", lease=LEASE),
                lambda tx: finish(tx, "cf-1", 2, later),  # stale token
                lambda tx: finish(tx, "cf-1", 1, later),
                lambda tx: finish(tx, "cf-1", 1, later),  # already succeeded
                lambda tx: finish(tx, "cf-3", 1, later),  # still QUEUED
                lambda tx: finish(tx, "cf-none", 1, later),  # unknown
                lambda tx: claim_op(tx, now=later, worker_id="w3", lease=LEASE),
                lambda tx: claim_op(tx, now=later, worker_id="w3", lease=LEASE),
                lambda tx: claim_op(tx, now=later, worker_id="w3", lease=LEASE),  # none due
                lambda tx: expire_leases(tx, now=later + LEASE * 2),
                lambda tx: claim_op(tx, now=later + LEASE * 2, worker_id="w4", lease=LEASE),
                lambda tx: finish(tx, "cf-2", 1, later + LEASE * 2),  # lease lost, re-claimed
            ]
            return await _run_steps(store, steps)

        coarse = self.run(lambda store: scenario(store, True))
        reference = self.run(lambda store: scenario(store, False))
        assert coarse == reference
        claimed = [o[1].id for o in coarse[0][:2]]
        assert claimed == ["cf-1", "cf-2"], claimed
        assert coarse[0][2][:2] == ("error", "StaleLease")

    def test_finish_from_the_held_job_matches_the_reference(self) -> None:
        """``complete_job(..., held=claimed)`` on the host equals ``complete_job_reference``.

        A backend's ``succeed_held`` (``HeldJobFinisher``), if it has one,
        returns only the new version and the job is the claimed one finished:
        after heartbeats moved the row on, for a stale holder whose job was
        re-claimed, and for a job already finished, the same jobs, errors,
        rows and results as the reference path.
        """

        async def scenario(store: Store, held: bool) -> tuple[list[Outcome], list[Job]]:
            t0 = T0
            async with store.transaction() as tx:
                for i in range(4):
                    await tx.insert_job(new_test_job(f"hf-{i}", now=t0))
            claimed: list[Job] = []
            for _ in range(4):
                async with store.transaction() as tx:
                    got = await claim_next(tx, now=t0, worker_id="w1", lease=LEASE)
                    assert got is not None
                    claimed.append(got)
            by_id = {j.id: j for j in claimed}
            later = t0 + timedelta(seconds=20)
            async with store.transaction() as tx:
                await heartbeat_jobs(tx, {"hf-0": 1, "hf-1": 1}, now=later, lease=LEASE)
                await heartbeat_job(tx, "hf-0", token=1, now=later, lease=LEASE * 2)
            lapsed = t0 + LEASE + timedelta(seconds=10)  # hf-0 and hf-1 still held
            async with store.transaction() as tx:
                await expire_leases(tx, now=lapsed)  # hf-2 and hf-3 lapsed
                await claim_job(tx, "hf-2", now=lapsed, worker_id="w2", lease=LEASE)

            async def finish(tx: StoreTransaction, job_id: str, token: int, at: Any) -> object:
                if held:
                    return await complete_job(
                        tx, job_id, token=token, now=at, svg="<svg/>", metadata={"n": [1]},
                        held=by_id[job_id],
                    )  # fmt: skip
                result = JobResult(job_id=job_id, svg="<svg/>", metadata={"n": [1]}, created_at=at)
                return await complete_job_reference(tx, job_id, token=token, now=at, result=result)

            at = lapsed + timedelta(seconds=1)
            steps: list[Callable[[StoreTransaction], Awaitable[object]]] = [
                lambda tx: finish(tx, "hf-0", 1, at),  # three heartbeats since the claim
                lambda tx: finish(tx, "hf-1", 1, at),  # one
                lambda tx: finish(tx, "hf-0", 1, at),  # already succeeded
                lambda tx: finish(tx, "hf-2", 1, lapsed),  # lease lost, re-claimed
                lambda tx: finish(tx, "hf-3", 1, lapsed),  # lease lost, QUEUED again
            ]
            return await _run_steps(store, steps)

        from_held = self.run(lambda store: scenario(store, True))
        reference = self.run(lambda store: scenario(store, False))
        assert from_held == reference
        assert [o[0] for o in from_held[0][:5]] == ["ok", "ok", "error", "error", "error"]

    def test_job_state_machine(self) -> None:
        suite = self
        # hypothesis takes any factory here, though newer stubs name only the class.
        run_state_machine_as_test(  # type: ignore[no-untyped-call, unused-ignore]
            cast("type[RuleBasedStateMachine]", lambda: _JobMachine(suite)),
            settings=self.state_machine_settings(),
        )


class _JobMachine(HostMachine):
    def __init__(self, suite: ConformanceBase) -> None:
        super().__init__(suite)
        self.finished: dict[str, Job] = {}
        self.held: dict[str, Job] = {}
        """Each job as its last claim returned it (what a worker holds)."""

    def _hold(self, got: Outcome) -> None:
        if got[0] == "ok" and isinstance(got[1], Job):
            self.held[got[1].id] = got[1]

    def _step(self, op: Callable[[StoreTransaction], Awaitable[object]]) -> Outcome:
        host = self.loop.run_until_complete(_outcome(self.host, op))
        ref = self.loop.run_until_complete(_outcome(self.reference, op))
        assert host == ref, f"host store: {host} but the reference store: {ref}"
        return host

    @rule(seconds=st.sampled_from([1, 5, 29, 30, 31, 60]))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(
        job_id=st.sampled_from(IDS),
        attempts=st.integers(1, 3),
        delay=st.sampled_from([0, 0, 5, 60]),
    )
    def submit(self, job_id: str, attempts: int, delay: int) -> None:
        job = new_job(
            job_id=job_id,
            owner="owner-" + job_id[-1],
            request={"prompt": job_id},
            request_hash="h",
            now=self.now,
            max_attempts=attempts,
            run_at=self.now + timedelta(seconds=delay),
        )
        self._step(lambda tx: tx.insert_job(job))

    @rule(worker=st.sampled_from(WORKERS))
    def claim_next(self, worker: str) -> None:
        now = self.now

        async def queued() -> list[Job]:
            async with self.host.transaction() as tx:
                return list(await tx.list_jobs(status=JobStatus.QUEUED, limit=100))

        due = sorted(
            (j for j in self.loop.run_until_complete(queued()) if j.run_at <= now),
            key=lambda j: (j.run_at, j.created_at, j.id),
        )
        got = self._step(lambda tx: claim_next(tx, now=now, worker_id=worker, lease=LEASE))
        self._hold(got)
        if not due:
            assert got == ("ok", None), f"nothing was due, yet claim_next gave {got}"
        else:
            assert got[0] == "ok", got
            assert isinstance(got[1], Job), got
            assert got[1].id == due[0].id, f"claimed {got[1].id}, but {due[0].id} was due first"
            assert got[1].worker_id == worker

    @rule(worker=st.sampled_from(WORKERS))
    def claim_next_by_reference(self, worker: str) -> None:
        # The fine-primitive path on the host too (claim_next takes the
        # host's JobClaimer where it has one).
        now = self.now
        self._hold(
            self._step(lambda tx: claim_next_reference(tx, now=now, worker_id=worker, lease=LEASE))
        )

    @rule(job_id=st.sampled_from(IDS), token=st.integers(1, 3))
    def complete_by_reference(self, job_id: str, token: int) -> None:
        now = self.now
        result = JobResult(job_id=job_id, svg=f"<svg id='{job_id}'/>", metadata={}, created_at=now)
        self._step(
            lambda tx: complete_job_reference(tx, job_id, token=token, now=now, result=result)
        )

    @rule(job_id=st.sampled_from(IDS), worker=st.sampled_from(WORKERS))
    def claim(self, job_id: str, worker: str) -> None:
        now = self.now
        self._hold(
            self._step(lambda tx: claim_job(tx, job_id, now=now, worker_id=worker, lease=LEASE))
        )

    @rule(job_id=st.sampled_from(IDS), token=st.integers(1, 3))
    def heartbeat(self, job_id: str, token: int) -> None:
        now = self.now
        self._step(lambda tx: heartbeat_job(tx, job_id, token=token, now=now, lease=LEASE))

    @rule(
        leases=st.dictionaries(st.sampled_from((*IDS, "job-unknown")), st.integers(1, 3)),
        lease=st.sampled_from([1, 30, 90]),
    )
    def heartbeat_many(self, leases: dict[str, int], lease: int) -> None:
        # The host's batched path (LeaseExtender, if it has one) against the
        # reference store running the fine-primitive version; a short lease
        # checks that a heartbeat never shortens one.
        now = self.now
        span = timedelta(seconds=lease)
        got = self._step(lambda tx: heartbeat_jobs(tx, leases, now=now, lease=span))
        assert got[0] == "ok", got

    @rule(job_id=st.sampled_from(IDS), token=st.integers(1, 3))
    def complete(self, job_id: str, token: int) -> None:
        now = self.now
        self._step(
            lambda tx: complete_job(
                tx, job_id, token=token, now=now, svg=f"<svg id='{job_id}'/>", metadata={"t": 1}
            )
        )

    @rule(job_id=st.sampled_from(IDS))
    def complete_held(self, job_id: str) -> None:
        # As a worker finishes: from the job its claim returned, perhaps since
        # heartbeated, expired, re-claimed or finished (HeldJobFinisher).
        held = self.held.get(job_id)
        if held is None or held.lease_token is None:
            return
        now, token = self.now, held.lease_token
        self._step(
            lambda tx: complete_job(
                tx, job_id, token=token, now=now, svg=f"<svg id='{job_id}'/>", held=held
            )
        )

    @rule(job_id=st.sampled_from(IDS), token=st.integers(1, 3), delay=st.integers(0, 60))
    def retry(self, job_id: str, token: int, delay: int) -> None:
        now = self.now
        run_at = now + timedelta(seconds=delay)
        self._step(
            lambda tx: retry_job(tx, job_id, token=token, now=now, run_at=run_at, error=ERROR)
        )

    @rule(job_id=st.sampled_from(IDS), token=st.none() | st.integers(1, 3))
    def fail(self, job_id: str, token: int | None) -> None:
        now = self.now
        self._step(lambda tx: fail_job(tx, job_id, now=now, error=ERROR, token=token))

    @rule(limit=st.integers(1, 5))
    def expire(self, limit: int) -> None:
        now = self.now

        def due(job: Job) -> Any:
            return now + timedelta(seconds=10 * job.attempt)

        self._step(lambda tx: expire_leases(tx, now=now, run_at_for=due, limit=limit))

    @invariant()
    def stores_agree_and_jobs_keep_their_shape(self) -> None:
        async def read(store: Store) -> tuple[list[Job], dict[str, JobResult | None]]:
            async with store.transaction() as tx:
                jobs = sorted(await tx.list_jobs(limit=100), key=lambda j: j.id)
                results = {j.id: await tx.get_result(j.id) for j in jobs}
                return jobs, results

        host, host_results = self.loop.run_until_complete(read(self.host))
        ref, ref_results = self.loop.run_until_complete(read(self.reference))
        assert host == ref, "host and reference stores hold different jobs"
        assert host_results == ref_results, "host and reference stores hold different results"
        for job in host:
            was = self.finished.get(job.id)
            assert was is None or was == job, f"terminal job {job.id} changed"
            if job.terminal:
                self.finished[job.id] = job
            assert (job.status is JobStatus.SUCCEEDED) == (host_results[job.id] is not None)
            if job.status is JobStatus.RUNNING:
                assert job.lease_token == job.attempt
