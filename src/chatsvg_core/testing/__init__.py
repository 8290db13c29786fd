"""Test kit for hosts: strategies, a fake clock, conformance suites, fake servers.

Importing :mod:`chatsvg_core` never imports this package; it needs the
``testing`` extra (hypothesis, pytest) for the parts that use them.
"""

from __future__ import annotations

from chatsvg_core.testing._clock import FakeClock
from chatsvg_core.testing._strategies import (
    JobStep,
    LedgerOperation,
    amounts,
    apply_job_step,
    apply_job_step_in_store,
    apply_ledger_operation,
    bad_amounts,
    job_steps,
    jobs,
    ledger_operations,
    owner_ids,
    transition_sequences,
)

__all__ = [
    "FakeClock",
    "JobStep",
    "LedgerOperation",
    "amounts",
    "apply_job_step",
    "apply_job_step_in_store",
    "apply_ledger_operation",
    "bad_amounts",
    "job_steps",
    "jobs",
    "ledger_operations",
    "owner_ids",
    "transition_sequences",
]
