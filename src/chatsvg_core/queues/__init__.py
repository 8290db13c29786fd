"""Queue adapters: the ``JobQueue`` protocol and the in-process default."""

from __future__ import annotations

from chatsvg_core.queues._inprocess import InProcessQueue
from chatsvg_core.queues._protocol import JobQueue

__all__ = ["InProcessQueue", "JobQueue"]
