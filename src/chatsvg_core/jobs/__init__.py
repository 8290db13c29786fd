"""The job state machine: ``QUEUED → RUNNING → SUCCEEDED | FAILED``."""

from __future__ import annotations

from chatsvg_core.jobs._model import TERMINAL_STATUSES, Job, JobErrorInfo, JobStatus
from chatsvg_core.jobs._transitions import (
    ALLOWED,
    CANCELLED,
    TRANSITIONS,
    Transition,
    cancel,
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
    "CANCELLED",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Job",
    "JobErrorInfo",
    "JobStatus",
    "Transition",
    "cancel",
    "claim",
    "expire",
    "fail",
    "heartbeat",
    "mermaid",
    "new_job",
    "retry",
    "succeed",
]
