"""A job driven through the store follows the pure state machine exactly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings

from chatsvg_core.errors import InvalidTransition
from chatsvg_core.jobs import Job
from chatsvg_core.storage import MemoryStore
from chatsvg_core.testing import JobStep, apply_job_step, apply_job_step_in_store, jobs
from chatsvg_core.testing import transition_sequences as sequences

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@settings(max_examples=80, deadline=None)
@given(job=jobs(now=NOW), steps=sequences(max_size=15))
def test_store_operations_equal_pure_transitions(job: Job, steps: list[JobStep]) -> None:
    async def main() -> None:
        store = MemoryStore()
        async with store.transaction() as tx:
            await tx.insert_job(job)
        pure, now = job, NOW
        for step in steps:
            now += timedelta(seconds=step.advance)
            try:
                expected: Job | str = apply_job_step(pure, step, now)
            except InvalidTransition as exc:
                expected = type(exc).__name__
            try:
                async with store.transaction() as tx:
                    got: Job | str | None = await apply_job_step_in_store(tx, job.id, step, now)
            except InvalidTransition as exc:
                got = type(exc).__name__
            if step.action == "expire" and got is None:
                # expire_leases skips jobs whose lease is live or that are not RUNNING.
                assert expected == "InvalidTransition", expected
                got = expected
            assert got == expected, (step, got, expected)
            if isinstance(expected, Job):
                pure = expected
            async with store.transaction() as tx:
                assert await tx.get_job(job.id) == pure, "a refused step changed the stored job"
                result = await tx.get_result(job.id)
            assert (result is not None) == (pure.status.value == "succeeded")

    asyncio.run(main())
