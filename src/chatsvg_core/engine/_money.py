"""The money side of a job's life, whichever mode paid for it.

A job is paid either by a charge at claim (``charge_at="claim"``) or by a
reservation at submit (``charge_at="submit"``). Its end settles whichever it
has, inside the transaction that writes the end: success captures a
reservation (a charge needs nothing), failure or cancellation refunds the
charge or releases the reservation. The ledger makes each of these
exactly-once; these helpers only pick the right one.
"""

from __future__ import annotations

from datetime import datetime

from chatsvg_core.errors import RefundWithoutCharge
from chatsvg_core.jobs import Job, JobStatus
from chatsvg_core.ledger import NoReservation, capture, refund, release
from chatsvg_core.storage import EntryKind, StoreTransaction

__all__ = ["capture_if_reserved", "count_in_flight", "give_back"]


async def give_back(tx: StoreTransaction, job_id: str, now: datetime) -> tuple[str, int] | None:
    """Refund the job's charge or release its reservation; ``(kind, amount)`` or ``None``.

    ``None`` when the job holds no credits (never charged, never reserved).
    A repeat returns the first entry's amount and gives nothing again.
    """
    try:
        entry = await refund(tx, job_id, now=now)
    except RefundWithoutCharge:
        pass
    else:
        return "refund", entry.amount
    try:
        entry = await release(tx, job_id, now=now)
    except NoReservation:
        return None
    return "release", entry.amount


async def capture_if_reserved(tx: StoreTransaction, job_id: str, now: datetime) -> bool:
    """Make the job's reservation final, if it has one (a charged job needs nothing)."""
    try:
        await capture(tx, job_id, now=now)
    except NoReservation:
        return False
    return True


async def count_in_flight(tx: StoreTransaction, owner: str, *, up_to: int) -> int:
    """The owner's QUEUED and RUNNING jobs, counted up to ``up_to`` (enough to compare)."""
    total = 0
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):
        jobs: list[Job] = list(await tx.list_jobs(owner=owner, status=status, limit=up_to + 1))
        total += len(jobs)
    return total


def unsettled_kinds() -> tuple[tuple[EntryKind, EntryKind], ...]:
    """(what holds credits, what gives them back) pairs recovery looks for on FAILED jobs."""
    return ((EntryKind.CHARGE, EntryKind.REFUND), (EntryKind.RESERVE, EntryKind.RELEASE))
