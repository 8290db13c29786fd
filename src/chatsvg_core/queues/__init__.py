"""Queue adapters: the ``JobQueue`` protocol, the in-process default, and Celery.

The Celery adapter imports Celery only when used (``setup_celery``, or a
publish), so this package imports without the ``celery`` extra installed.
"""

from __future__ import annotations

from chatsvg_core.queues._celery import (
    DEFAULT_MAX_COUNTDOWN,
    PROCESS_TASK,
    RECOVER_TASK,
    SWEEP_TASK,
    CeleryQueue,
    CeleryWorkers,
    setup_celery,
)
from chatsvg_core.queues._inprocess import InProcessQueue
from chatsvg_core.queues._protocol import JobQueue

__all__ = [
    "DEFAULT_MAX_COUNTDOWN",
    "PROCESS_TASK",
    "RECOVER_TASK",
    "SWEEP_TASK",
    "CeleryQueue",
    "CeleryWorkers",
    "InProcessQueue",
    "JobQueue",
    "setup_celery",
]
