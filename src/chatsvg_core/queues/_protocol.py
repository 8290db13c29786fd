"""What a queue adapter implements: a doorbell that says "job X is due after D seconds"."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["JobQueue"]


@runtime_checkable
class JobQueue(Protocol):
    """Delivers job ids to workers, at least once, not before their delay.

    The store, not the queue, is the source of truth: a job's status and
    ``run_at`` decide whether it runs. A queue may deliver an id twice, late,
    or after a restart; the engine's claim refuses what is not due or already
    taken, so duplicates are harmless. A lost message delays a job until the
    next sweep (``Engine.sweep``) re-enqueues what is due.

    ``attempt`` is the number of attempts the job had used when it was
    announced (0 at submit; it grows with each claim). An engine that drops a
    message whose id it has seen (arq keeps ids of running and finished jobs)
    should build the message id from ``job_id`` and ``attempt``, so the
    announcement of a retry is not mistaken for a duplicate of the delivery
    still running. Queues that do not deduplicate may ignore it. (The engine
    passes ``attempt`` only to ``enqueue`` methods that accept it, so
    adapters written before it existed keep working.)
    """

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        """Ask for ``job_id`` to be processed ``delay`` seconds from now (or later)."""
        ...
