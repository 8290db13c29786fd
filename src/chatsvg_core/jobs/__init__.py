"""The job state machine: ``QUEUED → RUNNING → SUCCEEDED | FAILED``."""

from __future__ import annotations

from chatsvg_core.jobs._model import TERMINAL_STATUSES, Job, JobErrorInfo, JobStatus
from chatsvg_core.jobs._transitions import (
    ALLOWED,
    TRANSITIONS,
    Transition,
    claim,
    expire,
    fail,
    heartbeat,
    mermaid,
    new_job,
    retry,
    succeed,
)

__all__ = [
    "ALLOWED",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Job",
    "JobErrorInfo",
    "JobStatus",
    "Transition",
    "claim",
    "expire",
    "fail",
    "heartbeat",
    "mermaid",
    "new_job",
    "retry",
    "succeed",
]
